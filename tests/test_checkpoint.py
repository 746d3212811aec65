import json
import os
import pickle
import re

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


def test_nonfinite_weights_are_refused_naming_the_first_tensor(tmp_path):
    state = tiny_state(epoch=1)
    first, second = list(state["model"])[:2]
    state["model"][first].view(-1)[:3] = float("nan")
    state["model"][first].view(-1)[3] = float("-inf")
    p = tmp_path / "last.pt"
    checkpoint.save(state, p)
    want = (
        f"{p}: weights hold non-finite values (tensor {first}: 3 NaN, 1 Inf); --allow-nonfinite "
        "(Python: allow_nonfinite=True) loads them anyway"
    )
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(tmp_path)
    assert str(e.value) == want
    with pytest.raises(CheckpointError, match="weights hold non-finite values"):
        vaekit.load(p)
    state["model"][second].view(-1)[0] = float("inf")
    checkpoint.save(state, p)
    with pytest.raises(CheckpointError, match=f"tensor {first}: 3 NaN, 1 Inf; 2 tensors in all"):
        checkpoint.load(p)
    # the forensic override: the weights as they are
    assert checkpoint.load(p, allow_nonfinite=True)["model"][first].isnan().sum() == 3
    model = vaekit.load(p, allow_nonfinite=True)
    assert model.state_dict()[second].view(-1)[0] == float("inf")


@pytest.fixture(scope="module")
def nan_run(tiny_run, tmp_path_factory):
    """tiny_run's checkpoint with 12 NaN in its first tensor, as a run dir of its own."""
    ckpt = torch.load(tiny_run / "last.pt", weights_only=True)
    name = next(iter(ckpt["model"]))
    ckpt["model"][name].view(-1)[:12] = float("nan")
    run = tmp_path_factory.mktemp("runs") / "nan"
    run.mkdir()
    torch.save(ckpt, run / "last.pt")
    return run, name


RUN = "RUN"
NAN_COMMANDS = [
    ["sample", RUN],
    ["reconstruct", RUN],
    ["traverse", RUN],
    ["interpolate", RUN],
    ["evaluate", RUN, "--json"],
    ["metrics", RUN],
    ["encode", RUN, "--data", "mnist:test", "--out", "OUT/z.npz"],
    ["score", RUN, "--data", "mnist:test", "--out", "OUT/s.csv"],
    ["score", "TINY", "--background", RUN, "--data", "mnist:test", "--out", "OUT/s.csv"],
    ["export", RUN, "--format", "safetensors"],
    ["explore", RUN, "--port", "0", "--tsne-max", "0"],
    ["train", "--resume", RUN, "--epochs", "2"],
]


@pytest.mark.parametrize("argv", NAN_COMMANDS, ids=lambda a: " ".join(a[:3]))
def test_every_command_refuses_nonfinite_weights(argv, nan_run, tiny_run, data_root, tmp_path,
                                                 capsys):  # fmt: skip
    from vaekit.cli import main

    run, name = nan_run
    names = {RUN: str(run), "TINY": str(tiny_run)}
    argv = [names.get(a, a.replace("OUT", str(tmp_path))) for a in argv]
    before = sorted(os.listdir(run))
    assert main(argv + ([] if argv[0] == "export" else ["--data-dir", str(data_root)])) == 2
    err = capsys.readouterr().err
    assert err == (
        f"vaekit {argv[0]}: error: {run / 'last.pt'}: weights hold non-finite values (tensor "
        f"{name}: 12 NaN); --allow-nonfinite (Python: allow_nonfinite=True) loads them anyway\n"
    )
    # nothing written (train --resume holds the run's lock file, empty of data, to read it)
    assert sorted(set(os.listdir(run)) - {".lock"}) == before and not os.listdir(tmp_path)


def test_allow_nonfinite_loads_them_for_a_look(nan_run, data_root, tmp_path, capsys):
    from vaekit.cli import main

    run, _ = nan_run
    out = tmp_path / "s.png"
    assert main(["sample", str(run), "--n", "4", "--out", str(out), "--allow-nonfinite"]) == 0
    assert out.is_file()
    # the explorer has no map to draw from NaN latents: one line, not a traceback
    argv = ["explore", str(run), "--port", "0", "--tsne-max", "0", "--allow-nonfinite"]
    assert main([*argv, "--data-dir", str(data_root)]) == 2
    err = capsys.readouterr().err
    assert err.endswith("error: the latent means of 10000 of 10000 images are not finite: no map\n")
    assert err.count("\n") == 1
    assert main(["train", "--allow-nonfinite", "--out", str(tmp_path / "new")]) == 2
    assert "--allow-nonfinite goes with --resume" in capsys.readouterr().err


def test_a_checkpoints_bad_config_values_are_named_with_the_checkpoint(tmp_path):
    from vaekit.training import TrainError, resume_configs

    state = tiny_state(epoch=1)
    state["model_config"]["net"]["latent_dim"] = "2"  # a number as text: read as the flag reads it
    checkpoint.save(state, tmp_path / "last.pt")
    assert vaekit.load(tmp_path).cfg.net.latent_dim == 2
    state["model_config"]["net"]["latent_dim"] = True
    checkpoint.save(state, tmp_path / "last.pt")
    want = "its model config is not valid (latent_dim must be an integer >= 1, got True)"
    with pytest.raises(CheckpointError, match=re.escape(want)):
        vaekit.load(tmp_path)
    state = tiny_state(epoch=1, objective_config={}, train_config={"epochs": 2.5})
    checkpoint.save(state, tmp_path / "last.pt")
    want = f"{tmp_path}: its checkpoint's config is not valid (epochs must be an integer >= 1"
    with pytest.raises(TrainError, match=re.escape(want)):
        resume_configs(tmp_path, {})


def test_a_safetensors_export_with_nonfinite_weights_is_refused_too(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    state = tiny_state()
    name = next(iter(state["model"]))
    state["model"][name].view(-1)[0] = float("inf")
    path = tmp_path / "m.safetensors"  # written as save_safetensors does, whatever it refuses
    meta = {"model_config": json.dumps(state["model_config"])}
    st.save_file({k: v.contiguous() for k, v in state["model"].items()}, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=f"tensor {name}: 1 Inf\\)"):
        vaekit.load(path)
    assert vaekit.load(path, allow_nonfinite=True).state_dict()[name].isinf().sum() == 1
