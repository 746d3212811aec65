"""The same preset trained with the ELBO and with IWAE (K importance samples), for the same
epochs; both evaluated with the importance-weighted bound (K=1000 by default) on the first
2,000 test images. Writes OUT/objectives.json: per objective the test NLL, the ELBO, the time
per epoch, the commands, the hardware, the commit. A benchmark, not a test: run it alone.
Stopped at any point, it continues where it was when run again with the same --out.

    python benchmarks/objectives.py --out runs/objectives                 # mnist-nll, 10 epochs
    python benchmarks/objectives.py --out /tmp/smoke --epochs 1 --limit 512 --iw-samples 10 \\
        --eval-limit 100                                                  # a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys

from common import (
    add_run_args,
    add_train_args,
    command,
    commit,
    hardware,
    run_vaekit,
    train_fields,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_args(p, "runs/objectives", "mnist-nll", 10)
    p.add_argument("--iw-k", type=int, default=5, help="IWAE's importance samples [5]")
    p.add_argument("--iw-batch", type=int, default=250, help="samples per decoder pass [250]")
    p.add_argument("--train-flags", default="", help="more vaekit train flags for both, quoted")
    add_run_args(p, iw_samples=1000, eval_limit=2000)
    a = p.parse_args()

    results = {}
    for name, iw_k in (("elbo", None), ("iwae", a.iw_k)):
        out = a.out / name
        fields = dict(objective=name, iw_k=iw_k, epochs=a.epochs, limit=a.limit, figures=False)
        fields = {k: v for k, v in fields.items() if v is not None}
        fields.update(train_fields(shlex.split(a.train_flags)))  # given last: they win
        train = dict(out=out, preset=a.preset, device=a.device, data_dir=a.data_dir, **fields)
        if (out / "last.pt").exists():  # continue an interrupted run
            train = dict(resume=out, device=a.device, data_dir=a.data_dir)
        run_vaekit("objectives", "train", **train)
        rows = {r["epoch"]: r for r in map(json.loads, (out / "metrics.jsonl").open())}
        if max(rows, default=0) < a.epochs:
            sys.exit("objectives: training was stopped; run the same command again to continue")
        evaluate = dict(device=a.device, iw_samples=a.iw_samples, iw_batch=a.iw_batch,
                        limit=a.eval_limit, probe=False, out=out / "eval_iw.json",
                        data_dir=a.data_dir)  # fmt: skip
        ev = run_vaekit("objectives", "evaluate", out, **evaluate)[0]
        seconds = [r["epoch_seconds"] for r in rows.values()]
        results[name] = {
            "nll_iw": ev["nll_iw"],
            "nll_iw_sem": ev["nll_iw_sem"],
            "elbo": ev["elbo"],
            "kl": ev["kl"],
            "active_units": ev["active_units"],
            "epoch_seconds_median": statistics.median(seconds),
            "epoch_seconds": seconds,
            "test_loss_per_epoch": [r.get("test_loss") for r in rows.values()],
            "commands": [command("train", **train), command("evaluate", out, **evaluate)],
        }
    result = {
        "protocol": f"{a.preset}, {a.epochs} epochs each; test NLL: importance-weighted bound, "
        f"K={a.iw_samples}, first {a.eval_limit} test images (binarized once, seed 0)",
        "results": results,
        "hardware": hardware(a.device),
        "commit": commit(),
        "date": datetime.date.today().isoformat(),
    }
    (a.out / "objectives.json").write_text(json.dumps(result, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name}: nll_iw {r['nll_iw']:.2f} (s.e. {r['nll_iw_sem']:.2f}), elbo "
              f"{r['elbo']:.2f}, {r['epoch_seconds_median']:.1f} s/epoch")  # fmt: skip


if __name__ == "__main__":
    main()
