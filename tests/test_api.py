"""The Python API: every command is a function of vaekit of the same name (vaekit.api) that
returns the record the CLI prints or writes for the same arguments. The tests call them as
api.NAME: vaekit.evaluate, .metrics, .export and .explore are still modules until they move
into packages (#29)."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from vaekit import api, outputs
from vaekit.api.train import train_into
from vaekit.cli import COMMANDS, main


def images(folder: Path, n: int = 6) -> list[str]:
    """n random 28x28 grey PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = [folder / f"{i}.png" for i in range(n)]
    for p in paths:
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(p)
    return [str(p) for p in paths]


def read_safetensors(path: Path) -> tuple[dict, dict]:
    """(tensors, metadata) of a .safetensors file."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_every_command_is_a_function_of_vaekit_of_the_same_name():
    """The CLI's table and the API name the same operations, and vaekit exports each one whose
    name no module of vaekit takes (until evaluate, metrics, export and explore move into
    packages, `from vaekit import metrics` is the module). Checked in a fresh interpreter, which
    imports no torch for it."""
    ops = [n for n in api.__all__ if n not in ("Run", "open_run")]
    assert sorted(COMMANDS) == sorted(ops)
    free = [n for n in ops if importlib.util.find_spec(f"vaekit.{n}") is None]
    assert len(free) >= 7  # all but the four modules' names
    for name in ops:
        f = getattr(api, name)
        assert callable(f) and f.__name__ == name
        assert (name in vaekit.__all__) == (name in free)
    code = (
        "import sys, vaekit, vaekit.api\n"
        f"names = {free!r}\n"
        "bad = [n for n in names if getattr(vaekit, n) is not getattr(vaekit.api, n)]\n"
        "print(bad, 'torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == ["[]", "False"], r.stderr


def test_evaluate_returns_what_evaluate_json_prints(tiny_run, tmp_path, capsys):
    argv = ["evaluate", str(tiny_run), "--limit", "300", "--json", "--out", str(tmp_path / "e")]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    res = api.evaluate(tiny_run, limit=300, out=tmp_path / "e.json")
    assert json.loads(outputs.dumps(res)) == printed
    assert json.loads((tmp_path / "e.json").read_text()) == printed
    assert "probe_accuracy" in res and res["bits_per_dim_from"] == "elbo"


@pytest.mark.parametrize(
    "name,kwargs,argv",
    [
        ("sample", dict(n=4, seed=0), ["--n", "4", "--seed", "0"]),
        ("sample", dict(n=9, temperature=0.5, seed=3), ["--n", "9", "--temperature", "0.5",
                                                        "--seed", "3"]),
        ("reconstruct", dict(n=4), ["--n", "4"]),
        ("traverse", dict(steps=3, index=2), ["--steps", "3", "--index", "2"]),
        ("traverse", dict(steps=3, dims=(1, 0)), ["--steps", "3", "--dims", "1", "0"]),
        ("interpolate", dict(a=3, b=5, steps=4), ["--a", "3", "--b", "5", "--steps", "4"]),
    ],
)  # fmt: skip
def test_a_picture_function_returns_the_png_the_cli_writes(name, kwargs, argv, tiny_run, tmp_path):
    out = tmp_path / "cli.png"
    assert main([name, str(tiny_run), *argv, "--out", str(out)]) == 0
    before = {p: p.stat().st_mtime_ns for p in tiny_run.iterdir()}
    grid = getattr(api, name)(tiny_run, **kwargs)
    assert grid.dtype == np.uint8 and np.array_equal(grid, png(out))
    assert {p: p.stat().st_mtime_ns for p in tiny_run.iterdir()} == before  # out=None: no file
    again = getattr(api, name)(tiny_run, **kwargs, out=tmp_path / "py.png")
    assert np.array_equal(again, grid) and np.array_equal(png(tmp_path / "py.png"), grid)


def test_the_picture_functions_take_a_loaded_model_and_data(tiny_run, tmp_path):
    files = images(tmp_path / "imgs")
    model = vaekit.load(tiny_run)
    out = tmp_path / "r.png"
    assert main(["reconstruct", str(tiny_run), "--data", *files, "--out", str(out)]) == 0
    assert np.array_equal(api.reconstruct(model, data=files), png(out))
    assert np.array_equal(api.sample(model, n=4), api.sample(tiny_run, n=4))


def test_encode_returns_the_arrays_the_cli_writes(tiny_run, tmp_path):
    files = images(tmp_path / "imgs")
    out = tmp_path / "z.npz"
    assert main(["encode", str(tiny_run), "--data", *files, "--out", str(out)]) == 0
    arrays = api.encode(tiny_run, files)
    written = np.load(out)
    assert sorted(arrays) == sorted(written.files) == ["logvar", "mu", "paths"]
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], written[k])
    from_model = api.encode(vaekit.load(tiny_run), files, out=tmp_path / "m.csv")
    np.testing.assert_allclose(from_model["mu"], arrays["mu"], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "m.csv").read_text().startswith("path,label,mu_0,")


def test_score_returns_the_scores_the_cli_writes(tiny_run, tmp_path, capsys):
    files = images(tmp_path / "imgs")
    out = tmp_path / "s.csv"
    assert main(["score", str(tiny_run), "--data", *files, "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    rec = api.score(tiny_run, files)
    assert rec.paths == files and rec.labels is None and rec.unreadable == [] and rec.ood is None
    assert list(rec.scores) == ["nll", "bits_per_dim", "png_bits", "complexity"]
    for k, v in rec.scores.items():
        assert [row[k] for row in rows] == [f"{x:.4f}" for x in v]


def test_export_writes_what_the_cli_writes(tiny_run, tmp_path):
    out = tmp_path / "cli.safetensors"
    assert main(["export", str(tiny_run), "--format", "safetensors", "--out", str(out)]) == 0
    path = api.export(tiny_run, format="safetensors", out=tmp_path / "py.safetensors")
    assert path == tmp_path / "py.safetensors"
    (a, meta_a), (b, meta_b) = (read_safetensors(p) for p in (out, path))  # the header's key
    assert meta_a == meta_b and list(a) == list(b)  # order varies from file to file
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="format must be one of safetensors, onnx, got 'pt'"):
        api.export(tiny_run, format="pt", out=tmp_path / "m.pt")


def test_metrics_returns_what_metrics_json_prints(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    argv = ["metrics", str(tiny_run), "--n", "100", "--classifier-limit", "512", "--json",
            "--out", str(tmp_path / "q.json")]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    res = api.metrics(tiny_run, n=100, classifier_limit=512)
    res = json.loads(outputs.dumps(res))
    assert res.pop("seconds").keys() == printed.pop("seconds").keys()  # times differ
    assert res == printed and not list(tiny_run.glob("quality-*.json"))


def test_explore_serves_until_stopped_and_returns_its_url(tiny_run, monkeypatch, capsys):
    from vaekit.explorer import ExplorerServer

    def stop(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ExplorerServer, "serve_forever", stop)
    url = api.explore(tiny_run, port=0, tsne_max=0, quiet=True)
    out = capsys.readouterr().out
    assert url.startswith("http://127.0.0.1:") and f"vaekit explorer: {url}" in out
    assert out.endswith("explorer stopped\n")


def test_train_into_a_run_that_is_done_trains_nothing(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = (run / "last.pt").read_bytes()
    rec = train_into(resume=run)
    assert (rec.run_dir, rec.epochs, rec.trained, rec.metrics) == (run, 1, False, None)
    assert (run / "last.pt").read_bytes() == before
    assert main(["train", "--resume", str(run)]) == 0
    assert (
        capsys.readouterr().out
        == f"{run} has trained all its 1 epochs; --epochs N trains further\n"
    )


@pytest.mark.parametrize(
    "call,argv,expect",
    [
        (lambda r: api.sample(r, n=0), ["sample", "--n", "0"],
         "n must be an integer in [1, 10000], got 0"),
        (lambda r: api.sample(r, seed=-1), ["sample", "--seed", "-1"],
         "seed must be an integer in [0, 4294967295], got -1"),
        (lambda r: api.traverse(r, steps=1), ["traverse", "--steps", "1"],
         "steps must be an integer >= 2, got 1"),
        (lambda r: api.evaluate(r, batch_size=0), ["evaluate", "--batch-size", "0"],
         "batch_size must be an integer >= 1, got 0"),
        (lambda r: api.explore(r, port=70000), ["explore", "--port", "70000"],
         "port must be an integer in [0, 65535], got 70000"),
        (lambda r: api.metrics(r, temperature=float("inf")), ["metrics", "--temperature", "inf"],
         "temperature must be a finite number > 0, got inf"),
    ],
)  # fmt: skip
def test_python_options_get_the_flags_rules(call, argv, expect, tmp_path, capsys):
    """Refused before the run is read (it is not there), in the words the flag gets."""
    never = tmp_path / "never-read"
    with pytest.raises(ValueError) as e:
        call(never)
    assert str(e.value) == expect
    with pytest.raises(SystemExit):
        main([argv[0], str(never), *argv[1:]])
    assert expect.split(" ", 1)[1] in capsys.readouterr().err


@pytest.mark.parametrize(
    "call,argv",
    [
        (lambda r: api.traverse(r, dims=(2, 2)), ["traverse", "--dims", "2", "2"]),
        (lambda r: api.metrics(r, n=5), ["metrics", "--n", "5"]),
        (lambda r: api.sample(r), ["sample"]),
    ],
)
def test_python_errors_are_the_clis_lines(call, argv, tmp_path, capsys):
    never = tmp_path / "never-read"
    assert main([argv[0], str(never), *argv[1:]]) == 2
    err = capsys.readouterr().err
    with pytest.raises(Exception) as e:
        call(never)
    assert err == f"vaekit {argv[0]}: error: {e.value}\n"


@pytest.mark.parametrize("name", ["sample", "reconstruct", "traverse", "interpolate", "metrics"])
def test_a_mistyped_run_dir_is_not_created_for_a_default_output(name, tmp_path, capsys):
    """The default output is in the run's folder (a checkpoint file's: the parent): nothing of
    it is made before the run is found."""
    typo = tmp_path / "runz" / "tpyo"
    assert main([name, str(typo)]) == 2
    assert "no such run directory" in capsys.readouterr().err and not typo.parent.exists()
