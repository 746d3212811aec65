"""Images named by --data that cannot be read are never dropped silently: every command says how
many in one line on stderr and lists them where its output is per file; none readable is a
one-line error."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from vaekit.cli import main
from vaekit.data import inputs
from vaekit.errors import DataError


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def mixed(tmp_path):
    """A folder of one good 28x28 PNG (a.png) and one truncated PNG (b.png)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(png(rng.integers(0, 256, (28, 28), np.uint8)))
    (folder / "b.png").write_bytes(png(rng.integers(0, 256, (28, 28), np.uint8))[:200])
    return folder


def note_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(lines) == 1, err
    return lines[0]


def test_score_writes_a_row_with_the_error_for_an_unreadable_file(tiny_run, mixed, capsys):
    out = mixed.parent / "s.csv"
    assert main(["score", str(tiny_run), "--data", f"folder:{mixed}", "--out", str(out)]) == 0
    note = note_line(capsys.readouterr().err)
    assert "1 of 2 files could not be read" in note and str(mixed / "b.png") in note
    assert str(out) in note
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == [str(mixed / "a.png"), str(mixed / "b.png")]
    good, bad = rows
    assert good["error"] == "" and float(good["nll"]) > 0
    assert "truncated" in bad["error"] and bad["nll"] == bad["bits_per_dim"] == ""


@pytest.mark.parametrize("command", ["reconstruct", "traverse", "interpolate"])
def test_picture_commands_say_which_files_they_left_out(tiny_run, mixed, capsys, command):
    files = [str(mixed / "a.png"), str(mixed / "b.png"), str(mixed / "a.png")]
    out = mixed.parent / "p.png"
    assert main([command, str(tiny_run), "--data", *files, "--out", str(out)]) == 0
    note = note_line(capsys.readouterr().err)
    assert "1 of 3 files could not be read" in note and "b.png (OSError: " in note
    assert out.is_file()


@pytest.mark.parametrize("suffix", ["npz", "csv"])
def test_encode_records_the_unreadable_files_in_its_output(tiny_run, mixed, capsys, suffix):
    out = mixed.parent / f"z.{suffix}"
    assert main(["encode", str(tiny_run), "--data", f"folder:{mixed}", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 of 2 files could not be read" in note_line(captured.err)
    assert "could not be read" not in captured.out
    if suffix == "npz":
        z = np.load(out)
        assert list(z["paths"]) == [str(mixed / "a.png")] and z["mu"].shape[0] == 1
        assert list(z["unreadable"]) == [str(mixed / "b.png")]
        assert "truncated" in z["unreadable_errors"][0]
    else:
        rows = list(csv.DictReader(out.open()))
        assert [r["path"] for r in rows] == [str(mixed / "a.png"), str(mixed / "b.png")]
        assert rows[0]["error"] == "" and rows[0]["mu_0"] != ""
        assert "truncated" in rows[1]["error"] and rows[1]["mu_0"] == ""


@pytest.mark.parametrize("command", ["score", "encode", "reconstruct"])
def test_no_readable_file_is_a_one_line_error(tiny_run, mixed, capsys, command):
    (mixed / "a.png").write_bytes(b"not an image")
    out = mixed.parent / ("o.png" if command == "reconstruct" else "o.csv")
    argv = [command, str(tiny_run), "--data", f"folder:{mixed}", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none of the 2 files could be read" in err
    assert str(mixed / "a.png") in err and not out.exists()


def test_any_decoder_error_is_the_files_not_the_programs(mixed, monkeypatch):
    """A crafted file can make Pillow raise anything (struct.error, ZeroDivisionError, ...): the
    file is left out with the reason, the rest are read."""

    def decode(data, size, crop, channels):
        if data.startswith(b"\x89PNG") and len(data) < 300:
            raise ZeroDivisionError("division by zero in a plugin")
        return np.zeros((channels, *size), np.uint8)

    monkeypatch.setattr(inputs, "decode", decode)
    source = inputs.folder(mixed, (28, 28), 1)
    got = [p for b in source.batches(1) for p in b.paths]
    assert got == [str(mixed / "a.png")]
    assert source.unreadable.files == [
        (str(mixed / "b.png"), "ZeroDivisionError: division by zero in a plugin")
    ]
    assert source.unreadable.tried == 2
    again = [p for b in source.batches(5) for p in b.paths]  # read again: counted afresh
    assert again == got and len(source.unreadable.files) == 1


def test_a_file_removed_after_listing_is_reported_and_none_left_is_an_error(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(png(np.zeros((8, 8), np.uint8)))
    b.write_bytes(png(np.zeros((8, 8), np.uint8)))
    source = inputs.files([a, b], (8, 8), 1)
    b.unlink()
    assert [p for batch in source.batches(10) for p in batch.paths] == [str(a)]
    assert "FileNotFoundError" in source.unreadable.files[0][1]
    a.unlink()
    with pytest.raises(DataError, match="none of the 2 files could be read"):
        list(source.batches(10))


def test_one_unreadable_file_alone_is_named_in_the_error(tiny_run, mixed, capsys):
    out = mixed.parent / "r.png"
    argv = ["reconstruct", str(tiny_run), "--data", str(mixed / "b.png"), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{mixed / 'b.png'} could not be read (OSError: " in err
