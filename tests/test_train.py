import json
import math
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import vaekit.objectives as O
import vaekit.training.checkpoints as C
from vaekit.cli import main
from vaekit.config import TrainConfig, configs, model_config, objective_config, train_config
from vaekit.data import binarize, modelled
from vaekit.errors import DeviceError
from vaekit.objectives import kl_objective, kl_weight
from vaekit.training import (
    TrainError,
    fit,
    load_training_data,
    lr_at,
    resolve_device,
    resume_configs,
)

from .conftest import TINY as TINY_ARGS

TINY = dict(channels=(8, 16), latent_dim=4)


def quiet(*a):
    pass


def train(mcfg, ocfg, tcfg, out, data_dir, ckpt=None):
    """fit() on the named dataset, as the CLI calls it."""
    d = load_training_data(
        tcfg.dataset, mcfg.image_size, mcfg.in_channels, tcfg.crop, tcfg.limit, data_dir
    )
    return fit(mcfg, ocfg, tcfg, out, d.x_train, d.x_test, stream=d.stream, ckpt=ckpt,
               log=quiet, y_train=d.y_train, y_test=d.y_test)  # fmt: skip


def run(out, data_root, epochs, **kw):
    kw = {"limit": 1024, "batch_size": 64, "figures": False, "precision": "fp32", **kw}
    mcfg, ocfg, tcfg = configs("mnist", **TINY, epochs=epochs, **kw)
    return train(mcfg, ocfg, tcfg, out, data_root)


def resume(out, data_root, **overrides):
    mcfg, ocfg, tcfg, ckpt = resume_configs(out, overrides)
    return train(mcfg, ocfg, tcfg, out, data_root, ckpt)


def test_short_training_lowers_the_loss(tmp_path, data_root):
    run(tmp_path, data_root, 3)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[2]["test_loss"] < rows[1]["test_loss"] < rows[0]["test_loss"] * 0.97
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert all(
        math.isclose(r["test_loss"], r["test_recon"] + r["test_kl"], rel_tol=1e-6) for r in rows
    )
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model"]["net"]["channels"] == [8, 16] and cfg["train"]["epochs"] == 3


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, data_root):
    # constant lr: a cosine schedule is laid out over the epochs asked for, so extending a
    # 1-epoch cosine run is a different run from a 2-epoch one
    run(tmp_path / "a", data_root, 2, eval_every=0, lr_schedule="constant")
    run(tmp_path / "b", data_root, 1, eval_every=0, lr_schedule="constant")
    resume(tmp_path / "b", data_root, epochs=2)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 2 * 16
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # the resumed epoch reports its own training loss, not the previous epoch's added to it
    rows_a, rows_b = (metrics(tmp_path / r) for r in "ab")
    assert [r["epoch"] for r in rows_b] == [1, 2]
    assert rows_b[1]["train_loss"] == rows_a[1]["train_loss"] < rows_a[0]["train_loss"]
    # and the run really changed the weights in its second epoch
    assert (
        a["metrics"]["train_loss"]
        != json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[0])["train_loss"]
    )


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_row_logged_before_a_crash_is_not_repeated_after_resume(tmp_path, data_root):
    run(tmp_path, data_root, 1, eval_every=0, lr_schedule="constant")
    row = metrics(tmp_path)[0]
    # kill -9 between epoch 2's metrics line and its checkpoint: the line is there, the
    # checkpoint still says epoch 1
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({**row, "epoch": 2, "train_loss": -1.0}) + "\n")
    resume(tmp_path, data_root, epochs=2)
    rows = metrics(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0] == row and rows[1]["train_loss"] > 0


