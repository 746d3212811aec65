"""The weights a likelihood record ships with (benchmarks/results_nll.py --ship): the file alone
gives the recorded ELBO, so anyone can check the claim on their machine."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import vaekit

ROOT = Path(__file__).parent.parent
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def shipped_records() -> list[str]:
    """The records in benchmarks/results/ that name shipped weights."""
    records = ((p.name, json.loads(p.read_text())) for p in sorted(RESULTS.glob("*.json")))
    return [name for name, r in records if isinstance(r, dict) and "shipped" in r]


def check_shipped(shipped: dict, path: Path) -> None:
    """The file is the one recorded, and its ELBO on the check's images is the recorded one
    within the recorded standard error (other CPUs round differently)."""
    data = path.read_bytes()
    assert len(data) == shipped["bytes"] and hashlib.sha256(data).hexdigest() == shipped["sha256"]
    check = shipped["check"]
    got = vaekit.evaluate(path, limit=check["images"], probe=False)
    assert got["num_images"] == check["images"]
    assert abs(got["elbo"] - check["elbo"]) <= check["elbo_sem"]


@pytest.mark.parametrize("record", shipped_records())
def test_a_shipped_record_model_gives_its_recorded_elbo(record, data_root):
    shipped = json.loads((RESULTS / record).read_text())["shipped"]
    path = ROOT / shipped["file"]
    assert path.stat().st_size < 8 * 2**20  # a few MB in the repository
    check_shipped(shipped, path)


def test_results_nll_ships_weights_that_reproduce_its_check(tmp_path, data_root):
    out, weights = tmp_path / "run", tmp_path / "weights" / "m.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "VAEKIT_DATA": str(data_root)}  # fmt: skip
    argv = [sys.executable, str(ROOT / "benchmarks" / "results_nll.py"), "--out", str(out),
            "--epochs", "1", "--limit", "256", "--iw-samples", "4", "--eval-limit", "50",
            "--ship", str(weights)]  # fmt: skip
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    shipped = json.loads((out / "results_nll.json").read_text())["shipped"]
    assert shipped["check"]["images"] == 500 and shipped["check"]["elbo_sem"] > 0
    check_shipped(shipped, weights)
    # the file alone is the run: the same bound as the run directory's own evaluation
    assert (
        vaekit.evaluate(weights, limit=20, iw_samples=3, probe=False)["nll_iw"]
        == (vaekit.evaluate(out, limit=20, iw_samples=3, probe=False)["nll_iw"])
    )


def test_a_run_continued_elsewhere_comes_back_in_its_place(tmp_path, data_root):
    """benchmarks/device_resume.py's three steps, the device's run on this CPU: pack a finished
    smoke run, continue it (it evaluates again), and unpack it over the local one, which is kept;
    a returned run that does not extend the local one is refused and changes nothing."""
    spec = importlib.util.spec_from_file_location("device_resume", BENCH / "device_resume.py")
    dr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dr)
    run, carry, out = tmp_path / "run", tmp_path / "carry", tmp_path / "out"
    smoke = ["--iw-samples", "4", "--eval-limit", "50"]
    r = subprocess.run([sys.executable, str(BENCH / "results_nll.py"), "--out", str(run),
                        "--epochs", "1", "--limit", "256", *smoke], capture_output=True, text=True,
                       env={**ENV, "VAEKIT_DATA": str(data_root)}, cwd=ROOT)  # fmt: skip
    assert r.returncode == 0, r.stderr
    before = (run / "sittings.jsonl").read_text().splitlines()
    dr.pack(run, data_root, carry)
    assert not (carry / "run" / "best.pt").exists() and (carry / "run" / "last.pt").is_file()
    assert dr.remote(smoke, 300, out, "cpu", carry) == 0
    assert all(p.stat().st_size <= dr.PART_BYTES for p in out.glob("run.tar.gz.part*"))

    (run / "sittings.jsonl").write_text("\n".join([*before, "{}"]) + "\n")  # diverged here
    with pytest.raises(SystemExit, match="does not extend"):
        dr.unpack(out, run)
    assert (run / "sittings.jsonl").read_text().splitlines() == [*before, "{}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["carry", "out", "run"]  # no leftovers

    (run / "sittings.jsonl").write_text("\n".join(before) + "\n")
    dr.unpack(out, run)
    after = (run / "sittings.jsonl").read_text().splitlines()
    assert after[: len(before)] == before
    assert [json.loads(s)["command"] for s in after[len(before) :]] == ["train", "evaluate"]
    assert (run / "best.pt").is_file() and (run / "results_nll.json").is_file()
    kept = tmp_path / "run.before-device"
    assert (kept / "sittings.jsonl").read_text().splitlines() == before
