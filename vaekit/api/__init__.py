"""The operations, one function each, of the same name as the command that runs it: each takes
a run (a run directory or checkpoint file, a loaded Run, or where it fits a model) and keyword
options with the command's defaults, checks them as the command's flags are checked, and
returns its record (what the command prints or writes). Re-exported from vaekit."""

from __future__ import annotations

from .encode import encode
from .evaluate import evaluate
from .explore import explore
from .export import export
from .interpolate import interpolate
from .metrics import metrics
from .prior import prior
from .reconstruct import reconstruct
from .runs import Run, open_run
from .sample import sample
from .score import score
from .train import train
from .traverse import traverse

__all__ = [  # the operations, in the order of `vaekit --help`; then the run loader
    "train", "sample", "reconstruct", "traverse", "interpolate", "evaluate", "metrics",
    "encode", "score", "explore", "export", "prior", "Run", "open_run",
]  # fmt: skip