def test_without_a_terminal_progress_lines_come_inside_long_epochs(
    tmp_path, data_root, monkeypatch
):
    import vaekit.training.callbacks as F

    monkeypatch.setattr(F, "PROGRESS_SECONDS", 0.0)
    mcfg, ocfg, tcfg = configs("mnist", **TINY, epochs=1, limit=256, figures=False, eval_every=0)
    d = load_training_data("mnist", (28, 28), 1, 0, 256, data_root)
    lines = []
    fit(mcfg, ocfg, tcfg, tmp_path, d.x_train, d.x_test, log=lines.append)
    assert "epoch 1: step 1/4" in lines and any(m.startswith("epoch 1/1  train") for m in lines)


def test_without_a_terminal_each_epoch_line_arrives_as_it_happens(tmp_path, data_root):
    """stdout to a pipe is block-buffered: the epoch lines must be flushed as they are made."""
    import select

    args = ["--limit", "256", "--epochs", "500", "--eval-every", "0", "--no-figures", *TINY_ARGS]
    cmd = [sys.executable, "-m", "vaekit", "train", *args, "--out", str(tmp_path / "r")]
    p = subprocess.Popen(
        [*cmd, "--data-dir", str(data_root)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        lines, deadline = [], time.monotonic() + 120
        while not any(line.startswith("epoch 2/500") for line in lines):
            assert p.poll() is None and time.monotonic() < deadline, lines
            if select.select([p.stdout], [], [], 1.0)[0]:
                lines.append(p.stdout.readline())
        assert p.poll() is None  # still training: the lines came while it ran, not at exit
    finally:
        p.kill()
        p.wait()


def test_existing_run_is_never_overwritten(tmp_path, data_root):
    run(tmp_path, data_root, 1, eval_every=0)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(TrainError, match="already holds a run; pass --resume"):
        run(tmp_path, data_root, 1)
    assert (tmp_path / "last.pt").read_bytes() == before
    with pytest.raises(
        TrainError, match=r"only .* may change, not \['latent_dim'\] \(latent_dim: 4 -> 8\)"
    ):
        resume_configs(tmp_path, {"latent_dim": 8, "epochs": 3})
    _, _, tcfg, _ = resume_configs(tmp_path, {"epochs": 2, "eval_every": 0})  # these may change
    assert (tcfg.epochs, tcfg.eval_every) == (2, 0)
    # a flag given again with the run's own value is no change (re-running the same command)
    *_, ckpt = resume_configs(tmp_path, {"limit": 1024, "latent_dim": 4, "epochs": 1})
    assert ckpt["epoch"] == 1
    with pytest.raises(TrainError, match=r"limit: 1024 -> 2000"):
        resume_configs(tmp_path, {"limit": 2000})


def test_lr_schedule():
    cos = TrainConfig(lr=1.0, lr_min_frac=0.1, lr_schedule="cosine")
    assert lr_at(0, 100, cos) == 1.0
    assert math.isclose(lr_at(50, 100, cos), 0.55)
    assert math.isclose(lr_at(100, 100, cos), 0.1)
    assert lr_at(70, 100, TrainConfig(lr=0.3, lr_schedule="constant")) == 0.3


def test_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="device must be one of"):
        TrainConfig(device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_a_missing_gpu_is_a_clear_error():
    assert resolve_device("auto").type in ("cpu", "mps")
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device("cuda")


def test_kl_warmup_rises_linearly_to_beta_and_zero_means_off():
    assert [kl_weight(s, 0.5, 4) for s in (0, 1, 2, 4, 100)] == [0.0, 0.125, 0.25, 0.5, 0.5]
    assert kl_weight(0, 0.5, 0) == 0.5


def test_free_bits_floor_the_batch_mean_kl_of_each_dim_and_stop_its_gradient():
    kl = torch.tensor([[0.1, 2.0, 0.0], [0.3, 4.0, 0.2]], requires_grad=True)  # (B=2, D=3)
    assert kl_objective(kl, 0.0).item() == pytest.approx(0.2 + 3.0 + 0.1)  # the true KL
    obj = kl_objective(kl, 0.5)
    assert obj.item() == pytest.approx(0.5 + 3.0 + 0.5)
    obj.backward()
    # only dim 1 (batch-mean KL 3 > 0.5 nats) is pushed down, by 1/B per image
    torch.testing.assert_close(kl.grad, torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.5, 0.0]]))


