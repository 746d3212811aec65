import os
import pickle

import pytest
import torch

import vaekit
from vaekit import VAE, checkpoint, outputs
from vaekit.checkpoint import CheckpointError


def tiny_state(**extra) -> dict:
    m = VAE.from_preset("mnist", channels=(4, 4), latent_dim=2)
    return {"model": m.state_dict(), "model_config": m.cfg.to_dict(), **extra}


def test_save_is_atomic_and_loads_as_plain_data(tmp_path):
    p = tmp_path / "last.pt"
    checkpoint.save(tiny_state(epoch=3), p)
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]  # no temp file left behind
    ck = torch.load(p, weights_only=True)
    assert ck["epoch"] == 3
    model = vaekit.load(tmp_path)  # a run dir resolves to its last.pt
    assert not model.training and model.cfg.net.latent_dim == 2


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path):
    p = tmp_path / "last.pt"
    checkpoint.save(tiny_state(epoch=1), p)

    def boom(f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        outputs.write_with(p, boom)
    assert checkpoint.load(p)["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_truncated_checkpoint_is_refused(tmp_path):
    p = tmp_path / "last.pt"
    checkpoint.save(tiny_state(), p)
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        checkpoint.load(p)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_with_pickled_code_is_refused_not_run(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"model": {}, "model_config": {}, "payload": Evil()}, p)
    with pytest.raises(CheckpointError, match="refused, not plain data"):
        checkpoint.load(p)
    p.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        checkpoint.load(p)


def test_missing_keys_and_wrong_architecture_are_refused(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"model": {}}, p)
    with pytest.raises(CheckpointError, match="missing \\['model_config'\\]"):
        checkpoint.load(p)
    state = tiny_state()
    state["model_config"]["net"]["latent_dim"] = 3  # weights are for 2
    torch.save(state, p)
    # the message names the first tensor that does not fit and both shapes
    want = (
        r"weights do not fit its architecture \(tensor encoder.head.weight is \(4, 4, 7, 7\) in "
        r"the checkpoint, \(6, 4, 7, 7\) in the model\)"
    )
    with pytest.raises(CheckpointError, match=want):
        vaekit.load(p)


def test_missing_run_dir_and_empty_dir(tmp_path):
    with pytest.raises(CheckpointError, match="no such run directory"):
        checkpoint.load(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no last.pt"):
        checkpoint.load(tmp_path)
