"""vaekit's one exception hierarchy: every error vaekit raises on purpose is a VaekitError, whose
message is one line saying what is wrong and what to do; `vaekit` commands print it and exit 2.

Torch-free and importing nothing of vaekit, so that every layer can raise these. The classes are
also importable where they were first defined (vaekit.data.DataError,
vaekit.checkpoint.CheckpointError, vaekit.training.TrainError, vaekit.outputs.OutputError).
"""

from __future__ import annotations


class VaekitError(Exception):
    """The base of vaekit's own errors: `except VaekitError` catches every one of them."""


class ConfigError(VaekitError, ValueError):
    """A config value, preset or config file is invalid (a ValueError too, as it was)."""


class DataError(VaekitError):
    """A dataset is missing, corrupted or unreadable; the message says what to do."""


class CheckpointError(VaekitError):
    """A run directory or checkpoint is missing or unusable; the message says which and why."""


class DeviceError(VaekitError):
    """The device asked for (--device cuda, mps) is not there."""


class TrainError(VaekitError):
    """Training cannot go on as asked; the message says why and what to do."""


class OutputError(VaekitError, OSError):
    """A file could not be written (a full disk, no permission, a file where a folder should
    be); str() says which file and why, in one line. An OSError too, as it was."""

    def __str__(self) -> str:
        return f"cannot write {self.filename} ({self.strerror})"
