"""What vaekit writes: one writer per run directory, every file whole or absent (a full disk
included), output folders checked before the work, strict JSON, no stale temporary files."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vaekit
from vaekit import outputs
from vaekit.cli import main
from vaekit.training.checkpoints import TrainError
from vaekit.training.lock import run_lock

from .conftest import TINY

ENOSPC = os.strerror(errno.ENOSPC)  # "No space left on device"


def strict_loads(text: str):
    """json.loads that refuses NaN and Infinity, as a strict parser (a browser's) does."""

    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def snapshot(folder: Path) -> dict:
    """Every file under folder: its bytes' digest and mtime, to tell whether anything changed."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    return {str(p.relative_to(folder)): (digest(p), p.stat().st_mtime_ns) for p in files}


def dead_pid() -> int:
    """The PID of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def holder():
    """holder(run_dir): a second process that holds run_dir's lock until killed."""
    procs = []
    root = Path(vaekit.__file__).parents[1]
    code = (
        "import sys, time\nfrom vaekit.training.lock import run_lock\n"
        "with run_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n"
    )

    def hold(run_dir: Path) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
        env.pop("RANK", None)
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, env=env
        )
        procs.append(proc)
        assert proc.stdout.readline() == b"held\n"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


# -- one writer per run directory -------------------------------------------------------------


