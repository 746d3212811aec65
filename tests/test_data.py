import gzip
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit.data
from vaekit.data import DataError, IdxDataset, load_split, read_idx
from vaekit.data import registry as data


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


# CIFAR-10: the official layout, pickle batches in a tar.gz, written small here.


def cifar_batch(rng, n: int) -> tuple[bytes, np.ndarray, list[int]]:
    """A CIFAR-style batch as the official files hold it: bytes keys, rows of R, G, B planes."""
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    raw = pickle.dumps({b"batch_label": b"x", b"data": data, b"labels": labels}, protocol=2)
    return raw, data, labels


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    """A registered 'tinycifar' with 5 train batches of 3 and a test batch of 4, as a tar.gz."""
    rng = np.random.default_rng(1)
    batches = {f"data_batch_{i}": cifar_batch(rng, 3) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(rng, 4)
    archive = tmp_path / "src" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for name, (raw, _, _) in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    spec = data.CifarDataset(
        "tinycifar",
        data.DATASETS["cifar10"].files,
        {archive.name: md5(archive)},
        (),
        0.5,
        0.25,
    )
    monkeypatch.setitem(data.DATASETS, "tinycifar", spec)
    return archive, batches


def test_cifar_batches_are_read_from_the_tarball_in_channel_planes(cifar, tmp_path):
    archive, batches = cifar
    x, y = load_split("tinycifar", "train", data_dir=archive.parent)
    assert x.shape == (15, 3, 32, 32) and x.dtype == torch.uint8
    want = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    for c in range(3):  # channel c is the c-th block of 1024 values of each row
        np.testing.assert_array_equal(
            x[:, c].reshape(15, -1).numpy(), want[:, c * 1024 : (c + 1) * 1024]
        )
    assert y.tolist() == sum((batches[f"data_batch_{i}"][2] for i in range(1, 6)), [])
    x, y = load_split("tinycifar", "test", data_dir=archive.parent)
    assert x.shape == (4, 3, 32, 32) and y.tolist() == batches["test_batch"][2]


def test_cifar_extracted_folder_is_used_as_is(cifar, tmp_path):
    _, batches = cifar
    folder = tmp_path / "ex" / "tinycifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "test_batch").write_bytes(batches["test_batch"][0])
    x, y = load_split("tinycifar", "test", data_dir=tmp_path / "ex")
    assert len(x) == 4 and y.tolist() == batches["test_batch"][2]


def test_cifar_download_falls_back_and_checks_md5(cifar, server, monkeypatch):
    archive, batches = cifar
    www, url = server
    (www / archive.name).write_bytes(archive.read_bytes())
    (www / "bad").mkdir()
    (www / "bad" / archive.name).write_bytes(archive.read_bytes()[:-100])  # truncated
    monkeypatch.delenv("VAEKIT_OFFLINE")
    dest = archive.parent.parent / "dl"
    with pytest.raises(DataError, match="md5 mismatch"):
        load_split("tinycifar", "test", data_dir=dest, mirrors=(url + "bad/",))
    assert not (dest / "tinycifar" / archive.name).exists()
    mirrors = ("http://127.0.0.1:9/", url + "bad/", url)
    x, y = load_split("tinycifar", "test", data_dir=dest, mirrors=mirrors)
    assert y.tolist() == batches["test_batch"][2]
    assert md5(dest / "tinycifar" / archive.name) == md5(archive)


def test_cifar_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(DataError, match="not a CIFAR-10 batch.*refusing to load builtins.print"):
        data.read_cifar_batch(pickle.dumps({b"data": Evil()}), "evil")


def test_adapt_resizes_and_converts_channels():
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = torch.from_numpy(rng.integers(0, 256, (5, 3, 20, 24), dtype=np.uint8))
    grey = data.adapt(rgb, 1, None)
    assert grey.shape == (5, 1, 20, 24)
    pil = np.asarray(Image.fromarray(rgb[0].permute(1, 2, 0).numpy()).convert("L"))
    assert np.abs(grey[0, 0].numpy().astype(int) - pil).max() <= 1  # Pillow's luma
    up = data.adapt(grey, 3, (40, 48))
    assert up.shape == (5, 3, 40, 48) and up.dtype == torch.uint8
    assert torch.equal(up[:, 0], up[:, 2])
    flat = torch.full((2, 1, 28, 28), 77, dtype=torch.uint8)  # a flat image stays flat
    assert torch.equal(data.adapt(flat, 1, (64, 64)), torch.full((2, 1, 64, 64), 77))
    assert data.adapt(rgb, 3, (20, 24)) is rgb


def test_folder_name_needs_a_path():
    with pytest.raises(DataError, match="folder:PATH needs a path"):
        data.get_dataset("folder:")
    with pytest.raises(DataError, match="or folder:PATH"):
        data.get_dataset("imagenet")


def test_real_fashion_mnist_at_32_px_rgb(data_root):
    if not (data_root / "fashion-mnist").is_dir():
        pytest.skip("no fashion-mnist/ in VAEKIT_DATA")
    x, y = load_split("fashion-mnist", "test", data_dir=data_root, size=(32, 32), channels=3)
    assert x.shape == (10000, 3, 32, 32) and torch.bincount(y).tolist() == [1000] * 10
    x28, _ = load_split("fashion-mnist", "test", data_dir=data_root)
    assert abs(x.float().mean() - x28.float().mean()) < 1.0  # resizing keeps the brightness


def imports_of(module: str) -> set[str]:
    """The modules of vaekit/data/ that vaekit/data/<module>.py imports, at the top or inside
    functions (from . import x, from .x import y)."""
    import ast

    tree = ast.parse((Path(data.__file__).parent / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out |= {node.module} if node.module else {a.name for a in node.names}
    return out


def test_data_and_cache_do_not_import_each_other():
    """cache.py raises DataError without importing registry.py (which imports cache.py): the
    error lives in vaekit.errors, and vaekit.data.DataError is the same class."""
    from vaekit import errors
    from vaekit.data import cache

    assert "registry" not in imports_of("cache") and "registry" not in imports_of("images")
    assert vaekit.data.DataError is errors.DataError is cache.DataError is DataError
    with pytest.raises(DataError, match="no such folder"):
        cache.resolve(Path("/nonexistent/vaekit"), None, None, workers=1)


def test_data_beside_a_clone_is_found_without_settings(toy, tmp_path, monkeypatch):
    """A fresh clone next to shared/data (as `make` expects) finds it with no VAEKIT_DATA and
    no --data-dir, from the clone and from a folder inside it (the tutorial's docs/)."""
    root, arrays = toy
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    (root / "toy").rename(shared / "toy")
    clone = tmp_path / "clone"
    (clone / "docs").mkdir(parents=True)
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for cwd in (clone, clone / "docs"):
        monkeypatch.chdir(cwd)
        _, y = load_split("toy", "test")
        assert y.tolist() == arrays["test"][1].tolist()


def test_the_search_order_and_when_it_applies(tmp_path, monkeypatch):
    here = tmp_path / "a" / "b"
    for d in ("a/b/data", "a/shared/data", "shared/data", "a/b/shared/data"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "a" / "data").write_text("a file, not a folder")
    monkeypatch.chdir(here)
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "vaekit"
    assert data.search_roots(None) == [cache, here / "data", here / "shared" / "data",
                                       tmp_path / "a" / "shared" / "data",
                                       tmp_path / "shared" / "data"]  # fmt: skip
    assert data.search_roots(tmp_path / "mine") == [tmp_path / "mine", cache]  # given: no search
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "env"))
    assert data.search_roots(None) == [tmp_path / "env", cache]


def test_downloads_go_to_the_cache_not_a_nearby_folder(toy, server, tmp_path, monkeypatch):
    root, arrays = toy
    www, url = server
    for f in ("te-img.gz", "te-lab.gz"):
        (www / f).write_bytes((root / "toy" / f).read_bytes())
    (tmp_path / "here" / "data").mkdir(parents=True)  # a data folder without toy/
    monkeypatch.chdir(tmp_path / "here")
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.delenv("VAEKIT_OFFLINE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    load_split("toy", "test", mirrors=(url,))
    assert (tmp_path / "cache" / "vaekit" / "toy" / "te-img.gz").is_file()
    assert not (tmp_path / "here" / "data" / "toy").exists()


def test_first_run_without_data_says_where_it_looked_and_how_to_point_at_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if any((r / "mnist").exists() for r in data.nearby_roots()):
        pytest.skip("this machine has a data/mnist above the temporary folder")
    with pytest.raises(DataError) as e:
        load_split("mnist", "test")
    msg = str(e.value)
    assert str(tmp_path / "cache" / "vaekit" / "mnist") in msg
    assert f"shared/data/mnist in {tmp_path} and each folder above it" in msg
    assert "export VAEKIT_DATA=" in msg and "\n" not in msg
