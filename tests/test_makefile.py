"""The Makefile's data path: `make test` exports VAEKIT_DATA, and the notebook and wheel tests
run vaekit from other directories, so the path it exports must be absolute (#28)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"
SHOW = "show-data: ; @echo $$VAEKIT_DATA"  # a rule added with --eval: prints the exported value

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def exported(cwd: Path, env_data: str | None) -> str:
    """VAEKIT_DATA as the Makefile exports it to its recipes, run from cwd."""
    env = {"PATH": "/usr/bin:/bin"} | ({"VAEKIT_DATA": env_data} if env_data else {})
    out = subprocess.run(
        ["make", "-s", "-f", str(MAKEFILE), f"--eval={SHOW}", "show-data"],
        cwd=cwd, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_the_default_shared_data_beside_the_clone_is_exported_absolute(tmp_path):
    (tmp_path / "shared" / "data").mkdir(parents=True)
    clone = tmp_path / "vaekit"
    clone.mkdir()
    assert exported(clone, None) == str(tmp_path / "shared" / "data")


def test_a_relative_vaekit_data_is_made_absolute(tmp_path):
    (tmp_path / "mydata").mkdir()
    assert exported(tmp_path, "mydata") == str(tmp_path / "mydata")


def test_no_data_folder_exports_nothing(tmp_path):
    assert exported(tmp_path, None) == ""
