"""Image folders, CelebA and the array cache: decoding, bad files, modes, reuse, invalidation;
then training at 32x32x3 and 64x64x3 and every generation command's image sizes."""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.cli import main
from vaekit.data import DataError, cache, describe, images, load_split
from vaekit.data import registry as data

from .conftest import TINY


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def save(path, arr, mode=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path, **kw)


def snapshot(root):
    """Every file under root with its bytes and mtime: to check nothing was changed."""
    return {
        p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def messy(tmp_path):
    """Class folders a/ and b/ with odd sizes and every mode, plus broken files of each kind."""
    rng = np.random.default_rng(0)
    root = tmp_path / "messy"
    for i in range(6):
        rgb = rng.integers(0, 256, (30 + i, 20 + 3 * i, 3), dtype=np.uint8)
        save(root / "a" / f"rgb{i}.png", rgb)
        save(root / "b" / "deep" / f"grey{i}.jpg", rgb[:, :, 0], quality=95)
    save(root / "a" / "alpha.png", np.zeros((16, 16, 4), np.uint8))  # fully transparent
    save(root / "b" / "pal.bmp", np.zeros((16, 16, 3), np.uint8))
    Image.open(root / "b" / "pal.bmp").convert("P").save(root / "b" / "pal.png")
    save(root / "b" / "la.png", np.full((16, 16, 2), 200, np.uint8), "LA")
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(root / "a" / "i16.png")
    good = (root / "a" / "rgb0.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    jpg = (root / "b" / "deep" / "grey0.jpg").read_bytes()
    (root / "b" / "0truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (root / "b" / "0empty.png").write_bytes(b"")
    (root / "a" / "text.jpg").write_text("not an image")
    (root / "a" / "notes.txt").write_text("ignored: not an image extension")
    (root / ".hidden").mkdir()
    save(root / ".hidden" / "x.png", np.zeros((8, 8), np.uint8))  # skipped: hidden
    return root


def test_messy_folder_decodes_skips_and_is_left_untouched(messy, capsys):
    before = snapshot(messy)
    info = describe(f"folder:{messy}", size=(16, 16))
    err = capsys.readouterr().err
    assert info.channels == 3 and info.size == (16, 16)  # mixed modes: RGB
    assert "mixed image modes" in err and "LA: 1" in err and "P: 1" in err and "I;16: 1" in err
    assert "skipped" in err and "cannot be read" in err
    assert "7 image sizes (" in err and ", ...)" in err and "resized to it" in err
    x, y = load_split(f"folder:{messy}", "train", size=(16, 16), channels=3)
    xt, yt = load_split(f"folder:{messy}", "test", size=(16, 16), channels=3)
    # 17 good images, 4 broken ones (truncated png and jpg, empty, text), none hidden
    assert len(x) + len(xt) == 17 and x.shape[1:] == (3, 16, 16) and x.dtype == torch.uint8
    assert sorted(set(y.tolist()) | set(yt.tolist())) == [0, 1]  # a/ and b/
    man = json.loads(next(cache.cache_root().rglob("train-*/manifest.json")).read_text())
    test_man = json.loads(next(cache.cache_root().rglob("test-*/manifest.json")).read_text())
    skipped = {r for r, _ in man["skipped"] + test_man["skipped"]}
    assert skipped == {"a/truncated.png", "b/0truncated.jpg", "b/0empty.png", "a/text.jpg"}
    assert man["classes"] == ["a", "b"] and len(man["all_files"]) == 21
    assert snapshot(messy) == before  # nothing written, nothing touched


def test_modes_become_rgb_or_grey():
    clear = Image.fromarray(np.zeros((4, 4, 4), np.uint8), "RGBA")
    assert np.asarray(images.to_mode(clear, 3)).min() == 255  # transparent -> white
    i16 = Image.fromarray(np.full((4, 4), 40000, np.uint16))
    assert np.asarray(images.to_mode(i16, 1)).max() == 40000 >> 8  # scaled, not clipped to 255
    pal = Image.fromarray(np.full((4, 4, 3), 9, np.uint8)).convert("P")
    assert np.asarray(images.to_mode(pal, 3)).shape == (4, 4, 3)
    assert images.to_mode(Image.new("CMYK", (4, 4)), 1).mode == "L"


def test_crop_resize_keeps_the_centre():
    a = np.zeros((218, 178, 3), np.uint8)
    a[35:183, 15:163] = 200  # the centre 148 x 148
    out = images.decode(png_bytes(a), (64, 64), 148, 3)
    assert out.shape == (3, 64, 64) and out.min() == 200
    wide = np.zeros((20, 40), np.uint8)
    wide[:, 10:30] = 255  # centre square, cropped to a square target's aspect
    assert images.decode(png_bytes(wide), (10, 10), 0, 1).min() == 255


def png_bytes(a) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def exif_bytes(a, fmt: str, orientation: int) -> bytes:
    """a (H, W[, 3]) encoded as fmt with an EXIF orientation tag, as a phone camera stores it."""
    import io

    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(a).save(
        buf, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {})
    )
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("orientation, turn", [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_exif_orientation_turns_the_image_upright(fmt, orientation, turn):
    """A sideways-stored photo (EXIF orientation 6: turn 90 degrees clockwise to view, 8:
    anticlockwise) decodes upright, and its header reports the upright (H, W)."""
    a = np.zeros((24, 40, 3), np.uint8)  # landscape as stored, with a white top-left block
    a[:8, :8] = 255
    raw = exif_bytes(a, fmt, orientation)
    want = np.rot90(a, turn)  # upright, as a viewer shows it
    mode, hw = images.header(raw)
    assert mode == "RGB" and hw == want.shape[:2]
    out = images.decode(raw, hw, 0, 3).transpose(1, 2, 0)
    assert out.shape == want.shape
    assert np.abs(out.astype(int) - want).max() <= (0 if fmt == "PNG" else 40)


def test_a_folder_of_sideways_phone_photos_is_cached_upright(tmp_path):
    a = np.zeros((24, 40, 3), np.uint8)
    a[:8, :8] = 255
    for i in range(4):
        (tmp_path / "phone").mkdir(exist_ok=True)
        (tmp_path / "phone" / f"{i}.jpg").write_bytes(exif_bytes(a, "JPEG", 6))
    info = describe(f"folder:{tmp_path / 'phone'}")
    assert info.size == (40, 24)  # portrait, as taken
    x, _ = load_split(f"folder:{tmp_path / 'phone'}", "train")
    upright = x[0].permute(1, 2, 0).numpy().astype(int)
    assert np.abs(upright - np.rot90(a, -1)).max() <= 40  # the block is now top-right


def test_grey_folder_gives_one_channel_and_its_own_size(tmp_path):
    for i in range(4):
        save(tmp_path / "g" / f"{i}.png", np.full((12, 10), 30 * i, np.uint8))
    info = describe(f"folder:{tmp_path / 'g'}")
    assert (info.channels, info.size) == (1, (12, 10))
    x, _ = load_split(f"folder:{tmp_path / 'g'}", "train", size=(12, 10), channels=1)
    assert x.shape[1:] == (1, 12, 10)


def test_one_large_image_does_not_set_the_size_of_a_folder(tmp_path, capsys):
    """The most common size wins, not the first file's: one 1024 px image sorted first among
    48 px ones gave a 1024x1024 model that ran out of memory."""
    root = tmp_path / "mixed"
    save(root / "000-big.png", np.zeros((1024, 1024), np.uint8))
    for i in range(12):
        save(root / f"{i + 1:03d}.png", np.full((48, 48), i, np.uint8))
    save(root / "zzz-odd.png", np.zeros((40, 56), np.uint8))
    assert cache.list_images(root)[0][0] == "000-big.png"
    size, channels, _ = cache.resolve(root, None, None, workers=1)
    assert (size, channels) == ((48, 48), 1)
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line, naming the sizes, the choice and the flag
    assert "3 image sizes (48x48: 12, 40x56: 1, 1024x1024: 1)" in err
    assert "using the most common, 48x48" in err and "--image-size" in err
    assert describe(f"folder:{root}").size == (48, 48)
    assert cache.resolve(root, (1024, 1024), 1, workers=1)[0] == (1024, 1024)  # as asked
    assert cache.resolve(root, (32, 32), None, workers=1)[0] == (32, 32)


def test_the_most_common_size_ties_to_the_smaller(tmp_path, capsys):
    assert cache.common_size({(64, 64): 3, (32, 32): 3, (16, 16): 1}) == (32, 32)
    assert cache.common_size({(48, 64): 2, (64, 48): 2}) == (48, 64)
    many = {(i, i): 1 for i in range(1, 7)}
    assert cache.size_summary(many) == "6 image sizes (1x1: 1, 2x2: 1, 3x3: 1, 4x4: 1, ...)"
    for i in range(3):
        save(tmp_path / "one" / f"{i}.png", np.zeros((20, 30, 3), np.uint8))
    assert cache.resolve(tmp_path / "one", None, None, workers=1)[0] == (20, 30)
    assert "using the images' size, 20x30" in capsys.readouterr().err


def test_empty_missing_and_all_broken_folders_are_one_clear_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match="no images found"):
        describe(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="no such folder"):
        describe(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "file.txt").write_text("not a folder")
    with pytest.raises(DataError, match="not a folder or a readable zip file"):
        describe(f"folder:{tmp_path / 'file.txt'}")
    (tmp_path / "broken").mkdir()
    for i in range(3):
        (tmp_path / "broken" / f"{i}.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="none of its 3 image files can be read"):
        describe(f"folder:{tmp_path / 'broken'}")


def test_cache_is_reused_and_rebuilt_when_the_source_changes(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(1)
    root = tmp_path / "f"
    for i in range(20):
        save(root / f"{i:02d}.png", rng.integers(0, 256, (9, 9, 3), dtype=np.uint8))
    name = f"folder:{root}"
    x1, _ = load_split(name, "train", size=(8, 8), channels=3)
    x1 = x1.clone()

    def no_decoding(task):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache, "_decode", no_decoding)
    x2, _ = load_split(name, "train", size=(8, 8), channels=3)  # from the cache, no decoding
    assert torch.equal(x1, x2)
    monkeypatch.undo()
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    entries = cache.list_images(root)
    splits = cache.assign(entries, None)[0]
    changed = root / next(e[0] for e, s in zip(entries, splits, strict=True) if s == "train")
    save(changed, np.zeros((9, 9, 3), np.uint8))  # new bytes, size and mtime
    os.utime(changed, ns=(1, 1))
    x3, _ = load_split(name, "train", size=(8, 8), channels=3)
    assert "rebuilding the cache" in capsys.readouterr().err
    assert x3.shape == x1.shape and not torch.equal(x1, x3)


def test_process_pool_gives_the_same_cache(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    root = tmp_path / "many"
    for i in range(300):  # enough to use the pool (>= 256 images)
        save(root / f"{i:03d}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    entries = cache.list_images(root)
    args = (root, "train", (8, 8), 3, 0, entries)
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "c1"))
    x1, y1, _ = cache.build_or_load(*args, workers=1)
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "c2"))
    x2, y2, man = cache.build_or_load(*args, workers=2)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and man["num_images"] == len(x1)
    splits = cache.assign(entries, None)[0]
    first = next(e[0] for e, s in zip(entries, splits, strict=True) if s == "train")
    with Image.open(root / first) as im:  # no resize at the native size: the pixels as they are
        assert torch.equal(x1[0], torch.from_numpy(np.asarray(im).transpose(2, 0, 1).copy()))


KILLED_BUILD = """
import sys, time
from pathlib import Path

from vaekit.data import cache


def slow(task):  # a build that lasts a few seconds, so that it can be killed midway
    time.sleep(0.02)
    return cache.images.decode(cache.read_bytes(task[0], task[1]), *task[2:])


if __name__ == "__main__":
    cache._decode = slow
    root = Path(sys.argv[1])
    cache.build_or_load(root, "train", (8, 8), 3, 0, cache.list_images(root), workers=2)
"""


def children(pid: int) -> list[int]:
    """The live (not zombie) child processes of pid, from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(check, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "term"])
def test_a_killed_build_leaves_no_workers_and_its_temp_folder_goes_next_time(tmp_path, sig):
    rng = np.random.default_rng(6)
    root = tmp_path / "many"
    for i in range(300):  # enough to use the process pool
        save(root / f"{i:03d}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (tmp_path / "build.py").write_text(KILLED_BUILD)
    repo = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "VAEKIT_CACHE": str(tmp_path / "cache"), "PYTHONPATH": path}
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "build.py"), str(root)],
        env={**env, "OMP_NUM_THREADS": "1"},
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: len(children(proc.pid)) >= 2, 30), "the pool never started"
        workers = children(proc.pid)
        assert list((tmp_path / "cache").glob("*/.train-*.tmp*")), "no build under way"
        proc.send_signal(sig)
        proc.wait(5)
        assert wait_for(lambda: not any(map(alive, workers)), 3), "workers outlived their parent"
    finally:
        proc.kill()
        proc.wait()
        for w in workers if "workers" in locals() else []:
            if alive(w):
                os.kill(w, signal.SIGKILL)
    stale = list((tmp_path / "cache").glob("*/.train-*.tmp*"))
    assert stale  # what the killed build left
    entries = cache.list_images(root)
    x, _, man = cache.build_or_load(root, "train", (8, 8), 3, 0, entries, workers=1)
    assert not any(p.exists() for p in stale)
    assert len(x) == man["num_images"] == cache.assign(entries, None)[0].count("train")


def test_clean_stale_keeps_running_builds_and_removes_left_overs(tmp_path, monkeypatch):
    dead = 2**30  # above any pid_max: never a live process
    paths = {
        "ours": tmp_path / f".train-8x8x3-crop0.tmp{os.getpid()}-{cache.HOST}",
        "dead": tmp_path / f".train-8x8x3-crop0.tmp{dead}-{cache.HOST}",
        "dead_old_style": tmp_path / f".test-8x8x3-crop0.tmp{dead}",
        "dead_json": tmp_path / f".scan.json.tmp{dead}-{cache.HOST}",
        "other_host": tmp_path / f".train-8x8x3-crop0.tmp{dead}-elsewhere",
        "other_host_old": tmp_path / f".test-8x8x3-crop0.tmp{dead}-elsewhere",
        "cache": tmp_path / "train-8x8x3-crop0",
    }
    for k, p in paths.items():
        if "json" in k:
            p.write_text("{}")
        else:
            p.mkdir()
            (p / "images.u8").write_bytes(b"")
    day_ago = time.time() - cache.STALE_SECONDS - 60
    for p in (paths["other_host_old"], paths["other_host_old"] / "images.u8"):
        os.utime(p, (day_ago, day_ago))
    cache.clean_stale(tmp_path)
    kept = {k for k, p in paths.items() if p.exists()}
    assert kept == {"ours", "other_host", "cache"}


def celeba_like(root, n=12):
    """CelebA's layout: 178x218 JPEGs named 000001.jpg.. and list_eval_partition.txt."""
    rng = np.random.default_rng(3)
    folder = root / "celeba" / "img_align_celeba"
    lines = []
    for i in range(1, n + 1):
        a = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        save(folder / f"{i:06d}.jpg", a, quality=90)
        lines.append(f"{i:06d}.jpg {0 if i <= n - 4 else (1 if i <= n - 2 else 2)}")
    (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_celeba_folder_and_zip_give_the_same_images_and_official_split(tmp_path, monkeypatch):
    folder = celeba_like(tmp_path / "d1")
    info = describe("celeba", data_dir=tmp_path / "d1")
    assert (info.channels, info.size) == (3, (64, 64))
    x, _ = load_split("celeba", "train", data_dir=tmp_path / "d1", size=(64, 64), channels=3)
    xt, _ = load_split("celeba", "test", data_dir=tmp_path / "d1", size=(64, 64), channels=3)
    assert len(x) == 8 and len(xt) == 2  # 0 -> train, 2 -> test, 1 (valid) unused
    zdir = tmp_path / "d2" / "celeba"
    zdir.mkdir(parents=True)
    with zipfile.ZipFile(zdir / "img_align_celeba.zip", "w") as z:
        for p in sorted(folder.iterdir()):
            z.write(p, f"img_align_celeba/{p.name}")
    (zdir / "list_eval_partition.txt").write_bytes(
        (folder.parent / "list_eval_partition.txt").read_bytes()
    )
    xz, _ = load_split("celeba", "train", data_dir=tmp_path / "d2", size=(64, 64), channels=3)
    assert torch.equal(x, xz)
    with pytest.raises(DataError, match="img_align_celeba.zip .* not found"):
        describe("celeba", data_dir=tmp_path / "none")


def grid8(w: int, h: int) -> tuple[int, int]:
    return 8 * w + 9 * 2, 8 * h + 9 * 2  # an 8x8 grid of w x h images, 2 px padding


@pytest.mark.parametrize("size", [32, 64])
def test_train_and_every_command_at_size_x3(tmp_path, size):
    """One short epoch on a folder of RGB images at size x size x 3; each generation command
    writes images of that size."""
    rng = np.random.default_rng(4)
    root = tmp_path / "imgs"
    for i in range(40):
        save(
            root / ("cat" if i % 2 else "dog") / f"{i}.png",
            rng.integers(0, 256, (50, 60, 3), np.uint8),
        )
    run = tmp_path / "run"
    args = ["train", "--dataset", f"folder:{root}", "--image-size", str(size), "--no-figures"]
    assert main([*args, "--epochs", "1", "--out", str(run), "--latent-dim", "4"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["image_size"] == [size, size] and cfg["model"]["in_channels"] == 3
    assert len(cfg["model"]["net"]["channels"]) == (3 if size == 32 else 4)  # deeper for 64 px
    assert cfg["train"]["dataset"] == f"folder:{root.resolve()}"
    n_test = len(load_split(cfg["train"]["dataset"], "test", size=(size, size), channels=3)[0])
    assert main(["sample", str(run), "--n", "64"]) == 0
    assert png_size(run / "samples.png") == grid8(size, size)
    assert main(["reconstruct", str(run), "--n", str(n_test)]) == 0
    nrow = int(np.ceil(np.sqrt(n_test)))
    side = nrow * (size + 2) + 2
    rows = -(-n_test // nrow)
    assert png_size(run / "recon.png") == (2 * side + 8, rows * (size + 2) + 2)
    assert main(["traverse", str(run), "--steps", "5"]) == 0
    assert png_size(run / "traverse.png") == (5 * size, 5 * size)
    assert main(["interpolate", str(run), "--a", "0", "--b", str(n_test - 1)]) == 0
    assert png_size(run / "interp.png") == (10 * size + 22, size + 4)
    assert main(["evaluate", str(run), "--out", str(run / "eval.json")]) == 0
    ev = json.loads((run / "eval.json").read_text())
    assert ev["num_images"] == n_test and np.isfinite(ev["bits_per_dim"])


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def test_a_zip_of_images_is_a_folder_too(tmp_path):
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as z:
        for i in range(5):
            z.writestr(f"cls{i % 2}/{i}.png", png_bytes(np.full((10, 10, 3), 50 * i, np.uint8)))
        z.writestr("__notes.txt", "ignored")
    info = describe(f"folder:{tmp_path / 'imgs.zip'}")
    assert (info.channels, info.size) == (3, (10, 10))
    x, y = load_split(f"folder:{tmp_path / 'imgs.zip'}", "train", size=(10, 10), channels=3)
    xt, _ = load_split(f"folder:{tmp_path / 'imgs.zip'}", "test", size=(10, 10), channels=3)
    assert len(x) + len(xt) == 5 and set(y.tolist()) <= {0, 1}


def test_celeba64_preset_trains_on_celeba_like_data(tmp_path):
    celeba_like(tmp_path / "d", n=20)
    run = tmp_path / "run"
    args = ["train", "--preset", "celeba64", "--data-dir", str(tmp_path / "d"), "--epochs", "1"]
    assert main([*args, "--out", str(run), *TINY, "--batch-size", "8"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["image_size"] == [64, 64] and cfg["model"]["likelihood"] == "logistic"
    assert cfg["train"]["dataset"] == "celeba"
    assert main(["sample", str(run), "--n", "4"]) == 0
    assert png_size(run / "samples.png") == (2 * 66 + 2, 2 * 66 + 2)


def test_seed_preset_refuses_colour_or_other_sizes(tmp_path, capsys):
    for i in range(4):
        save(tmp_path / "c" / f"{i}.png", np.zeros((32, 32, 3), np.uint8))
    argv = ["train", "--preset", "seed", "--dataset", f"folder:{tmp_path / 'c'}"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    errors = [e for e in capsys.readouterr().err.splitlines() if "error" in e]
    assert len(errors) == 1 and "fixed to 28x28x1 images, got 32x32x3" in errors[0]
    assert main(["train", "--preset", "seed", "--image-size", "32", "--out", str(tmp_path)]) == 2
    assert "28x28x1" in capsys.readouterr().err


def test_image_size_flag_forms(tmp_path, capsys):
    from vaekit.cli import build_parser

    def size(*words):
        return build_parser().parse_args(["train", "--image-size", *words]).image_size

    assert size("32") == (32, 32)
    assert size("32x48") == (32, 48)
    assert size("32", "48") == (32, 48)
    with pytest.raises(SystemExit):
        size("big")
    assert "argument --image-size: must be H, HxW or H W" in capsys.readouterr().err


def test_streamed_batches_train_exactly_like_resident_ones(tmp_path, monkeypatch):
    """The gather path (for memory-mapped or large data) feeds the same batches."""
    from vaekit.config import configs
    from vaekit.training import fit

    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.integers(0, 256, (48, 3, 16, 16), dtype=np.uint8))
    mcfg, ocfg, tcfg = configs(
        "mnist", in_channels=3, image_size=(16, 16), channels=(4, 8), latent_dim=3, epochs=1,
        batch_size=8, figures=False, eval_every=0,
    )  # fmt: skip
    weights = []
    for stream in (False, True):
        fit(mcfg, ocfg, tcfg, tmp_path / f"r{stream}", x, x, stream=stream, log=lambda *a: None)
        weights.append(torch.load(tmp_path / f"r{stream}" / "last.pt")["model"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_assign_splits_by_folders_partition_or_hash():
    entries = [(f"train/c{i % 2}/{i}.png", 1, 1) for i in range(6)]
    entries += [(f"test/c{i % 2}/{i}.png", 1, 1) for i in range(2)]
    splits, labels, classes = cache.assign(entries, None)
    assert splits == ["train"] * 6 + ["test"] * 2 and classes == ["c0", "c1"]
    assert labels == [0, 1, 0, 1, 0, 1, 0, 1]
    flat = [(f"{i}.png", 1, 1) for i in range(400)]
    splits, labels, classes = cache.assign(flat, None)
    assert 5 <= splits.count("test") <= 40 and classes == [] and set(labels) == {0}
    assert cache.assign(flat, None)[0] == splits  # the same every time
    part = cache.assign([("a/1.jpg", 1, 1), ("a/2.jpg", 1, 1)], {"1.jpg": 0, "2.jpg": 2})
    assert part[0] == ["train", "test"]


def test_data_registry_lists_the_new_datasets():
    assert {"mnist", "fashion-mnist", "kmnist", "cifar10", "celeba"} <= set(data.DATASETS)
    assert data.DATASETS["cifar10"].md5 == {
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"
    }
