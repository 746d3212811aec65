"""DDP under torchrun on CPU (gloo, 127.0.0.1): 2 processes equal 1, and runs resume across
world sizes. Each test launches real processes."""

import os
import socket
import subprocess
import sys

import torch

from vaekit.cli import main

from .conftest import TINY as TINY_MODEL

# Contiguous layout: channels-last kernels round differently at batch 32 (per rank) and 64,
# beyond what these tests hold DDP to (layout is tested in test_train.py).
TINY = ["--limit", "1024", "--eval-every", "0", "--no-figures", "--no-channels-last", *TINY_MODEL]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], n: int = 2) -> subprocess.CompletedProcess:
    """Launch n processes on 127.0.0.1 (loopback only, also for gloo's own connections)."""
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    for _ in range(2):  # a second try only if the free port was taken in between
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n),
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
               "-m", "vaekit", *args]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        if r.returncode == 0 or "address already in use" not in r.stderr.lower():
            break
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def weights(run) -> dict:
    return torch.load(run / "last.pt", weights_only=True)


def assert_close(a: dict, b: dict) -> None:
    """Equal up to float rounding, which Adam amplifies. Summing a batch's gradients in two
    shares rounds differently, and Adam divides by sqrt(v), so a weight whose gradient is ~0
    steps by ~lr whatever the rounding: runs 2 -> 1 processes moved apart by up to 3.2e-4 (seen
    on an AMD EPYC, identical before and after the model-families change). A real fault (another
    batch, noise or step) moves weights by ~lr = 2e-3 a step, 16 steps an epoch."""
    for k in a["model"]:
        torch.testing.assert_close(
            a["model"][k], b["model"][k], rtol=1e-4, atol=1e-3, msg=lambda m, k=k: f"{k}: {m}"
        )


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path, data_root):
    data = ["--data-dir", str(data_root)]
    assert main(["train", *TINY, "--epochs", "2", "--out", str(tmp_path / "one"), *data]) == 0
    r = torchrun(["train", *TINY, "--epochs", "2", "--out", str(tmp_path / "two"), *data])
    assert "2 processes" in r.stdout and r.stdout.count("run saved in") == 1  # rank 0 only
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert one["step"] == two["step"] == 2 * 16
    assert_close(one, two)
    assert abs(one["metrics"]["train_loss"] - two["metrics"]["train_loss"]) < 1e-3


def test_a_run_resumes_with_another_world_size(tmp_path, data_root):
    # constant lr: a cosine schedule is laid out over the epochs asked for at the start
    args, data = [*TINY, "--lr-schedule", "constant"], ["--data-dir", str(data_root)]
    assert main(["train", *args, "--epochs", "2", "--out", str(tmp_path / "ref"), *data]) == 0
    # 1 process, then 2
    assert main(["train", *args, "--epochs", "1", "--out", str(tmp_path / "a"), *data]) == 0
    torchrun(["train", "--resume", str(tmp_path / "a"), "--epochs", "2", *data])
    # 2 processes, then 1; rank 0 alone logs to a tracker (one event file), the resume goes on.
    # "--": torchrun would take --log for an abbreviation of its own --log-dir
    log = ["--log", "tensorboard", "--log-every", "4"]
    torchrun(["--", "train", *args, *log, "--epochs", "1", "--out", str(tmp_path / "b"), *data])
    assert len(list((tmp_path / "b" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert main(["train", "--resume", str(tmp_path / "b"), "--epochs", "2", *data]) == 0
    assert len(list((tmp_path / "b" / "tensorboard").glob("events.out.tfevents.*"))) == 2
    ref = weights(tmp_path / "ref")
    assert_close(ref, weights(tmp_path / "a"))
    assert_close(ref, weights(tmp_path / "b"))


def test_the_hierarchical_vae_trains_under_ddp_as_in_one_process(tmp_path, data_root):
    hvae = ["--preset", "mnist-hvae", "--width", "8", "--z-channels", "2", "--groups", "1", "1",
            "1", "1", "--limit", "256", "--batch-size", "64", "--eval-every", "0",
            "--no-figures", "--no-channels-last", "--epochs", "1", "--precision", "fp32",
            "--data-dir", str(data_root)]  # fmt: skip
    assert main(["train", *hvae, "--out", str(tmp_path / "one")]) == 0
    r = torchrun(["train", *hvae, "--out", str(tmp_path / "two")])
    assert "2 processes" in r.stdout
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert one["step"] == two["step"] == 4
    assert_close(one, two)
