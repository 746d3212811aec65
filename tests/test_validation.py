"""What vaekit reads as numbers (issue 28): every numeric flag and config-file value is checked
for type, finiteness and range where it enters, in one line naming the flag or field, and a
config file gets the words its flag gets."""

from __future__ import annotations

import json
import math

import pytest

from vaekit.cli import build_parser, main
from vaekit.config import Number, all_fields, configs, image_size_value, read_config_file


def parse_error(argv: list[str], capsys) -> str:
    """The parser's one-line refusal of argv (exit 2), without the prefix "vaekit CMD: error: "."""
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.split(": error: ", 1)[1]


def test_every_numeric_field_has_a_rule():
    for name, f in all_fields().items():
        kind = type(f.default[0] if isinstance(f.default, tuple) and f.default else f.default)
        if name == "image_size":
            assert f.metadata["rule"] is image_size_value
        elif kind in (int, float):
            assert isinstance(f.metadata["rule"], Number), name


def test_no_flag_takes_a_bare_int_or_float():
    """Every numeric flag of every command is parsed by a rule (range and finiteness), none by
    int or float alone."""
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, p in commands.items():
        for a in p._actions:
            assert a.type not in (int, float), f"vaekit {name} {a.option_strings}"


RUN = ["RUN"]  # a run dir that is never read: these fail in the parser
IO = ["--data", "mnist:test", "--out", "x.csv"]


@pytest.mark.parametrize(
    "argv,flag,words,got",
    [
        (["sample", *RUN, "--temperature", "inf"], "--temperature", "a finite number > 0", "inf"),
        (["sample", *RUN, "--temperature", "nan"], "--temperature", "a finite number > 0", "nan"),
        (["sample", *RUN, "--temperature", "0"], "--temperature", "a finite number > 0", "0.0"),
        (["sample", *RUN, "--temperatures", "1", "-1"], "--temperatures", "a finite number >= 0",
         "-1.0"),
        (["sample", *RUN, "--n", "0"], "--n", "an integer in [1, 10000]", "0"),
        (["sample", *RUN, "--n", "-3"], "--n", "an integer in [1, 10000]", "-3"),
        (["sample", *RUN, "--n", "2.5"], "--n", "an integer in [1, 10000]", "'2.5'"),
        (["sample", *RUN, "--seed", "-1"], "--seed", "an integer in [0, 4294967295]", "-1"),
        (["sample", *RUN, "--seed", str(2**70)], "--seed", "an integer in [0, 4294967295]",
         str(2**70)),
        (["sample", *RUN, "--n", str(10**8)], "--n", "an integer in [1, 10000]", str(10**8)),
        (["reconstruct", *RUN, "--n", "0"], "--n", "an integer in [1, 10000]", "0"),
        (["traverse", *RUN, "--steps", "1"], "--steps", "an integer >= 2", "1"),
        (["traverse", *RUN, "--span", "nan"], "--span", "a finite number > 0", "nan"),
        (["traverse", *RUN, "--span=-inf"], "--span", "a finite number > 0", "-inf"),
        (["traverse", *RUN, "--dims", "0", "-1"], "--dims", "an integer >= 0", "-1"),
        (["traverse", *RUN, "--index", "-1"], "--index", "an integer >= 0", "-1"),
        (["interpolate", *RUN, "--a", "-1"], "--a", "an integer >= 0", "-1"),
        (["interpolate", *RUN, "--steps", "1"], "--steps", "an integer >= 2", "1"),
        (["evaluate", *RUN, "--batch-size", "0"], "--batch-size", "an integer >= 1", "0"),
        (["evaluate", *RUN, "--iw-samples", "x"], "--iw-samples", "an integer >= 1", "'x'"),
        (["evaluate", *RUN, "--iw-chunk", "0"], "--iw-chunk", "an integer >= 1", "0"),
        (["metrics", *RUN, "--n", "0"], "--n", "an integer >= 1", "0"),
        (["metrics", *RUN, "--temperature", "inf"], "--temperature", "a finite number > 0", "inf"),
        (["metrics", *RUN, "--classifier-limit", "-1"], "--classifier-limit", "an integer >= 0",
         "-1"),
        (["encode", *RUN, *IO, "--batch-size", "0"], "--batch-size", "an integer >= 1", "0"),
        (["score", *RUN, *IO, "--iw-samples", "-1"], "--iw-samples", "an integer >= 0", "-1"),
        (["score", *RUN, *IO, "--seed", "-2"], "--seed", "an integer in [0, 4294967295]", "-2"),
        (["explore", *RUN, "--port", "70000"], "--port", "an integer in [0, 65535]", "70000"),
        (["explore", *RUN, "--port", "http"], "--port", "an integer in [0, 65535]", "'http'"),
        (["explore", *RUN, "--tsne-max", "-1"], "--tsne-max", "an integer >= 0", "-1"),
        (["train", "--lr", "nan"], "--lr", "a finite number > 0", "nan"),
        (["train", "--lr", "-1"], "--lr", "a finite number > 0", "-1.0"),
        (["train", "--epochs", "0"], "--epochs", "an integer >= 1", "0"),
        (["train", "--epochs", "2.5"], "--epochs", "an integer >= 1", "'2.5'"),
        (["train", "--batch-size", "0"], "--batch-size", "an integer >= 1", "0"),
        (["train", "--beta", "-1"], "--beta", "a finite number >= 0", "-1.0"),
        (["train", "--beta", "inf"], "--beta", "a finite number >= 0", "inf"),
        (["train", "--mean", "nan"], "--mean", "a finite number", "nan"),
        (["train", "--std", "0"], "--std", "a finite number > 0", "0.0"),
        (["train", "--lr-min-frac", "2"], "--lr-min-frac", "a finite number in [0, 1]", "2.0"),
        (["train", "--skip-spikes", "0.5"], "--skip-spikes", "0 or a finite number > 1", "0.5"),
        (["train", "--seed", "-1"], "--seed", "an integer in [0, 4294967295]", "-1"),
        (["train", "--channels", "8", "x"], "--channels", "an integer >= 1", "'x'"),
        (["train", "--resolutions", "1", "0"], "--resolutions", "an integer >= 1", "0"),
        (["train", "--in-channels", "4"], "--in-channels", "an integer in [1, 3]", "4"),
        (["train", "--image-size", "4"], "--image-size",
         "H, HxW or H W with H and W integers >= 8", "'4'"),
    ],
)  # fmt: skip
def test_numeric_flags_are_checked_at_parse_time(argv, flag, words, got, capsys):
    err = parse_error(argv, capsys)
    assert err.startswith(f"argument {flag}: must be {words}, got {got} (see ")


