"""docs/tutorial.ipynb runs from top to bottom in a Jupyter kernel, on a few hundred training
images, so that it cannot go stale."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # a minute or more: the fast tier leaves it out

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def test_the_tutorial_notebook_runs(tmp_path, data_root, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.outputs or c.execution_count for c in code), "commit it without outputs"
    runs = tmp_path.resolve() / "runs"  # given relative, as a user's runs/tutorial is
    for k, v in dict(LIMIT="512", EPOCHS="1", RUNS="runs").items():
        monkeypatch.setenv(f"VAEKIT_TUTORIAL_{k}", v)  # the kernel inherits the environment
    monkeypatch.setenv("VAEKIT_DATA", str(data_root))
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises on the first cell that fails, naming it
    assert (runs / "ae-512x1" / "last.pt").is_file() and (runs / "vae-512x1" / "last.pt").is_file()
    outputs = [o for c in code for o in c.outputs]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    bars = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(figures) == 9 and bars  # every picture, and tqdm's bars as Jupyter widgets
    text = "".join(o.get("text", "") for o in outputs)
    # the printed path is absolute: it works from a terminal in any folder (the kernel's
    # folder is the notebook's, e.g. docs/, not the repository's)
    assert "KL per image" in text and f"vaekit explore {runs / 'vae-512x1'}\n" in text
