"""Experiment trackers (vaekit/training/trackers.py), all offline: TensorBoard's event files read
back with its EventAccumulator, W&B in offline mode (its run file read back record by record),
MLflow with a local file store. One tiny run and its resume feed every check."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.cli import build_parser, main
from vaekit.cli.train import config_values
from vaekit.config import ModelConfig, ObjectiveConfig, TrainConfig
from vaekit.training.trackers import Trackers, open_trackers

from .conftest import TINY

STEPS = 4  # 256 images / 64 a batch: optimizer steps an epoch


def run_info() -> dict:
    """A config.json's content, as the loop passes it."""
    return {"model": ModelConfig().to_dict(), "objective": ObjectiveConfig().to_dict(),
            "train": TrainConfig().to_dict(), "num_params": 10, "data_dir": None}  # fmt: skip


def test_log_takes_repeated_flags_and_comma_lists():
    args = build_parser().parse_args(
        ["train", "--log", "tensorboard", "--log", "wandb,mlflow", "tensorboard"]
    )
    assert TrainConfig(**{"log": config_values(args)["log"]}).log == (
        "tensorboard", "wandb", "mlflow"
    )  # fmt: skip
    assert TrainConfig(log="mlflow, tensorboard").log == ("mlflow", "tensorboard")
    assert TrainConfig(log="none").log == ()  # e.g. --resume RUN --log none: stop logging


def test_an_unknown_tracker_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "--log", "tensorbord", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "log must name trackers among ('tensorboard', 'wandb', 'mlflow')" in err
    assert "tensorbord" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "name,module", [("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb"),
                    ("mlflow", "mlflow")]
)  # fmt: skip
def test_a_missing_library_names_its_extra(tmp_path, monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ImportError, match=rf"--log {name} needs .*pip install 'vaekit\[{name}\]'"):
        open_trackers((name,), tmp_path, run_info())


class Recorder:
    """A backend that keeps what it is sent."""

    name = "recorder"

    def __init__(self):
        self.scalars, self.images, self.closed = [], [], None

    def log_scalars(self, values, step):
        self.scalars.append((step, values))

    def log_images(self, images, step):
        self.images.append((step, images))

    def close(self, ok):
        self.closed = ok


class Broken(Recorder):
    name = "broken"

    def log_scalars(self, values, step):
        raise ConnectionError("the tracking server went away\nmore detail")


def test_the_group_sends_step_terms_epoch_rows_and_figures_and_drops_a_failing_backend(tmp_path):
    lines, good, bad = [], Recorder(), Broken()
    with Trackers([bad, good], batch_size=64, log=lines.append) as group:
        res = {"loss": torch.tensor(2.5), "per_image": torch.tensor([1.0, 3.0]),
               "recon": torch.tensor([0.5, 1.5]), "kl": None, "gnorm": torch.tensor(7.0),
               "ok": torch.tensor(True)}  # fmt: skip
        group.log_step(10, res, lr=1e-3, skipped=1, spikes=0)
        assert lines == [
            "broken: logging failed (ConnectionError: the tracking server went away); "
            "going on without it"
        ]
        step, values = good.scalars[0]
        assert step == 10 and values["train/loss"] == 2.0 and values["train/objective"] == 2.5
        assert values["train/recon"] == 1.0 and "train/kl" not in values
        assert values["train/grad_norm"] == 7.0 and values["train/lr"] == 1e-3
        assert values["train/skipped_steps"] == 1 and values["train/images_per_second"] > 0
        grid = np.arange(12, dtype=np.uint8).reshape(3, 4)
        Image.fromarray(grid).save(tmp_path / "recon_002.png")
        Image.fromarray(grid).save(tmp_path / "recon_001.png")  # another epoch's: not sent
        row = {"epoch": 2, "step": 20, "train_loss": 5.0, "test_loss": 4.0, "test_kl": None}
        group.log_epoch(row, tmp_path)
    assert good.scalars[1] == (20, {"epoch/epoch": 2, "epoch/train_loss": 5.0, "test/loss": 4.0})
    assert len(good.images) == 1 and good.images[0][0] == 20
    assert np.array_equal(good.images[0][1]["recon"], grid)
    assert good.closed is True and bad.closed is None  # dropped: not called again


