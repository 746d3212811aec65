"""A new run from a preset, a config file and field values, as `vaekit train` (vaekit.api.train)
starts one."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..config import (
    ModelConfig,
    ObjectiveConfig,
    TrainConfig,
    configs,
    read_config_file,
    train_config,
)
from ..errors import ConfigError
from ..runtime.device import resolve_device
from ..runtime.memory import check_memory
from .batches import load_training_data
from .lock import run_lock
from .loop import fit, say


def new_run_configs(
    preset: str | None, config: str | Path | None, values: dict, data_dir: str | Path | None
) -> tuple[str, ModelConfig, ObjectiveConfig, TrainConfig]:
    """(preset name, configs) of a new run: the preset, then the config file, then values (flat
    field values); the model's image size, channels and normalisation from the dataset unless
    given. The preset is the argument's, else the file's, else mnist."""
    from ..data import describe, num_classes

    file = read_config_file(config) if config else {}
    preset = preset or file.pop("preset", None) or "mnist"
    file.pop("preset", None)
    values = {**file, **values}
    tcfg = train_config(preset, **values)  # the data's fields, before the model's are known
    size, ch = values.get("image_size"), values.get("in_channels")
    info = describe(tcfg.dataset, data_dir, size, ch, tcfg.crop)
    data = dict(mean=info.mean, std=info.std, in_channels=info.channels, image_size=info.size)
    mcfg, ocfg, tcfg = configs(preset, **{**data, **values})
    if getattr(mcfg.net, "conditional", False):
        k = num_classes(tcfg.dataset, data_dir, info.size, info.channels, tcfg.crop)
        if not k:
            raise ConfigError(
                f"--conditional needs class labels, and {tcfg.dataset} has none (a folder's "
                "classes are its subfolders)"
            )
        if "num_classes" not in values:  # the data's, unless given
            mcfg = replace(mcfg, net=replace(mcfg.net, num_classes=k))
    return preset, mcfg, ocfg, tcfg


def train_run(
    mcfg: ModelConfig,
    ocfg: ObjectiveConfig,
    tcfg: TrainConfig,
    out: str | Path,
    *,
    ckpt: dict | None = None,
    data_dir: str | Path | None = None,
    log=say,
) -> dict:
    """Refuse a step too large for memory, then load the data and fit (see fit) into run
    directory out; returns the last epoch's metrics row. data_dir: the data root (None:
    $VAEKIT_DATA, else ~/.cache/vaekit), recorded with the run for its tools. out is held
    (see run_lock) from the start: a second writer is refused before the data load."""
    from ..objectives import create_objective

    samples = create_objective(ocfg).samples
    # before the data are loaded (and resized) for a step that cannot fit
    check_memory(mcfg, tcfg.batch_size, resolve_device(tcfg.device), samples, log=lambda _: None)
    with run_lock(out):
        d = load_training_data(
            tcfg.dataset, mcfg.image_size, mcfg.in_channels, tcfg.crop, tcfg.limit, data_dir
        )
        where = data_location(data_dir, tcfg.dataset)
        return fit(mcfg, ocfg, tcfg, out, d.x_train, d.x_test, stream=d.stream, ckpt=ckpt,
                   data_dir=where, log=log, y_train=d.y_train, y_test=d.y_test)  # fmt: skip


def data_location(data_dir: str | Path | None, dataset: str) -> str | None:
    """Where a run's data came from, to record with it: data_dir, else $VAEKIT_DATA, else the
    searched root that holds the dataset (the cache or a data folder near the current one), so
    the run's tools find it from any folder. None for folder: datasets (their path is absolute)."""
    from ..data import search_roots

    where = data_dir or os.environ.get("VAEKIT_DATA")
    if not where and not dataset.startswith("folder:"):
        where = next((r for r in search_roots(None) if (r / dataset).is_dir()), None)
    return str(Path(where).expanduser().resolve()) if where else None
