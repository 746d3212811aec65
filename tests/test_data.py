import gzip
import hashlib
import http.server
import struct
import threading
from functools import partial

import numpy as np
import pytest
import torch

from vaekit import data
from vaekit.data import DataError, IdxDataset, load_split, read_idx


def write_idx(path, array: np.ndarray, compress: bool = True) -> None:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A registered 'toy' IDX dataset of 10 train and 6 test 5x4 images, with its md5s."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "toy"
    folder.mkdir()
    files = {"train": ("tr-img.gz", "tr-lab.gz"), "test": ("te-img.gz", "te-lab.gz")}
    arrays = {}
    for split, n in (("train", 10), ("test", 6)):
        img, lab = rng.integers(0, 256, (n, 5, 4)), rng.integers(0, 10, n)
        write_idx(folder / files[split][0], img)
        write_idx(folder / files[split][1], lab)
        arrays[split] = (img, lab)
    sums = {f: md5(folder / f) for pair in files.values() for f in pair}
    spec = IdxDataset("toy", files, sums, (), 0.5, 0.25)
    monkeypatch.setitem(data.DATASETS, "toy", spec)
    return tmp_path, arrays


def test_read_idx_round_trips(tmp_path):
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    for compress in (True, False):
        p = tmp_path / ("a.gz" if compress else "a.idx")
        write_idx(p, a, compress)
        np.testing.assert_array_equal(read_idx(p), a)


def test_load_split_gives_uint8_images_and_labels(toy):
    root, arrays = toy
    x, y = load_split("toy", "test", data_dir=root)
    assert x.dtype == torch.uint8 and x.shape == (6, 1, 5, 4)
    assert y.dtype == torch.int64 and y.tolist() == arrays["test"][1].tolist()
    np.testing.assert_array_equal(x[:, 0].numpy(), arrays["test"][0])


def test_files_directly_in_the_data_dir_are_found(toy):
    root, _ = toy
    x, _ = load_split("toy", "train", data_dir=root / "toy")
    assert len(x) == 10


def test_checksum_failure_names_the_file(toy):
    root, _ = toy
    p = root / "toy" / "te-img.gz"
    p.write_bytes(p.read_bytes()[:-10])  # truncated
    with pytest.raises(DataError, match=r"te-img\.gz: md5 .* corrupted or truncated"):
        load_split("toy", "test", data_dir=root)


def test_corrupted_content_is_caught_by_the_parser(tmp_path):
    p = tmp_path / "bad.gz"
    p.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">3I", 5, 4, 4) + b"\x01" * 7))
    with pytest.raises(DataError, match="bad.gz: holds 7 values but its header says"):
        read_idx(p)
    p.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="bad.gz: cannot read"):
        read_idx(p)
    p.write_bytes(gzip.compress(b"\x08\x03\x00\x00rest"))
    with pytest.raises(DataError, match="not a uint8 IDX file"):
        read_idx(p)


def test_missing_data_without_network_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    with pytest.raises(DataError) as e:
        load_split("mnist", "test", data_dir=tmp_path / "empty")
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte.gz not found" in msg
    assert str(tmp_path / "empty" / "mnist") in msg and "VAEKIT_DATA" in msg


def test_unknown_dataset_and_split():
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_split("nope", "train")
    with pytest.raises(DataError, match="no split 'valid'"):
        load_split("mnist", "valid")


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_download_falls_back_across_mirrors_and_checks_md5(toy, server, monkeypatch):
    root, arrays = toy
    www, url = server
    for f in ("te-img.gz", "te-lab.gz"):
        (www / f).write_bytes((root / "toy" / f).read_bytes())
    monkeypatch.delenv("VAEKIT_OFFLINE")
    dest = root / "downloaded"
    dead = "http://127.0.0.1:9/"  # nothing listens on the discard port
    x, y = load_split("toy", "test", data_dir=dest, mirrors=(dead, url + "missing/", url))
    assert y.tolist() == arrays["test"][1].tolist()
    assert (dest / "toy" / "te-img.gz").is_file()
    assert not list((dest / "toy").glob("*.part*"))


def test_corrupted_download_is_rejected_and_not_kept(toy, server, monkeypatch):
    root, _ = toy
    www, url = server
    (www / "te-img.gz").write_bytes(b"garbage")
    monkeypatch.delenv("VAEKIT_OFFLINE")
    dest = root / "downloaded"
    with pytest.raises(DataError, match="md5 mismatch"):
        load_split("toy", "test", data_dir=dest, mirrors=(url,))
    assert not (dest / "toy" / "te-img.gz").exists()


def test_real_mnist_matches_its_readme(data_root):
    x, y = load_split("mnist", "train", data_dir=data_root)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.uint8
    assert y[:5].tolist() == [5, 0, 4, 1, 9]
    assert torch.bincount(y).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    x, y = load_split("mnist", "test", data_dir=data_root)
    assert x.shape == (10000, 1, 28, 28) and y[:5].tolist() == [7, 2, 1, 0, 4]
    # the registry's normalisation constants are the training set's own statistics
    xf = load_split("mnist", "train", data_dir=data_root)[0].float() / 255
    assert abs(xf.mean().item() - data.DATASETS["mnist"].mean) < 1e-4
    assert abs(xf.std().item() - data.DATASETS["mnist"].std) < 1e-4