def tensorboard_checks(out: Path, rows: list[dict]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    ea = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    ea.Reload()
    steps = [e.step for e in ea.Scalars("train/loss")]
    assert steps == [2, 4, 6, 8]  # both sessions, each step once
    for tag in ("train/lr", "train/grad_norm", "train/recon", "train/kl", "train/skipped_steps"):
        assert [e.step for e in ea.Scalars(tag)] == steps
    assert all(e.value > 0 for e in ea.Scalars("train/images_per_second"))
    epochs = ea.Scalars("epoch/train_loss")
    assert [e.step for e in epochs] == [r["step"] for r in rows] == [STEPS, 2 * STEPS]
    assert [e.value for e in epochs] == pytest.approx([r["train_loss"] for r in rows], rel=1e-6)
    for name in ("recon", "samples"):
        images = ea.Images(name)
        png = Image.open(out / "figures" / f"{name}_002.png")
        assert [e.step for e in images] == [STEPS, 2 * STEPS]
        assert (images[-1].width, images[-1].height) == png.size
    content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["latent_dim"].number_value == 4 and hparams["dataset"].string_value == "mnist"


def wandb_records(run_file: Path):
    """The records of an offline W&B run file (run-ID.wandb): a 7-byte header (":W&B", magic,
    version), then LevelDB's log format (32 KiB blocks; each chunk a 7-byte header: crc32,
    length, type FULL/FIRST/MIDDLE/LAST) holding wandb_internal_pb2.Record messages."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header: padding
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            yield wandb_internal_pb2.Record.FromString(buf)
            buf = b""


def wandb_checks(out: Path, rows: list[dict]) -> None:
    run_id = json.loads((out / "trackers.json").read_text())["wandb"]["id"]
    files = sorted((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert [f.name for f in files] == [f"run-{run_id}.wandb"] * 2  # the resume: the same run
    history, config = [], {}
    for f in files:
        for rec in wandb_records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                for i in rec.history.item})  # fmt: skip
            elif kind in ("run", "config"):  # the config sent with the run, or after it
                items = (rec.run.config if kind == "run" else rec.config).update
                config.update({u.key: json.loads(u.value_json) for u in items})
    assert [h["_step"] for h in history if "train/loss" in h] == [2, 4, 6, 8]
    epochs = [h for h in history if "epoch/train_loss" in h]
    assert [h["_step"] for h in epochs] == [STEPS, 2 * STEPS]
    assert [h["epoch/train_loss"] for h in epochs] == pytest.approx([r["train_loss"] for r in rows])
    assert all(h["recon/_type"] == "image-file" for h in epochs)
    assert config["latent_dim"] == 4 and config["channels"] == [8, 16] and config["epochs"] == 2


def mlflow_checks(out: Path, rows: list[dict]) -> None:
    from mlflow.tracking import MlflowClient

    state = json.loads((out / "trackers.json").read_text())["mlflow"]
    client = MlflowClient(state["tracking_uri"])
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == out.name
    assert run.data.params["latent_dim"] == "4" and run.data.params["lr"] == "0.002"
    history = client.get_metric_history(state["run_id"], "train/loss")
    assert [m.step for m in history] == [2, 4, 6, 8]
    epochs = client.get_metric_history(state["run_id"], "epoch/train_loss")
    assert [(m.step, m.value) for m in epochs] == [
        (r["step"], pytest.approx(r["train_loss"])) for r in rows
    ]
    images = [a.path for a in client.list_artifacts(state["run_id"], "images")]
    assert sum(p.endswith(".png") and "recon" in p for p in images) == 2


def test_trackers_log_a_run_and_continue_it_when_it_resumes(tmp_path, monkeypatch, data_root):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 wants a database otherwise
    installed = [n for n in ("wandb", "mlflow") if importlib.util.find_spec(n)]
    out, data = tmp_path / "run", ["--data-dir", str(data_root)]
    # no test-set evaluation (seconds on 10,000 images): test_* rows go as the group test shows
    args = ["--limit", "256", "--eval-every", "0", "--log-every", "2"]
    args += ["--log", ",".join(["tensorboard", *installed])]
    assert main(["train", *args, *TINY, "--epochs", "1", "--out", str(out), *data]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "2", *data]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tensorboard_checks(out, rows)
    if "wandb" in installed:
        wandb_checks(out, rows)
    if "mlflow" in installed:
        mlflow_checks(out, rows)