def test_training_batches_are_fresh_binarizations_and_the_test_set_is_fixed():
    x = torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8)
    a, b = binarize(x), binarize(x)
    assert set(a.unique().tolist()) <= {0, 255} and not torch.equal(a, b)
    assert torch.equal(binarize(torch.full_like(x, 255)), torch.full_like(x, 255))
    assert abs(a.float().mean() - x.float().mean()) < 2  # P(255) = x / 255
    t = modelled(x, "bernoulli")
    assert torch.equal(t, modelled(x, "bernoulli")) and set(t.unique().tolist()) == {0, 255}
    assert modelled(x, "gaussian") is x


def test_bernoulli_training_with_warmup_and_free_bits_runs(tmp_path, data_root):
    mcfg, ocfg, tcfg = configs(
        "mnist", likelihood="bernoulli", **TINY, epochs=1, limit=256, kl_warmup=3, free_bits=0.1,
        figures=False, eval_every=0,
    )  # fmt: skip
    row = train(mcfg, ocfg, tcfg, tmp_path, data_root)
    # the reported loss is the true recon + beta * KL (nats of binary data), not the objective
    assert 0 < row["train_loss"] < 784 * math.log(2) * 1.5


def test_mnist_nll_preset_is_a_bernoulli_resnet_with_kl_warmup():
    m, o, t = model_config("mnist-nll"), objective_config("mnist-nll"), train_config("mnist-nll")
    assert (m.likelihood, m.net.arch, t.dataset) == ("bernoulli", "resnet", "mnist")
    assert 32 <= m.net.latent_dim <= 64 and o.kl_warmup > 0


def test_a_crash_mid_epoch_then_resume_gives_identical_weights(tmp_path, data_root, monkeypatch):
    run(tmp_path / "a", data_root, 2, eval_every=0)  # 2 epochs of 16 steps, cosine lr
    real = O.kl_weight

    def crash_at_step_23(step, beta, warmup):
        if step == 23:
            raise RuntimeError("simulated crash")
        return real(step, beta, warmup)

    monkeypatch.setattr(O, "kl_weight", crash_at_step_23)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "b", data_root, 2, eval_every=0, save_every=5)
    ck = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert (ck["epoch"], ck["batch"], ck["step"]) == (1, 4, 20)  # the last save before the crash
    monkeypatch.setattr(O, "kl_weight", real)
    resume(tmp_path / "b", data_root)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["metrics"]["train_loss"] == b["metrics"]["train_loss"]  # the whole epoch's loss


def test_sigterm_saves_at_a_step_boundary_and_exits_0(tmp_path, data_root):
    out = tmp_path / "r"
    argv = ["--limit", "512", "--epochs", "500", "--eval-every", "0", "--no-figures", *TINY_ARGS]
    cmd = [
        sys.executable,
        "-m",
        "vaekit",
        "train",
        *argv,
        "--out",
        str(out),
        "--data-dir",
        str(data_root),
    ]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists():  # the first epoch is done: training is under way
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    assert "SIGTERM: s" in stdout and f"vaekit train --resume {out}" in stdout
    ck = torch.load(out / "last.pt", weights_only=True)
    assert 8 <= ck["step"] < 500 * 8
    # the saved state continues: finish the epoch under way
    row = resume(out, data_root, epochs=ck["epoch"] + 1)
    assert row["epoch"] == ck["epoch"] + 1 and row["step"] == 8 * row["epoch"]