@pytest.mark.parametrize(
    "flag,value,field,text",
    [
        ("--latent-dim", "abc", "latent_dim", 'latent_dim: "abc"'),
        ("--latent-dim", "true", "latent_dim", "latent_dim: [1, 2]"),
        ("--lr", "nan", "lr", "lr: .nan"),
        ("--epochs", "2.5", "epochs", "epochs: 2.5"),
        ("--image-size", "abc", "image_size", 'image_size: "abc"'),
        ("--channels", "x", "channels", 'channels: [8, "x"]'),
        ("--seed", "-1", "seed", "seed: -1"),
    ],
)
def test_a_config_file_gets_the_words_its_flag_gets(flag, value, field, text, tmp_path, capsys):
    flag_err = parse_error(["train", flag, value], capsys)
    words = flag_err.split(": must be ")[1].split(", got ")[0]
    (tmp_path / "c.yaml").write_text(text + "\n")
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()
    assert err.startswith(f"vaekit train: error: --config {tmp_path / 'c.yaml'}: {field} must be ")
    assert f"must be {words}, got " in err


@pytest.mark.parametrize(
    "text,expect",
    [
        ('latent_dim: "abc"', "latent_dim must be an integer >= 1, got 'abc'"),
        ("latent_dim: true", "latent_dim must be an integer >= 1, got True"),
        ("latent_dim: [1, 2]", "latent_dim must be an integer >= 1, got [1, 2]"),
        ("latent_dim:", "latent_dim must be an integer >= 1, got None"),
        ("epochs: 2.5", "epochs must be an integer >= 1, got 2.5"),
        ("lr: .nan", "lr must be a finite number > 0, got nan"),
        ("lr: -.inf", "lr must be a finite number > 0, got -inf"),
        ('lr: "fast"', "lr must be a finite number > 0, got 'fast'"),
        ('image_size: "abc"', "image_size must be H, HxW or H W with H and W integers >= 8, got "
         "'abc'"),
        ("image_size: [28, 28, 28]", "image_size must be H, HxW or H W"),
        ('channels: [8, "x"]', "channels must be an integer >= 1, got 'x'"),
        ("channels: []", "channels must be one or more values, each an integer >= 1, got []"),
        ('figures: "no"', "figures must be true or false, got 'no'"),
        ("dataset: 5", "dataset must be a string, got 5"),
        ("latentdim: 3", "unknown config field 'latentdim'"),
        ("model: 5", "model must be a mapping of config fields, got 5"),
        ("model: {net: [1]}", "net must be a mapping of config fields, got [1]"),
    ],
)  # fmt: skip
def test_bad_config_values_are_one_line_errors_naming_the_field(text, expect, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vaekit train: error: --config {path}: {expect}")
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_json_config_nan_and_bool_are_refused(tmp_path, capsys):
    path = tmp_path / "c.json"
    for text, expect in [
        ('{"lr": NaN}', "lr must be a finite number > 0, got nan"),
        ('{"batch_size": true}', "batch_size must be an integer >= 1, got True"),
        ('{"train": {"epochs": 1e400}}', "epochs must be an integer >= 1, got inf"),
    ]:
        path.write_text(text)
        assert main(["train", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
        assert capsys.readouterr().err == f"vaekit train: error: --config {path}: {expect}\n"


def test_numeric_strings_in_a_file_are_numbers_as_on_the_command_line(tmp_path):
    """YAML reads 1e-3 (no dot) as a string; --lr 1e-3 is a number, so the file's is too."""
    path = tmp_path / "c.yaml"
    path.write_text('preset: seed\nlr: 1e-3\nbeta: "2"\nlatent_dim: "8"\nimage_size: 28x28\n')
    values = read_config_file(path)
    assert values == {"preset": "seed", "lr": 1e-3, "beta": 2.0, "latent_dim": 8,
                      "image_size": (28, 28)}  # fmt: skip
    assert isinstance(values["beta"], float) and isinstance(values["latent_dim"], int)


def test_a_runs_config_json_reads_back_as_its_configs(tmp_path):
    """Also a hierarchical run's, on the default (mnist) preset: the preset's options of the
    vae family (arch, channels, latent_dim) are not the hvae's, and are dropped, not refused."""
    m, o, t = configs("mnist-hvae", lr=1e-3, log="tensorboard")
    run_info = {"model": m.to_dict(), "objective": o.to_dict(), "train": t.to_dict(),
                "num_params": 10, "data_dir": None}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(run_info))
    assert configs("mnist", **read_config_file(tmp_path / "config.json")) == (m, o, t)
    assert configs("mnist", family="hvae")[0].net.width == 64  # --family hvae
    with pytest.raises(ValueError, match=r"family hvae has no options \['latent_dim'\]"):
        configs("mnist", family="hvae", latent_dim=8)  # given by the user: refused


@pytest.mark.parametrize(
    "fields,expect",
    [
        (dict(latent_dim="abc"), "latent_dim must be an integer >= 1, got 'abc'"),
        (dict(latent_dim=True), "latent_dim must be an integer >= 1, got True"),
        (dict(epochs=2.5), "epochs must be an integer >= 1, got 2.5"),
        (dict(lr=math.nan), "lr must be a finite number > 0, got nan"),
        (dict(temperature=1), "unknown config field 'temperature'"),
        (dict(compile="false"), "compile must be true or false, got 'false'"),
        (dict(channels=(8, 2.5)), "channels must be an integer >= 1, got 2.5"),
        (dict(family="hvae", width=6), "width must be a multiple of 4, got 6"),
        (dict(family="hvae", groups=(1, 1)), "groups must give >= 1 group for each resolution"),
    ],
)
def test_python_config_values_get_the_same_checks(fields, expect):
    """vaekit.train(**fields) and the configs take the same rules as the flags and files."""
    with pytest.raises(ValueError) as e:
        configs("mnist-hvae" if fields.get("family") == "hvae" else "mnist", **fields)
    assert str(e.value).startswith(expect)
    assert configs("mnist", lr="1e-3")[2].lr == 1e-3


def test_a_run_commands_device_is_one_of_the_known(capsys):
    """Was: a RuntimeError traceback from torch for --device tpu."""
    err = parse_error(["sample", "RUN", "--device", "tpu"], capsys)
    assert err.startswith("argument --device: invalid choice: 'tpu' (choose from 'auto', 'cpu'")


def test_numbers_that_would_be_ignored_or_misdrawn_are_refused(tmp_path, capsys):
    """--crop on a dataset that is never cropped (was: silently ignored); --dims i i (was: one
    dim drawn along both axes, its offsets added); --steps 1 (was: one cell at -span, not the
    image's code) is refused by the parser above."""
    assert main(["train", "--crop", "20", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.endswith(
        ": error: --crop 20: only folder: and celeba images are cropped, not mnist's\n"
    )
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()
    assert main(["traverse", str(tmp_path / "never-read"), "--dims", "2", "2"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(": error: --dims takes two different dims (rows, columns), got 2 twice\n")


def test_metrics_refuses_too_few_samples_before_any_work(tmp_path, capsys):
    """Was: the dataset's classifier trained (~15 s) before the k-NN metrics refused --n 1."""
    assert main(["metrics", str(tmp_path / "never-read"), "--n", "5"]) == 2
    assert capsys.readouterr().err.endswith(
        ": error: --n must be > 5 (the k of the k-NN metrics), got 5\n"
    )


def test_a_relative_image_folder_in_a_config_file_is_the_files_neighbour(tmp_path, monkeypatch):
    """dataset: folder:PATH in a file is made absolute from the file's folder, as the flag makes
    it absolute from the current one (a run records it; the run may be used from elsewhere)."""
    from vaekit.config import read_config_file

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "c.json").write_text('{"dataset": "folder:imgs"}')
    (tmp_path / "conf" / "abs.json").write_text(f'{{"dataset": "folder:{tmp_path}/x"}}')
    monkeypatch.chdir(tmp_path)
    assert read_config_file("conf/c.json")["dataset"] == f"folder:{tmp_path / 'conf' / 'imgs'}"
    assert read_config_file("conf/abs.json")["dataset"] == f"folder:{tmp_path / 'x'}"