def test_a_second_train_into_a_held_run_dir_fails_and_touches_nothing(
    holder, tmp_path, data_root, capsys
):
    out = tmp_path / "run"
    proc = holder(out)
    before = snapshot(out)
    args = ["train", "--limit", "512", "--epochs", "1", "--out", str(out), *TINY]
    assert main([*args, "--data-dir", str(data_root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"PID {proc.pid}" in err and str(out) in err
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == [".lock"]


def test_a_second_resume_fails_untouched_and_a_killed_holder_does_not_block(
    holder, tiny_run, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    proc = holder(run)
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"PID {proc.pid}" in err
    assert snapshot(run) == before  # no metrics.jsonl line, no config.json rewrite
    proc.send_signal(signal.SIGKILL)  # dies holding it: the OS releases the lock
    proc.wait()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert (run / ".lock").read_text().strip() == str(os.getpid())  # the last holder's


def test_python_train_is_refused_too_and_only_rank_0_takes_the_lock(holder, tmp_path, monkeypatch):
    out = tmp_path / "run"
    proc = holder(out)
    with pytest.raises(TrainError, match=f"PID {proc.pid}"):
        vaekit.train(out, "mnist", limit=64, epochs=1)
    monkeypatch.setenv("RANK", "1")  # a torchrun rank > 0 writes nothing, so holds nothing
    with run_lock(out):
        pass


def test_taking_a_run_dir_removes_the_temporary_files_of_dead_writers(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    dead, alive = dead_pid(), os.getppid()
    stale = [run / f".last.pt.tmp{dead}", run / "checkpoints" / f".epoch_001.pt.tmp{dead}"]
    stale.append(run / f".decoder.onnx.tmp{dead}")  # a killed export's folder
    live = run / f".last.iw.json.tmp{alive}"  # a reader (evaluate --iw-samples) still writing
    stale[1].parent.mkdir()
    stale[2].mkdir()
    (stale[2] / "decoder.onnx").write_bytes(b"half")
    for p in (stale[0], stale[1], live):
        p.write_bytes(b"half a file")
    # all epochs done: nothing is trained, but the run was taken and tidied
    assert main(["train", "--resume", str(run)]) == 0
    assert not any(p.exists() for p in stale) and live.exists()


def test_a_resume_drops_a_metrics_line_cut_by_a_crash(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "step": 1')  # a power loss mid-line
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


# -- every file whole or absent ---------------------------------------------------------------


@pytest.fixture
def full_disk(monkeypatch):
    """A disk that fills after 100 bytes of any file vaekit.outputs writes (a partial write,
    then ENOSPC, as a real full disk does)."""
    real_open = open

    class Filling:
        def __init__(self, f):
            self.f, self.room = f, 100

        def write(self, data):
            if len(data) > self.room:
                self.f.write(data[: self.room])
                self.room = 0
                raise OSError(errno.ENOSPC, ENOSPC)
            self.room -= len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def filling_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return Filling(f) if "w" in mode else f

    monkeypatch.setattr(outputs, "open", filling_open, raising=False)


def images(folder: Path, n: int = 3) -> list[str]:
    """n small grey PNG files; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = [folder / f"{i}.png" for i in range(n)]
    for p in paths:
        Image.fromarray(rng.integers(0, 256, (28, 28), np.uint8)).save(p)
    return [str(p) for p in paths]


COMMANDS = {  # name -> (output file name, the command's arguments after RUN_DIR)
    "encode npz": ("z.npz", ["encode", "--data", "IMAGES"]),
    "encode csv": ("z.csv", ["encode", "--data", "IMAGES"]),
    "score csv": ("s.csv", ["score", "--data", "IMAGES"]),
    "evaluate json": ("e.json", ["evaluate", "--limit", "50", "--no-probe"]),
    "export safetensors": ("m.safetensors", ["export", "--format", "safetensors"]),
    "sample png": ("s.png", ["sample", "--n", "4"]),
}


def command(name: str, run: Path, out: Path, imgs: list[str]) -> list[str]:
    file, (cmd, *rest) = COMMANDS[name][0], COMMANDS[name][1]
    rest = [a for r in rest for a in (imgs if r == "IMAGES" else [r])]
    return [cmd, str(run), *rest, "--out", str(out / file)]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_full_disk_is_one_line_exit_2_and_leaves_the_old_file_whole(
    name, tiny_run, tmp_path, capsys, request
):
    imgs, out = images(tmp_path / "imgs"), tmp_path / "out"
    argv = command(name, tiny_run, out, imgs)
    assert main(argv) == 0  # the file as a good run wrote it
    good = (out / COMMANDS[name][0]).read_bytes()
    capsys.readouterr()
    request.getfixturevalue("full_disk")
    assert main(argv) == 2
    *progress, last = capsys.readouterr().err.splitlines()  # evaluate says what it is doing
    assert last == f"vaekit {argv[0]}: error: cannot write {out / COMMANDS[name][0]} ({ENOSPC})"
    assert all(line.startswith(f"{argv[0]}: ") for line in progress)  # no traceback
    assert (out / COMMANDS[name][0]).read_bytes() == good  # the old file, whole
    assert sorted(p.name for p in out.iterdir()) == [COMMANDS[name][0]]  # no temporary file


def test_a_full_disk_during_an_onnx_export_is_one_line_and_leaves_nothing(
    tiny_run, tmp_path, capsys, monkeypatch
):
    import torch

    def fills(model, args, path, **kwargs):
        Path(path).write_bytes(b"half a graph")
        raise OSError(errno.ENOSPC, ENOSPC)

    monkeypatch.setattr(torch.onnx, "export", fills)
    out = tmp_path / "out" / "decoder.onnx"
    assert main(["export", str(tiny_run), "--format", "onnx", "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"vaekit export: error: cannot write {out} ({ENOSPC})\n"
    assert list(out.parent.iterdir()) == []  # no partial file, no temporary folder


def test_a_disk_that_fills_while_scoring_writes_no_csv_a_reader_would_accept(
    tiny_run, tmp_path, capsys, full_disk
):
    out = tmp_path / "s.csv"
    argv = ["score", str(tiny_run), "--data", *images(tmp_path / "imgs", 20), "--out", str(out)]
    assert main(argv) == 2
    assert ENOSPC in capsys.readouterr().err
    assert list(tmp_path.glob("*.csv")) == [] and list(tmp_path.glob(".*")) == []


@pytest.mark.parametrize("bad", ["file", "folder"])
def test_an_output_path_that_cannot_be_written_is_refused_before_the_work(
    bad, tiny_run, tmp_path, capsys, monkeypatch
):
    import vaekit.evaluation.latents

    def no_work(*a, **k):
        raise AssertionError("encoded before the output path was checked")

    monkeypatch.setattr(vaekit.evaluation.latents, "encode_source", no_work)
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "z.npz" if bad == "file" else tmp_path
    imgs = images(tmp_path / "imgs")
    assert main(["encode", str(tiny_run), "--data", *imgs, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write {out} (" in err
    assert ("not a folder" if bad == "file" else "it is a folder") in err


def test_a_missing_output_folder_is_created_before_the_work(tiny_run, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "m.safetensors"
    assert main(["export", str(tiny_run), "--format", "safetensors", "--out", str(out)]) == 0
    assert vaekit.load(out).cfg == vaekit.load(tiny_run).cfg


def test_a_failed_write_removes_its_temporary_file_and_keeps_the_old(tmp_path):
    p = tmp_path / "f.bin"
    outputs.write_bytes(p, b"old")

    def fails(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, ENOSPC)

    with pytest.raises(outputs.OutputError) as e:
        outputs.write_with(p, fails)
    assert str(e.value) == f"cannot write {p} ({ENOSPC})"
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_a_link_keeps_pointing_at_the_new_file_with_the_old_permissions(tmp_path):
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    target.write_text("old")
    target.chmod(0o600)
    link.symlink_to(target.name)
    outputs.write_json(link, {"a": 1})
    assert link.is_symlink() and json.loads(target.read_text()) == {"a": 1}
    assert target.stat().st_mode & 0o777 == 0o600


def test_a_pipe_is_written_as_a_stream(tmp_path):
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert outputs.prepare(fifo) == fifo  # no temporary twin can stand in for a pipe
    outputs.write_text(fifo, "a,b\n")
    reader.join(10)
    assert got == [b"a,b\n"] and sorted(os.listdir(tmp_path)) == ["fifo"]


def test_appended_lines_are_whole_even_when_a_write_falls_short(tmp_path, monkeypatch):
    log = tmp_path / "metrics.jsonl"
    outputs.append_line(log, '{"epoch": 1}')
    real_write = os.write
    monkeypatch.setattr(outputs.os, "write", lambda fd, data: real_write(fd, data[:5]))
    with pytest.raises(outputs.OutputError, match="cannot write"):
        outputs.append_line(log, '{"epoch": 2}')
    monkeypatch.setattr(outputs.os, "write", real_write)
    assert log.read_text() == '{"epoch": 1}\n'  # the cut line undone
    log.write_text('{"epoch": 1}\n{"epo')  # a cut line left by a crash (a power loss)
    outputs.append_line(log, '{"epoch": 2}')
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2]


# -- strict JSON ------------------------------------------------------------------------------


def test_non_finite_values_become_null_with_a_note():
    rec = {"test_loss": math.nan, "n": 3, "s": {"fid": math.inf}, "xs": [1.0, -math.inf]}
    got = strict_loads(outputs.dumps(rec))
    assert got["test_loss"] is None and got["s"]["fid"] is None and got["xs"] == [1.0, None]
    assert got["n"] == 3
    assert got["non_finite"] == {"test_loss": "NaN", "s.fid": "Infinity", "xs[]": "-Infinity"}
    assert strict_loads(outputs.dumps({"a": 1.5})) == {"a": 1.5}  # no note when all is finite


def test_evaluate_json_is_strict_with_a_nan_loss(tiny_run, tmp_path, capsys, monkeypatch):
    import vaekit.evaluation.bound

    real = vaekit.evaluation.bound.evaluate

    def nan_loss(*a, **k):
        return {**real(*a, **k), "test_loss": math.nan}

    monkeypatch.setattr(vaekit.evaluation.bound, "evaluate", nan_loss)
    out = tmp_path / "e.json"
    argv = ["evaluate", str(tiny_run), "--limit", "50", "--no-probe", "--json", "--out", str(out)]
    assert main(argv) == 0
    for text in (capsys.readouterr().out, out.read_text()):
        res = strict_loads(text)
        assert res["test_loss"] is None and res["non_finite"] == {"test_loss": "NaN"}


def test_the_explorer_answers_strict_json(tiny_run, data_root):
    import http.client
    import threading

    from vaekit import checkpoint
    from vaekit.data import load_split
    from vaekit.explorer import Explorer, make_server

    model = checkpoint.build_model(checkpoint.load(tiny_run)).eval()
    x, y = (t[:40] for t in load_split("mnist", "test", data_root))
    explorer = Explorer(model, x, y, "mnist", tsne_max=0)
    explorer.info = lambda: {"kl": [0.5, math.nan]}  # a value the browser could not parse
    server = make_server(explorer, "127.0.0.1", 0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
        conn.request("GET", "/api/info")
        r = conn.getresponse()
        assert r.status == 200 and strict_loads(r.read()) == {
            "kl": [0.5, None],
            "non_finite": {"kl[]": "NaN"},
        }
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
