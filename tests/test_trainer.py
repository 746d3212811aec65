"""The trainer's callbacks: those that only watch leave the weights alone; the guard stops a run
whose weights or steps went bad; EMA weights are kept, saved, resumed and used by the commands."""

import math
import shutil
import types

import pytest
import torch

import vaekit
import vaekit.objectives as O
from vaekit import checkpoint
from vaekit.cli import main
from vaekit.config import TrainConfig, configs
from vaekit.training import Callback, TrainError, fit, load_training_data

from .conftest import TINY as TINY_ARGS
from .test_train import TINY, quiet, resume, run


def weights(run_dir, key="model") -> dict:
    return torch.load(run_dir / "last.pt", weights_only=True)[key]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Count(Callback):
    """A caller's callback: counts the hooks called and evaluates the model each epoch."""

    def __init__(self):
        self.calls = {}

    def on_step_end(self, t, res):
        self.calls["step"] = self.calls.get("step", 0) + 1

    def on_epoch_end(self, t, row):
        self.calls["epoch"] = self.calls.get("epoch", 0) + 1
        t.model.eval()(t.x_test[:8].float() / 255)  # draws z from the global RNG


def test_callbacks_that_only_watch_leave_the_weights_alone(tmp_path, data_root):
    """Figures and evaluation draw from the test set and their own generators: the same seed
    trains the same weights with them or without them; so does keeping an EMA, and a caller's
    callback that draws from the global RNG (run with the RNG forked)."""
    run(tmp_path / "a", data_root, 2, limit=256, eval_every=0, figures=False)
    count = Count()
    mcfg, ocfg, tcfg = configs(
        "mnist",
        **TINY,
        epochs=2,
        limit=256,
        batch_size=64,
        precision="fp32",
        eval_every=1,
        figures=True,
        ema=0.9,
    )
    d = load_training_data("mnist", (28, 28), 1, 0, 256, data_root)
    fit(mcfg, ocfg, tcfg, tmp_path / "b", d.x_train, d.x_test, log=quiet, callbacks=[count])
    assert same(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert count.calls == {"step": 8, "epoch": 2}
    assert list((tmp_path / "b" / "figures").glob("samples_002.png"))


def test_weights_gone_non_finite_stop_the_run_and_keep_the_last_good_checkpoint(
    tmp_path, data_root, monkeypatch
):
    """--lr 1e300 overflows the weights while the guard's loss and gradient checks pass on the
    first step: the epoch's end refuses to checkpoint them (it used to save NaN and exit 0)."""
    import vaekit.training.trainer as T

    real = T.lr_at
    monkeypatch.setattr(T, "lr_at", lambda step, *a: 1e300 if step >= 4 else real(step, *a))
    with pytest.raises(TrainError, match="weights became non-finite in epoch 2 .*last.pt holds"):
        run(tmp_path, data_root, 2, limit=256, eval_every=0)
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["epoch"] == 1 and not checkpoint.nonfinite(ck["model"])


def test_train_with_a_huge_lr_is_a_one_line_error(tmp_path, data_root, capsys):
    out = tmp_path / "run"
    args = ["train", "--limit", "256", "--epochs", "1", "--out", str(out), "--lr", "1e300"]
    assert main([*args, *TINY_ARGS, "--no-figures", "--data-dir", str(data_root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "weights became non-finite in epoch 1" in err
    assert "no checkpoint was written" in err and not (out / "last.pt").exists()


def test_an_epoch_with_every_step_skipped_stops_instead_of_reporting_a_loss(
    tmp_path, data_root, monkeypatch
):
    real = O.kl_weight
    monkeypatch.setattr(O, "kl_weight", lambda step, *a: math.nan if step >= 4 else real(step, *a))
    with pytest.raises(TrainError, match="epoch 2: all 4 steps were skipped \\(4 non-finite"):
        run(tmp_path, data_root, 3, limit=256, eval_every=0, max_bad_steps=100)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1


def test_consecutive_spikes_count_as_bad_steps(tmp_path, data_root, monkeypatch):
    """A level the gradients never return under would skip every later step: it stops."""
    import vaekit.training.callbacks as F

    monkeypatch.setattr(F, "SPIKE_WARMUP", 3)
    real = O.kl_weight
    monkeypatch.setattr(O, "kl_weight", lambda step, *a: 1e6 if step >= 10 else real(step, *a))
    with pytest.raises(TrainError, match=r"3 consecutive steps .*gradient spike \(up to step 13\)"):
        run(tmp_path, data_root, 1, eval_every=0, skip_spikes=10.0, max_bad_steps=3)


def test_ema_decay_is_validated(capsys):
    for bad in (1.0, 1.5, -0.1, math.nan):
        with pytest.raises(ValueError, match="ema must be 0 or a finite number in \\(0, 1\\)"):
            TrainConfig(ema=bad)
    assert TrainConfig().ema == 0 and TrainConfig(ema=0.999).ema == 0.999
    with pytest.raises(SystemExit) as e:
        main(["train", "--ema", "1"])
    assert (
        e.value.code == 2
        and "--ema: must be 0 or a finite number in (0, 1)" in capsys.readouterr().err
    )


def test_ema_is_saved_as_plain_data_and_resumes_exactly(tmp_path, data_root):
    """The checkpoint's ema holds the average of the weights after each update taken; a run
    resumed after epoch 1 ends with the EMA of one trained in one go."""
    flags = dict(limit=256, eval_every=0, ema=0.9, lr_schedule="constant")  # lr: not by epochs
    run(tmp_path / "once", data_root, 2, **flags)
    ck = torch.load(tmp_path / "once" / "last.pt", weights_only=True)
    assert ck["ema"].keys() == ck["model"].keys() and ck["ema_updates"] == ck["step"] == 8
    assert not same(ck["ema"], ck["model"])
    run(tmp_path / "split", data_root, 1, **flags)
    resume(tmp_path / "split", data_root, epochs=2)
    assert same(weights(tmp_path / "split", "ema"), ck["ema"])
    assert same(weights(tmp_path / "split"), ck["model"])


def test_run_commands_use_the_ema_weights_unless_raw_weights(tmp_path, data_root):
    run(tmp_path / "r", data_root, 1, limit=256, eval_every=0, ema=0.9)
    ck = checkpoint.load(tmp_path / "r")
    ema, raw = checkpoint.build_model(ck), checkpoint.build_model(ck, raw_weights=True)
    assert same(ema.state_dict(), ck["ema"]) and same(raw.state_dict(), ck["model"])
    assert same(vaekit.load(tmp_path / "r").state_dict(), ck["ema"])
    assert same(vaekit.load(tmp_path / "r", raw_weights=True).state_dict(), ck["model"])
    # the same run with its raw weights as its only weights: what --raw-weights samples from
    plain = tmp_path / "plain"
    shutil.copytree(tmp_path / "r", plain)
    checkpoint.save({k: v for k, v in ck.items() if k != "ema"}, plain / "last.pt")
    pngs = {}
    for name, run_dir, flags in [("ema", "r", []), ("raw", "r", ["--raw-weights"]),
                                 ("plain", "plain", [])]:  # fmt: skip
        pngs[name] = tmp_path / f"{name}.png"
        assert main(["sample", str(tmp_path / run_dir), "--out", str(pngs[name]), *flags]) == 0
    assert pngs["raw"].read_bytes() == pngs["plain"].read_bytes()
    assert pngs["ema"].read_bytes() != pngs["raw"].read_bytes()


def test_non_finite_ema_weights_are_refused(tmp_path, data_root):
    run(tmp_path, data_root, 1, limit=256, eval_every=0, ema=0.9)
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    next(iter(ck["ema"].values())).fill_(math.nan)
    checkpoint.save(ck, tmp_path / "last.pt")
    with pytest.raises(checkpoint.CheckpointError, match=r"last.pt \(EMA\): weights hold non"):
        checkpoint.load(tmp_path)


def test_the_ema_decay_warms_up_to_its_value():
    """After n updates the average moves by 1 - min(decay, (1 + n) / (10 + n)): checked against
    the recursion written out over a sequence of weights."""
    from vaekit.training.callbacks import EMA

    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    t = types.SimpleNamespace(accepted=True)
    want = None
    for n in range(100):
        with torch.no_grad():
            model.weight.normal_()
        w = model.weight.detach().clone()
        d = min(0.9, (1 + n) / (10 + n))  # n updates averaged before this one
        want = w if want is None else d * want + (1 - d) * w
        ema.on_step_end(t, {})
    torch.testing.assert_close(ema.avg.module.weight, want)
    assert ema.n == 100 and ema.warmed_decay() == 0.9  # (1 + n) / (10 + n) >= 0.9 from n = 80
    skipped = types.SimpleNamespace(accepted=False)
    before = ema.avg.module.weight.clone()
    ema.on_step_end(skipped, {})
    assert ema.n == 100 and torch.equal(ema.avg.module.weight, before)
