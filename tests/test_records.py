"""The weights a likelihood record ships with (benchmarks/results_nll.py --ship): the file alone
gives the recorded ELBO, so anyone can check the claim on their machine."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import vaekit

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "benchmarks" / "results"


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