def test_non_finite_steps_are_skipped_and_counted(tmp_path, data_root, monkeypatch):
    real = O.kl_weight
    monkeypatch.setattr(O, "kl_weight", lambda step, *a: math.nan if step == 5 else real(step, *a))
    row = run(tmp_path, data_root, 1, eval_every=0)
    assert row["skipped_steps"] == 1 and math.isfinite(row["train_loss"])
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


def test_a_run_of_bad_steps_stops_and_keeps_the_last_good_checkpoint(
    tmp_path, data_root, monkeypatch
):
    real = O.kl_weight
    monkeypatch.setattr(O, "kl_weight", lambda step, *a: math.nan if step >= 20 else real(step, *a))
    with pytest.raises(TrainError, match="4 consecutive steps with a non-finite loss"):
        run(tmp_path, data_root, 3, eval_every=0, max_bad_steps=4)
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert (ck["epoch"], ck["step"]) == (1, 16)  # the epoch-1 checkpoint, from before the trouble
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


def test_grad_clip_changes_the_updates(tmp_path, data_root):
    run(tmp_path / "a", data_root, 1, eval_every=0)
    run(tmp_path / "b", data_root, 1, eval_every=0, grad_clip=1e-4)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="grad_clip must be a finite number >= 0"):
        TrainConfig(grad_clip=-1)


