"""One exception hierarchy (vaekit.errors): every error vaekit raises on purpose is a
VaekitError, importable where it was first defined, and a command prints it in one line."""

from __future__ import annotations

import inspect

import pytest
import torch

from vaekit import errors


def test_every_error_is_a_vaekit_error_and_keeps_its_old_import_path():
    from vaekit import checkpoint, outputs
    from vaekit.data import DataError
    from vaekit.training import TrainError
    from vaekit.training.checkpoints import TrainError as TrainErrorThere

    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    assert len(classes) > 5 and all(issubclass(c, errors.VaekitError) for c in classes)
    assert checkpoint.CheckpointError is errors.CheckpointError
    assert DataError is errors.DataError and outputs.OutputError is errors.OutputError
    assert TrainError is TrainErrorThere is errors.TrainError
    # what callers caught before still catches them
    assert issubclass(errors.ConfigError, ValueError) and issubclass(errors.OutputError, OSError)


def test_a_bad_config_value_is_a_config_error():
    from vaekit.config import TrainConfig

    with pytest.raises(errors.ConfigError, match="batch_size must be"):
        TrainConfig(batch_size=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_device_is_a_one_line_error_not_a_training_error(tiny_run, tmp_path, capsys):
    """resolve_device raises DeviceError (the device is no training matter); `vaekit sample`
    prints it in one line and exits 2."""
    from vaekit.cli import main
    from vaekit.runtime.device import resolve_device

    with pytest.raises(errors.DeviceError) as e:
        resolve_device("cuda")
    assert not isinstance(e.value, errors.TrainError)
    out = tmp_path / "s.png"
    assert main(["sample", str(tiny_run), "--device", "cuda", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vaekit sample: error: --device cuda: no CUDA")
    assert not out.exists()
