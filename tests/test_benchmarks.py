"""The benchmark scripts that no test run would otherwise reach until a machine is lent: the GPU
record (benchmarks/gpu.py, checked on the CPU at tiny sizes), the encode timing and the training
loop's timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "benchmarks"


def bench(script: str, *args: str, data_root=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(BENCH.parent)}
    if data_root is not None:
        env["VAEKIT_DATA"] = str(data_root)
    argv = [sys.executable, str(BENCH / script), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=BENCH.parent)


@pytest.mark.slow
def test_the_gpu_record_runs_its_sections_on_a_cpu(tmp_path, data_root):
    out = tmp_path / "gpu.json"
    r = bench("gpu.py", "--device", "cpu", "--smoke", "--sections", "peak", "presets",
              "--out", str(out), data_root=data_root)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rec = json.loads(out.read_text())
    assert rec["errors"] == {} and rec["smoke"] is True
    assert {"bf16", "tf32", "fp32"} <= set(rec["peak"])
    for row in rec["presets"].values():
        assert row["img_s"] > 0 and 0 < row["fraction_of_bf16_peak"] < 5
        assert row["gflops"] == pytest.approx(row["gflop_per_image"] * row["img_s"])


def test_a_failed_section_is_recorded_and_the_run_fails(tmp_path, data_root):
    out = tmp_path / "gpu.json"
    r = bench("gpu.py", "--device", "cpu", "--smoke", "--sections", "cuda_paths", "--out",
              str(out), data_root=data_root)  # fmt: skip
    assert r.returncode == 1
    rec = json.loads(out.read_text())
    assert "last.pt" in rec["errors"]["cuda_paths"]  # no short run trained before it


def test_no_cuda_is_a_one_line_refusal(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("a GPU is here")
    r = bench("gpu.py", "--out", str(tmp_path / "gpu.json"))
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0
    assert "no CUDA device" in r.stderr and not (tmp_path / "gpu.json").exists()


@pytest.mark.slow
def test_the_encode_timing_records_each_precision_and_their_agreement(
    tiny_run, tmp_path, data_root
):
    out = tmp_path / "encode.json"
    r = bench("encode.py", str(tiny_run), "--data", "mnist:test", "--repeats", "1", "--out",
              str(out), data_root=data_root)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rec = json.loads(out.read_text())
    assert rec["images"] == 10000 and set(rec["seconds"]) == {"fp32", "bf16"}
    assert 0 < rec["bf16_vs_fp32"]["mu_err_mean_in_spread"] < 0.02


def test_the_loop_timing_counts_an_epoch_against_the_peak(tmp_path, data_root):
    out = tmp_path / "loop.json"
    r = bench("loop.py", "--presets", "seed", "--limit", "512", "--rounds", "1", "--train-args",
              "--precision fp32", "--out", str(out), data_root=data_root)  # fmt: skip
    assert r.returncode == 0, r.stderr
    row = json.loads(out.read_text())["presets"]["seed"]
    assert row["precision"] == "fp32" and row["seconds_2_epochs"] > row["seconds_1_epoch"]
    assert row["img_s"] == pytest.approx(512 / (row["seconds_2_epochs"] - row["seconds_1_epoch"]))
    peak = json.loads(out.read_text())["peak"]["fp32"]["wall_gflops"]
    assert row["fraction_of_peak"] == pytest.approx(row["img_s"] * row["gflop_per_image"] / peak)


def test_the_priors_record_names_a_models_own_prior(monkeypatch):
    """benchmarks/priors.py: a VampPrior model's own samples are labelled as the VampPrior's,
    and #30's targets (a GMM against N(0, I)) are judged only on runs whose prior is N(0, I)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import priors

    vamp = {"family": "vae", "net": {"prior": "vamp", "pseudo_inputs": 500}}
    assert priors.own_prior(vamp) == "VampPrior (500 pseudo-inputs)"
    assert priors.own_prior({"family": "vae", "net": {"prior": "normal"}}) == "N(0, I)"
    models = {
        name: {"family": "vae", "run": name, "priors": {own: {"fid": 40.0}, "gmm": {"fid": 4.0}}}
        for name, own in [("normal", "N(0, I)"), ("vamp", priors.own_prior(vamp))]
    }
    targets = priors.targets(models, ["ae", "normal"])
    assert [t["target"].split(":")[0] for t in targets] == ["normal"] and targets[0]["met"]