def test_keep_n_checkpoints_and_the_best(tmp_path, data_root):
    run(tmp_path, data_root, 4, keep=2)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["epoch_003.pt", "epoch_004.pt"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    best_epoch = min(rows, key=lambda r: r["test_loss"])["epoch"]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == best_epoch and best["best_test_loss"] == min(
        r["test_loss"] for r in rows
    )
    e4 = torch.load(tmp_path / "checkpoints" / "epoch_004.pt", weights_only=True)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert all(torch.equal(e4["model"][k], last["model"][k]) for k in last["model"])


def test_a_full_disk_or_unwritable_out_dir_fails_before_training(tmp_path, data_root, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainError, match="cannot create run dir"):
        run(tmp_path / "file" / "run", data_root, 1)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(C.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(TrainError, match="MiB free but the checkpoints need about"):
        run(tmp_path / "full", data_root, 1)
    assert not (tmp_path / "full" / "last.pt").exists()


def test_kill_9_at_a_random_step_then_resume_is_bit_identical(tmp_path, data_root):
    args = ["--limit", "1024", "--epochs", "20", "--eval-every", "0", "--no-figures", *TINY_ARGS]
    args += ["--data-dir", str(data_root)]
    killed = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "vaekit",
        "train",
        *args,
        "--save-every",
        "3",
        "--out",
        str(killed),
    ]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (killed / "last.pt").exists():
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.01)
    time.sleep(random.uniform(0.1, 1.0))  # somewhere in the run, mid-step or mid-write
    p.kill()  # SIGKILL: no handler runs
    assert p.wait(timeout=60) == -signal.SIGKILL
    step = torch.load(killed / "last.pt", weights_only=True)["step"]
    assert 3 <= step < 20 * 16
    assert main(["train", "--resume", str(killed), "--data-dir", str(data_root)]) == 0
    assert main(["train", *args, "--out", str(tmp_path / "whole")]) == 0
    a = torch.load(killed / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 20 * 16
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_channels_last_and_compile_train_the_same_model(tmp_path, data_root):
    """Speed flags change the memory layout and the kernels, not the model: the same losses up
    to float rounding, and checkpoints with the plain module's names (no _orig_mod. prefix)."""
    flags = dict(limit=256, eval_every=0)
    base = run(tmp_path / "a", data_root, 1, **flags)
    fast = run(tmp_path / "b", data_root, 1, channels_last=True, compile=True, **flags)
    assert math.isclose(fast["train_loss"], base["train_loss"], rel_tol=1e-4)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert list(a) == list(b)
    for k in a:
        torch.testing.assert_close(b[k].contiguous(), a[k], rtol=1e-3, atol=1e-4)


def test_a_step_that_cannot_fit_in_memory_is_refused_before_training(tmp_path, monkeypatch):
    import vaekit.runtime.memory as M

    big, ocfg, tcfg = configs("mnist", image_size=(1024, 1024), in_channels=3, epochs=1)
    x = torch.zeros(4, 3, 1024, 1024, dtype=torch.uint8)  # what a 1024 px folder would give
    with pytest.raises(TrainError, match=r"needs about [\d.]+ GiB but [\d.]+ GiB is free on cpu"):
        fit(big, ocfg, tcfg, tmp_path / "big", x, x, log=quiet)
    assert not (tmp_path / "big" / "last.pt").exists()
    # an absurd latent size fits in memory here but is called out
    huge, *_ = configs("mnist", latent_dim=100_000)
    lines = []
    need = M.check_memory(huge, 64, torch.device("cpu"), log=lines.append)
    assert need > 16 * 173_000_000 and any("is that intended?" in m for m in lines)
    monkeypatch.setattr(M, "available_bytes", lambda device: 1.5 * need)  # over half: a warning
    lines.clear()
    M.check_memory(huge, 64, torch.device("cpu"), log=lines.append)
    assert any(m.startswith("warning: a training step of this model") for m in lines)


def test_a_disk_that_fills_mid_run_is_one_line_and_the_last_checkpoint_survives(
    tmp_path, data_root, monkeypatch
):
    import errno

    run(tmp_path, data_root, 1, lr_schedule="constant")  # evaluated: last.pt and best.pt
    before = (tmp_path / "last.pt").read_bytes()
    real = C.checkpoint.save

    def full(state, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C.checkpoint, "save", full)
    with pytest.raises(TrainError) as e:
        resume(tmp_path, data_root, epochs=2)
    msg = str(e.value)
    assert "\n" not in msg and "No space left on device" in msg
    assert f"{tmp_path / 'last.pt'} holds the last good checkpoint" in msg
    assert (tmp_path / "last.pt").read_bytes() == before
    # the room check of a resumed run counts the space its replaced checkpoints free
    monkeypatch.setattr(C.checkpoint, "save", real)
    usage = shutil.disk_usage(tmp_path)
    room = 2 * len(before) + 2**20  # less than last + best + a temporary file anew
    monkeypatch.setattr(C.shutil, "disk_usage", lambda p: usage._replace(free=room))
    assert resume(tmp_path, data_root, epochs=2)["epoch"] == 2


def test_a_gradient_spike_is_skipped_and_counted(tmp_path, data_root, monkeypatch):
    import vaekit.training.callbacks as F

    monkeypatch.setattr(F, "SPIKE_WARMUP", 3)
    real = O.kl_weight
    # step 10: a KL weight of 1e6, a finite gradient far above the running level
    monkeypatch.setattr(O, "kl_weight", lambda step, *a: 1e6 if step == 10 else real(step, *a))
    row = run(tmp_path / "a", data_root, 1, eval_every=0, skip_spikes=10.0)
    assert row["skipped_spikes"] == 1 and row["skipped_steps"] == 0
    ck = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert ck["gnorm_level"] > 0 and all(torch.isfinite(v).all() for v in ck["model"].values())
    # without the guard the spike is taken: other weights
    row = run(tmp_path / "b", data_root, 1, eval_every=0)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert row["skipped_spikes"] == 0 and any(not torch.equal(ck["model"][k], b[k]) for k in b)
    with pytest.raises(ValueError, match="skip_spikes must be 0 or a finite number > 1"):
        TrainConfig(skip_spikes=0.5)


def test_precision_auto_is_bf16_only_where_the_hardware_has_it(monkeypatch):
    import vaekit.runtime.precision as P

    cpu, lines = torch.device("cpu"), []
    monkeypatch.setattr(P, "cpu_flags", lambda: {"avx2", "avx512f"})  # a Xeon without BF16
    assert P.choose_precision("auto", cpu, lines.append) == "fp32"
    assert lines == ["precision: fp32 (auto: the CPU has neither AVX-512 BF16 nor AMX)"]
    assert P.choose_precision("bf16", cpu, lines.append) == "bf16"  # asked for: kept, warned
    assert "expect it to be slower" in lines[-1]
    monkeypatch.setattr(P, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert P.choose_precision("auto", cpu, lines.append) == "bf16"
    assert lines[-1] == "precision: bf16 (auto: the CPU has avx512_bf16)"
    assert P.choose_precision("fp32", cpu, lines.append) == "fp32"


def test_the_chosen_precision_is_stored_with_the_run(tmp_path, data_root, monkeypatch):
    import vaekit.runtime.precision as P

    monkeypatch.setattr(P, "cpu_flags", lambda: set())
    run(tmp_path, data_root, 1, eval_every=0, limit=128, precision="auto")
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["train"]["precision"] == "fp32"  # what it trained in; and that auto chose it, why:
    assert cfg["precision_requested"] == "auto"
    assert cfg["precision_reason"] == "auto: the CPU has neither AVX-512 BF16 nor AMX"
    monkeypatch.setattr(P, "cpu_flags", lambda: {"avx512_bf16"})  # resumed elsewhere: kept
    resume(tmp_path, data_root, epochs=2)
    again = json.loads((tmp_path / "config.json").read_text())
    assert again["train"]["precision"] == "fp32" and again["precision_requested"] == "auto"
    assert again["precision_reason"] == cfg["precision_reason"]
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)  # as a vaekit 0.2 run saved it
    del ckpt["precision_requested"], ckpt["precision_reason"]
    torch.save(ckpt, tmp_path / "last.pt")
    resume(tmp_path, data_root, epochs=3)
    old = json.loads((tmp_path / "config.json").read_text())
    assert old["precision_requested"] is None and old["precision_reason"] is None


def test_fused_adamw_trains_the_same_model_and_resumes_an_unfused_run(
    tmp_path, data_root, monkeypatch
):
    """CPU training takes AdamW's fused kernel (issue 18): the weights of the per-parameter loop
    up to float rounding; a run checkpointed by the loop (vaekit <= 0.2) resumes fused."""
    import vaekit.training.trainer as L

    flags = dict(limit=256, eval_every=0)
    fused = run(tmp_path / "fused", data_root, 1, **flags)
    monkeypatch.setattr(L, "fused_adamw", lambda device: False)
    loop = run(tmp_path / "loop", data_root, 1, **flags)
    assert math.isclose(fused["train_loss"], loop["train_loss"], rel_tol=1e-5)
    a = torch.load(tmp_path / "fused" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "loop" / "last.pt", weights_only=True)
    assert (
        a["optimizer"]["param_groups"][0]["fused"]
        and not b["optimizer"]["param_groups"][0]["fused"]
    )
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5)
    monkeypatch.undo()
    resume(tmp_path / "loop", data_root, epochs=2)
    c = torch.load(tmp_path / "loop" / "last.pt", weights_only=True)
    assert c["epoch"] == 2 and all(g["fused"] for g in c["optimizer"]["param_groups"])


def test_a_run_records_the_data_root_the_search_found(tmp_path, monkeypatch):
    """With neither --data-dir nor $VAEKIT_DATA, the run records the folder its data came from
    (here ../shared/data of the current folder), so its tools find the data from anywhere."""
    from vaekit.training.run import data_location

    (tmp_path / "shared" / "data" / "mnist").mkdir(parents=True)
    (tmp_path / "clone").mkdir()
    monkeypatch.chdir(tmp_path / "clone")
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_location(None, "mnist") == str(tmp_path / "shared" / "data")
    assert data_location(None, "fashion-mnist") is None  # found nowhere: nothing to record
    assert data_location(tmp_path / "mine", "mnist") == str(tmp_path / "mine")
