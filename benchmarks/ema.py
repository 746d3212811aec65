"""What EMA weights give: a preset trained once per EMA decay with the same seed (the raw weights
are the same in every run: the EMA does not change training), each epoch's checkpoint then
evaluated on the test set with its raw weights and with its EMA weights. Writes OUT/ema.json:
per epoch the test loss (-ELBO in the likelihood's training units) and -ELBO in nats, raw and
per decay, the commands, the hardware, the commit. A benchmark, not a test: run it alone.

    python benchmarks/ema.py --out runs/ema                           # mnist, 10 epochs
    python benchmarks/ema.py --out /tmp/smoke --epochs 1 --limit 512  # a smoke run
"""

from __future__ import annotations

import argparse
import json
import shlex

from common import add_train_args, command, provenance, run_vaekit, train_fields

from vaekit import checkpoint
from vaekit.data import load_split
from vaekit.evaluation.bound import evaluate


def scores(ckpt: dict, x_test, raw: bool) -> dict:
    """Test loss and -ELBO (nats) of a checkpoint's raw or EMA weights."""
    ev = evaluate(checkpoint.build_model(ckpt, raw_weights=raw), x_test)
    return {"test_loss": ev["test_loss"], "neg_elbo_nats": -ev["elbo"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_args(p, "runs/ema", "mnist", 10)
    p.add_argument("--decays", type=float, nargs="+", default=[0.999, 0.9995], help="EMA decays")
    p.add_argument("--limit", type=int, default=0, help="first N training images (0 = all)")
    p.add_argument("--train-flags", default="", help="more vaekit train flags, quoted")
    a = p.parse_args()
    record, epochs = provenance("cpu"), {}
    record["train_commands"], record["train_seconds"] = [], {}
    for decay in a.decays:
        out = a.out / f"ema-{decay}"
        fields = dict(
            epochs=a.epochs,
            limit=a.limit,
            ema=decay,
            keep=a.epochs,
            eval_every=0,
            figures=False,
            device="cpu",
            **train_fields(shlex.split(a.train_flags)),
        )
        record["train_commands"].append(command("train", out=out, preset=a.preset, **fields))
        _, seconds = run_vaekit("ema", "train", out, a.preset, **fields)
        record["train_seconds"][str(decay)] = seconds
        for path in sorted((out / "checkpoints").glob("epoch_*.pt")):
            ckpt = checkpoint.load(path)
            if not epochs:
                tc, cfg = ckpt["train_config"], ckpt["model_config"]
                size, ch = tuple(cfg["image_size"]), cfg["in_channels"]
                x, _ = load_split(tc["dataset"], "test", None, None, size, ch, tc.get("crop", 0))
                x_test = checkpoint.build_model(ckpt).likelihood.prepare_eval(x)
            row = epochs.setdefault(ckpt["epoch"], {"epoch": ckpt["epoch"]})
            row.setdefault("raw", scores(ckpt, x_test, raw=True))
            row[f"ema_{decay}"] = scores(ckpt, x_test, raw=False)
            print(json.dumps(row), flush=True)
    record["preset"], record["epochs_evaluated"] = a.preset, list(epochs.values())
    (a.out / "ema.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"ema: wrote {a.out / 'ema.json'}")


if __name__ == "__main__":
    main()
