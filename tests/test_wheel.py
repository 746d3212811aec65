"""The package as a user gets it: `python -m build` makes a wheel and an sdist that twine accepts,
and the wheel, installed (not editable) into a fresh virtual environment, runs the CLI, trains
and samples there. The fresh environment reuses this one's dependencies (torch, ...) through a
.pth line, so nothing is downloaded; vaekit itself comes from the wheel (checked)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import vaekit

pytestmark = pytest.mark.slow  # a minute or more: the fast tier leaves it out

ROOT = Path(__file__).resolve().parents[1]
STATIC = {f"vaekit/explorer/static/{f}" for f in ("index.html", "app.js", "style.css")}


def sh(*argv, cwd: Path) -> str:
    """Run a command away from the source tree (so that `import vaekit` cannot find it there);
    its stdout, or a failed assertion with its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    r = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(map(str, argv))} -> {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def test_the_wheel_installs_into_a_fresh_venv_and_trains_and_samples(tmp_path, data_root):
    # build: the sdist, then the wheel from the sdist (so the sdist is complete enough to build)
    dist = tmp_path / "dist"
    sh(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT, cwd=tmp_path)
    name = f"vaekit-{vaekit.__version__}"
    wheel, sdist = dist / f"{name}-py3-none-any.whl", dist / f"{name}.tar.gz"
    assert sorted(p.name for p in dist.iterdir()) == sorted([wheel.name, sdist.name])
    sh(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist, cwd=tmp_path)
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert STATIC <= in_wheel and not any(n.startswith("tests/") for n in in_wheel)
    with tarfile.open(sdist) as tar:
        in_sdist = {n.removeprefix(name + "/") for n in tar.getnames()}
    assert STATIC | {"tests/conftest.py", "CHANGELOG.md", "docs/tutorial.ipynb"} <= in_sdist

    # a fresh environment: vaekit from the wheel, its dependencies from this environment
    env = tmp_path / "env"
    sh(sys.executable, "-m", "venv", "--without-pip", env, cwd=tmp_path)
    paths = sysconfig.get_paths(vars={"base": str(env), "platbase": str(env)})
    python, exe = Path(paths["scripts"]) / "python", Path(paths["scripts"]) / "vaekit"
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index"]
    sh(*pip, "--no-deps", wheel, cwd=tmp_path)
    Path(paths["purelib"], "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = sh(python, "-c", "import vaekit; print(vaekit.__file__)", cwd=tmp_path).strip()
    assert Path(where).is_relative_to(env) and not Path(where).is_relative_to(ROOT), where
    code = "from vaekit.explorer import STATIC; print(sorted(p.name for p in STATIC.iterdir()))"
    assert sh(python, "-c", code, cwd=tmp_path).strip() == "['app.js', 'index.html', 'style.css']"

    # the console script, from the fresh environment
    assert sh(exe, "--version", cwd=tmp_path).strip() == f"vaekit {vaekit.__version__}"
    assert "train" in sh(exe, "--help", cwd=tmp_path)
    run = tmp_path / "run"
    tiny = ["--channels", "8", "16", "--latent-dim", "4", "--batch-size", "64"]
    args = ["--limit", "256", "--epochs", "1", "--precision", "fp32", "--no-figures", *tiny]
    args += ["--eval-every", "0"]  # the test-set pass is tested elsewhere; seconds saved here
    sh(exe, "train", *args, "--out", run, "--data-dir", data_root, cwd=tmp_path)
    assert (run / "last.pt").is_file() and (run / "metrics.jsonl").is_file()
    sh(exe, "sample", run, "--n", "16", cwd=tmp_path)
    assert (run / "samples.png").stat().st_size > 0
