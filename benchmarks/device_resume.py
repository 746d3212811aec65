"""Continue a resumable record run (benchmarks/results_nll.py) on a lent GPU and bring it back:
the issue-32 protocol's "a script prepared in advance that resumes the run there and copies the
checkpoint back". Three steps, the middle one on the device machine (the `device` tool's `run`,
which sends the working tree and the ignored paths it is told to carry):

    python benchmarks/device_resume.py pack runs/results-nll-vamp-iaf     # here: fills .carry/
    # there (run: carry [".carry"], timeout_s 600; the machine's python3 has CUDA PyTorch):
    python3 benchmarks/device_resume.py remote --seconds 520 -- --preset mnist-vamp-iaf \\
        --iw-samples 1000 --ship weights/mnist-vamp-iaf.safetensors
    python benchmarks/device_resume.py unpack FILES_AT runs/results-nll-vamp-iaf   # here

`pack` copies the run directory (without best.pt, which resuming does not read) and MNIST into
the git-ignored .carry/. `remote` runs results_nll.py there on the carried run (which resumes
from last.pt; every sitting is recorded with the GPU's name), stops it with SIGTERM after
--seconds (it saves and records the sitting), and writes the run directory to $OUT as a
.tar.gz in parts of at most 15 MiB (the tool returns files of up to 16 MiB). `unpack` checks the
returned run continues the local one (its sittings and metrics extend the local ones), keeps the
local directory as RUN.before-device, and puts the returned one in its place; a shipped weights
file comes back to its path in the repository. Stopped before the end, the same three steps
again continue it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / ".carry"  # git-ignored; named in the device call's carry
PART_BYTES = 15 * 2**20
NEEDED = ("config.json", "last.pt", "metrics.jsonl", "sittings.jsonl")


def fail(msg: str) -> None:
    sys.exit(f"device_resume: {msg}")


def pack(run: Path, data_root: Path, carry: Path = CARRY) -> Path:
    """Copy RUN (without best.pt) and DATA_ROOT/mnist into carry/ as run/ and data/mnist/."""
    if not (run / "last.pt").is_file():
        fail(f"{run} has no last.pt: not a run to continue")
    if not (data_root / "mnist").is_dir():
        fail(f"{data_root} has no mnist/ folder")
    shutil.rmtree(carry, ignore_errors=True)
    shutil.copytree(run, carry / "run", ignore=shutil.ignore_patterns("best.pt", "*.tmp"))
    shutil.copytree(data_root / "mnist", carry / "data" / "mnist")
    size = sum(p.stat().st_size for p in carry.rglob("*") if p.is_file())
    print(f"packed {run} and {data_root / 'mnist'} into {carry} ({size / 2**20:.1f} MiB)")
    return carry


def remote(args: list[str], seconds: float, out: Path, device: str, carry: Path = CARRY) -> int:
    """Run results_nll.py on carry/run for at most `seconds`, then write the run (and the
    shipped weights, if --ship named a file) to out/ as run.tar.gz.partNN. Returns its exit code
    (0 when it was stopped on time: saved, to be continued)."""
    script = ROOT / "benchmarks" / "results_nll.py"
    argv = [sys.executable, str(script), "--out", str(carry / "run"), "--device", device,
            "--data-dir", str(carry / "data"), *args]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    t0, stopped = time.perf_counter(), False
    proc = subprocess.Popen(argv, env=env, cwd=ROOT)
    try:
        rc = proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:  # saves at the next step and records the sitting
        stopped = True
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    ship = args[args.index("--ship") + 1] if "--ship" in args else None
    out.mkdir(parents=True, exist_ok=True)
    tgz = out / "run.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(carry / "run", arcname="run")
        if ship and (ROOT / ship).is_file():
            tar.add(ROOT / ship, arcname=f"shipped/{Path(ship).name}")
    split(tgz)
    info = {"rc": rc, "stopped": stopped, "seconds": round(time.perf_counter() - t0, 1),
            "argv": argv, "ship": ship}  # fmt: skip
    (out / "remote.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))
    return 0 if stopped else rc  # stopped on time: saved, to be continued


def split(path: Path) -> list[Path]:
    """path -> path.part00, path.part01, ... of at most PART_BYTES each (path removed)."""
    parts = []
    with open(path, "rb") as f:
        while chunk := f.read(PART_BYTES):
            parts.append(path.with_name(f"{path.name}.part{len(parts):02d}"))
            parts[-1].write_bytes(chunk)
    path.unlink()
    return parts


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def unpack(files: Path, run: Path, root: Path = ROOT) -> Path:
    """Put the run returned in files/ (run.tar.gz.partNN, remote.json) in RUN's place, after
    checking it continues RUN; RUN is kept as RUN.before-device. Returns the new RUN."""
    parts = sorted(files.glob("run.tar.gz.part*"))
    if not parts:
        fail(f"{files} holds no run.tar.gz.part* (did the remote step run?)")
    info = json.loads((files / "remote.json").read_text())
    new = run.with_name(run.name + ".from-device")
    shutil.rmtree(new, ignore_errors=True)
    tgz = new.with_suffix(".tar.gz")
    with open(tgz, "wb") as f:
        for p in parts:
            f.write(p.read_bytes())
    with tarfile.open(tgz) as tar:
        tar.extractall(new, filter="data")
    tgz.unlink()
    got = new / "run"
    try:
        missing = [n for n in NEEDED if not (got / n).is_file()]
        if missing:
            fail(f"the returned run lacks {', '.join(missing)}; {run} is unchanged")
        for name in ("sittings.jsonl", "metrics.jsonl"):  # the device continued this run
            old, returned = lines(run / name), lines(got / name)
            if returned[: len(old)] != old:
                fail(f"the returned {name} does not extend {run}'s; {run} is unchanged")
    except SystemExit:
        shutil.rmtree(new)  # refused: nothing of it left beside RUN
        raise
    if not (got / "best.pt").exists() and (run / "best.pt").exists():
        shutil.copy2(run / "best.pt", got / "best.pt")  # no better epoch there: the old best
    kept = run.with_name(run.name + ".before-device")
    shutil.rmtree(kept, ignore_errors=True)
    run.rename(kept)
    got.rename(run)
    if info.get("ship") and (new / "shipped").is_dir():
        dest = root / info["ship"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(new / "shipped" / Path(info["ship"]).name, dest)
        print(f"shipped weights: {dest}")
    shutil.rmtree(new)
    epochs = len({json.loads(ln)["epoch"] for ln in lines(run / "metrics.jsonl")})
    print(f"{run}: {epochs} epochs, remote rc {info['rc']} in {info['seconds']} s; "
          f"the local run before it is {kept}")  # fmt: skip
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="step", required=True)
    a = sub.add_parser("pack", help="here: copy RUN and MNIST into .carry/")
    a.add_argument("run", type=Path)
    a.add_argument("--data-dir", type=Path, default=os.environ.get("VAEKIT_DATA", "../shared/data"))
    b = sub.add_parser("remote", help="there: continue the carried run, pack it into $OUT")
    b.add_argument("--seconds", type=float, default=520, help="SIGTERM after this long [520]")
    b.add_argument("--device", default="cuda", help="[cuda]")
    b.add_argument("--out", type=Path, default=os.environ.get("OUT"), help="[$OUT]")
    b.add_argument("args", nargs="*", help="results_nll.py's options, after --")
    c = sub.add_parser("unpack", help="here: put the returned run in RUN's place")
    c.add_argument("files", type=Path, help="the folder the device's files came back to")
    c.add_argument("run", type=Path)
    o = p.parse_args()
    if o.step == "pack":
        pack(o.run, Path(o.data_dir))
    elif o.step == "remote":
        if o.out is None:
            fail("--out or $OUT must name the folder the files go back from")
        sys.exit(remote(o.args, o.seconds, o.out, o.device))
    else:
        unpack(o.files, o.run)


if __name__ == "__main__":
    main()
