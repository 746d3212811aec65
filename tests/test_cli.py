import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from vaekit.cli import main

from .conftest import TINY

COMMANDS = [
    "train",
    "sample",
    "reconstruct",
    "traverse",
    "interpolate",
    "evaluate",
    "export",
    "explore",
    "prior",
]


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def test_help_lists_every_command_and_config_flag(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(c in out for c in COMMANDS)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--epochs",
        "--batch-size",
        "--lr",
        "--latent-dim",
        "--seed",
        "--device",
        "--limit",
        "--eval-every",
        "--resume",
        "--out",
        "--preset",
        "--beta",
        "--likelihood",
        "--mixtures",
        "--kl-warmup",
        "--free-bits",
    ):
        assert flag in out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_each_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and "usage: vaekit " + cmd in capsys.readouterr().out


def test_python_dash_m_and_console_script_run():
    r = subprocess.run(
        [sys.executable, "-m", "vaekit", "--version"], capture_output=True, text=True
    )
    assert r.returncode == 0 and r.stdout.startswith("vaekit ")


def test_help_and_version_do_not_import_torch():
    """`vaekit --help` answers in a fraction of a second: torch (seconds to import) stays out."""
    code = (
        "import sys; from vaekit.cli import main\n"
        "for argv in (['--help'], ['--version'], ['train', '--help']):\n"
        "    try: main(argv)\n"
        "    except SystemExit: pass\n"
        "import vaekit; vaekit.__version__\n"
        "print('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "False", r.stderr


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["train", "--epochs", "zero"], "argument --epochs: must be an integer >= 1, got 'zero'"),
        (["train", "--dataset", "imagenet"], "invalid choice: 'imagenet'"),
        (["train", "--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
        (["train", "--latent-dim", "-3"], "--latent-dim: must be an integer >= 1, got -3"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["sample"], "the following arguments are required: RUN_DIR"),
        (["train", "--likelihood", "nope"], "likelihood must be one of"),
        (["train", "--likelihood", "logistic", "--mixtures", "0"], "must be an integer >= 1"),
        (["train", "--free-bits", "-1"], "--free-bits: must be a finite number >= 0, got -1.0"),
        (["sample", "RUN", "--n", "0"], "argument --n: must be an integer in [1, 10000], got 0"),
        (["evaluate", "RUN", "--iw-samples", "0"], "--iw-samples: must be an integer >= 1, got 0"),
        (["evaluate", "RUN", "--iw-batch", "-2"], "--iw-batch: must be an integer >= 1, got -2"),
        (["evaluate", "RUN", "--limit", "-1"], "--limit: must be an integer >= 0, got -1"),
        (["interpolate", "RUN", "--b", "-1"], "argument --b: must be an integer >= 0, got -1"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, expect, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        code = main(argv)
        raise SystemExit(code)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert expect in err and len(err.strip().splitlines()) == 1


def test_missing_run_dir_is_one_line_exit_2(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("no such run directory or checkpoint") and len(err.splitlines()) == 1


def test_missing_dataset_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    argv = ["train", "--out", str(tmp_path / "r"), "--data-dir", str(tmp_path / "none")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not found" in err and "Put the IDX .gz files" in err
    assert not (tmp_path / "r" / "last.pt").exists()


def test_corrupted_dataset_file_is_named(tiny_run, data_root, tmp_path, capsys):
    bad = tmp_path / "data" / "mnist"
    bad.mkdir(parents=True)
    for f in (data_root / "mnist").iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    p = bad / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:100_000])
    assert main(["evaluate", str(tiny_run), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "t10k-images-idx3-ubyte.gz" in err and "corrupted" in err


def test_end_to_end_train_resume_and_every_tool(tiny_run, data_root, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["--data-dir", str(data_root)]
    argv = ["train", "--limit", "256", "--epochs", "1", "--out", str(run), *TINY, *base]
    assert main(argv) == 0
    assert (run / "last.pt").is_file() and (run / "figures" / "samples_001.png").is_file()
    assert png_size(run / "figures" / "recon_001.png") == (242 + 8 + 242, 242)
    assert main(["train", "--resume", str(run), "--epochs", "2", *base]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["step"] == 2 * 4
    capsys.readouterr()

    assert main(["sample", str(run), "--n", "64", "--temperature", "0.8"]) == 0
    assert png_size(run / "samples.png") == (242, 242)
    assert (
        main(["reconstruct", str(run), "--n", "16", "--out", str(tmp_path / "r.png"), *base]) == 0
    )
    assert png_size(tmp_path / "r.png") == (122 + 8 + 122, 122)
    assert main(["traverse", str(run), *base]) == 0
    assert "traversing latent dims" in capsys.readouterr().out
    assert png_size(run / "traverse.png") == (364, 364)
    argv = ["traverse", str(run), "--dims", "0", "3", "--steps", "5", "--index", "7", *base]
    assert main(argv) == 0
    assert png_size(run / "traverse.png") == (140, 140)
    assert main(["interpolate", str(run), "--a", "0", "--b", "1", "--steps", "10", *base]) == 0
    assert png_size(run / "interp.png") == (302, 32)
    capsys.readouterr()
    argv = ["evaluate", str(run), "--json", "--no-probe", "--out", str(tmp_path / "e.json")]
    assert main([*argv, *base]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"test_loss", "recon", "kl", "num_images"} <= set(res)
    assert res["num_images"] == 10000 and res["epoch"] == 2
    assert abs(res["test_loss"] - (res["recon"] + res["kl"])) < 1e-6 * res["test_loss"]
    assert abs(res["test_loss"] - rows[1]["test_loss"]) < 1e-3  # same fixed data and noise
    assert json.loads((tmp_path / "e.json").read_text()) == res


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["traverse", "RUN", "--dims", "0", "99"], "latent dim 99 out of range"),
        (["traverse", "RUN", "--index", "10000"], "--index 10000 is out of range"),
        (["interpolate", "RUN", "--b", "10000"], "--b 10000 is out of range"),
        (["sample", "RUN", "--temperatures", "1", "1"], "2 given, the model has 1 latent group"),
        (["train", "--resume", "RUN", "--latent-dim", "8"], "a resumed run keeps its config"),
    ],
)
def test_bad_requests_on_a_run_exit_2(argv, expect, tiny_run, data_root, capsys):
    argv = [str(tiny_run) if a == "RUN" else a for a in argv] + ["--data-dir", str(data_root)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1


@pytest.fixture(scope="module")
def bernoulli_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bernoulli"
    argv = ["train", "--likelihood", "bernoulli", "--limit", "256", "--epochs", "1", *TINY]
    argv += ["--kl-warmup", "2", "--free-bits", "0.05", "--no-figures", "--eval-every", "0"]
    assert main([*argv, "--out", str(out), "--data-dir", str(data_root)]) == 0
    return out


def test_evaluate_reports_the_iw_bound_bits_per_dim_units_and_probe(
    bernoulli_run, data_root, capsys
):
    base = [str(bernoulli_run), "--limit", "300", "--json", "--data-dir", str(data_root)]
    capsys.readouterr()
    assert main(["evaluate", *base, "--iw-samples", "16", "--iw-chunk", "5"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["likelihood"] == "bernoulli" and res["iw_samples"] == 16
    assert res["num_images"] == 300 and len(res["kl_per_dim"]) == 4
    assert res["elbo"] < 0 and res["elbo"] == pytest.approx(-(res["recon"] + res["kl"]))
    assert res["nll_iw"] <= -res["elbo"] + 0.5  # the IW bound is the tighter one
    assert res["bits_per_dim_from"] == "nll_iw"
    record = json.loads(Path(res["iw_record"]).read_text())  # per-image bounds, beside last.pt
    assert Path(res["iw_record"]).parent == bernoulli_run and len(record["log_px"]) == 300
    assert -sum(record["log_px"]) / 300 == pytest.approx(res["nll_iw"])
    sem = statistics.stdev(record["log_px"]) / math.sqrt(300)
    assert res["nll_iw_sem"] == pytest.approx(sem) and res["iw_seconds"] > 0
    assert res["bits_per_dim"] == pytest.approx(res["nll_iw"] / (784 * math.log(2)))
    assert isinstance(res["active_units"], int) and 0 <= res["active_units"] <= 4
    assert 0 <= res["probe_accuracy"] <= 1
    assert main(["evaluate", *base, "--no-probe"]) == 0
    res2 = json.loads(capsys.readouterr().out)
    assert "nll_iw" not in res2 and "probe_accuracy" not in res2 and res2["iw_samples"] is None
    assert res2["bits_per_dim_from"] == "elbo" and res2["elbo"] == res["elbo"]  # fixed data, seed
    assert main(["evaluate", *base, "--no-probe", "--iw-samples", "16", "--iw-chunk", "5"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["nll_iw"] == res["nll_iw"] and "iw bound: read from" in err
    assert res2["bits_per_dim"] == pytest.approx(-res["elbo"] / (784 * math.log(2)))


def test_evaluate_labels_mid_epoch_weights_as_such(tiny_run, tmp_path, capsys):
    ckpt = torch.load(tiny_run / "last.pt", weights_only=True)
    ckpt.update(epoch=0, batch=5, step=5)  # as saved by a SIGTERM 5 steps into epoch 1
    (tmp_path / "run").mkdir()
    torch.save(ckpt, tmp_path / "run" / "last.pt")
    assert main(["evaluate", str(tmp_path / "run"), "--limit", "100", "--no-probe"]) == 0
    assert "epoch 0 + 5 steps (mid-epoch 1)" in capsys.readouterr().out


def test_a_run_remembers_where_its_data_came_from(tiny_run, tmp_path, monkeypatch, data_root):
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["data_dir"] == str(data_root.resolve())
    monkeypatch.delenv("VAEKIT_DATA", raising=False)  # a new shell: no environment variable
    out = tmp_path / "r.png"
    assert main(["reconstruct", str(tiny_run), "--n", "4", "--out", str(out)]) == 0
    assert out.is_file()


def test_a_runs_config_json_reproduces_the_run(tiny_run, tmp_path, data_root):
    out = tmp_path / "again"
    args = ["train", "--config", str(tiny_run / "config.json"), "--out", str(out)]
    assert main([*args, "--data-dir", str(data_root)]) == 0
    a = torch.load(tiny_run / "last.pt", weights_only=True)["model"]
    b = torch.load(out / "last.pt", weights_only=True)["model"]
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_vaekit_train_from_python_trains_what_the_cli_trains(tiny_run, tmp_path, data_root):
    import vaekit

    fields = dict(limit=512, epochs=1, channels=(8, 16), latent_dim=4, batch_size=64)
    model = vaekit.train(tmp_path / "py", precision="fp32", data_dir=data_root, **fields)
    assert not model.training and model.cfg.net.latent_dim == 4
    a = torch.load(tiny_run / "last.pt", weights_only=True)["model"]  # vaekit train, the flags
    b = model.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="unknown config field 'latentdim'"):
        vaekit.train(tmp_path / "bad", latentdim=3, data_dir=data_root)
    assert not (tmp_path / "bad").exists()


def test_a_yaml_config_then_flags_override_the_preset(tmp_path, data_root):
    (tmp_path / "c.yaml").write_text(
        "preset: mnist\nlatent_dim: 3\nchannels: [8, 16]\nepochs: 1\nlimit: 64\n"
        "eval_every: 0\nfigures: false\nbeta: 0.5\n"
    )
    out = tmp_path / "r"
    argv = ["train", "--config", str(tmp_path / "c.yaml"), "--latent-dim", "5", "--out", str(out)]
    assert main([*argv, "--data-dir", str(data_root)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    net = {"arch": "resnet", "latent_dim": 5, "channels": [8, 16]}
    assert {k: cfg["model"]["net"][k] for k in net} == net
    assert cfg["model"]["net"]["conditional"] is False  # the preset's (mnist)
    assert cfg["objective"]["beta"] == 0.5 and cfg["train"]["limit"] == 64  # file over preset
    assert cfg["train"]["lr"] == 2e-3  # the preset's, untouched by the file


@pytest.mark.parametrize(
    "text,expect",
    [
        ("[1, 2]", "must hold a mapping"),
        ("{bad", "not valid JSON"),
        ('{"latentdim": 3}', "latentdim"),
    ],
)
def test_bad_config_files_are_one_line_errors(tmp_path, capsys, text, expect):
    (tmp_path / "c.json").write_text(text)
    assert main(["train", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1


def test_a_step_too_large_for_memory_is_refused_before_the_data_load(tmp_path, data_root, capsys):
    # MNIST resized to 1024 px would be 63 GB of uint8 before training: refused first, at once
    argv = ["train", "--image-size", "1024", "--in-channels", "3", "--out", str(tmp_path / "r")]
    assert main([*argv, "--data-dir", str(data_root)]) == 2
    err = capsys.readouterr().err
    assert "3x1024x1024 images, batch 64) needs about" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_picture_commands_take_any_images_with_data(tiny_run, tmp_path, capsys, data_root):
    from vaekit.data import load_split

    x, _ = load_split("mnist", "test", data_root)
    d = tmp_path / "mine"
    d.mkdir()
    for i in range(3):  # three of the user's own images, as PNG files
        Image.fromarray(x[5 + i, 0].numpy()).save(d / f"{i}.png")
    run, base = str(tiny_run), ["--data-dir", str(data_root)]

    out = tmp_path / "r.png"
    argv = ["reconstruct", run, "--n", "16", "--data", f"folder:{d}", "--out", str(out)]
    assert main(argv) == 0
    assert "--n 16 but --data has 3 images; showing 3" in capsys.readouterr().out
    assert png_size(out) == (62 + 8 + 62, 62)  # 3 images in a 2x2 grid, each side
    # a dataset split through --data is the same as the default test images
    default, named = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["reconstruct", run, "--n", "4", "--out", str(default), *base]) == 0
    argv = ["reconstruct", run, "--n", "4", "--data", "mnist:test", "--out", str(named), *base]
    assert main(argv) == 0
    assert default.read_bytes() == named.read_bytes()

    files = [str(d / f"{i}.png") for i in range(3)]
    assert main(["interpolate", run, "--a", "0", "--b", "2", "--data", *files]) == 0
    assert main(["traverse", run, "--index", "1", "--steps", "5", "--data", f"folder:{d}"]) == 0
    assert "of --data" in capsys.readouterr().out
    assert main(["interpolate", run, "--b", "3", "--data", f"folder:{d}"]) == 2
    assert "--b 3 is out of range: --data has images 0..2" in capsys.readouterr().err
