"""One image file -> one uint8 array (C, H, W): decode, turn it upright by its EXIF orientation, fix
its mode, crop, resize (Pillow only).

Used by the cache builder's worker processes, so it imports neither torch nor the rest of vaekit.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import ExifTags, Image, ImageOps, PngImagePlugin

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 upright, 2..8 flipped or turned; also XMP's tiff:Orientation),
    from the header: a PNG's eXIf chunk counts only before the pixels, so that reading it never
    decodes them and header() and decode() always agree."""
    try:
        if isinstance(img, PngImagePlugin.PngImageFile):
            exif = Image.Image.getexif(img)  # PngImageFile.getexif would decode the pixels
        else:
            exif = img.getexif()
        o = int(exif.get(ExifTags.Base.Orientation, 1))
    except Exception:  # a malformed EXIF block: the image as stored, not a skipped file
        return 1
    return o if 1 <= o <= 8 else 1


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode -> "L" (channels 1) or "RGB" (3); alpha is composited on white,
    16-bit grey keeps its top 8 bits, palette images go through RGBA."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode.startswith("I"):  # 16- or 32-bit integer grey: scale to 8 bits, do not clip
        a = np.asarray(img).astype(np.int64)  # (H, W)
        shift = 8 if a.max(initial=0) > 255 else 0
        img = Image.fromarray((a >> shift).clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    return img.convert("L" if channels == 1 else "RGB")


def crop_resize(img: Image.Image, size: tuple[int, int], crop: int) -> Image.Image:
    """Centre-crop (to crop x crop if crop > 0, else to the target's aspect ratio), then resize
    to size (H, W) with Pillow's antialiased bilinear filter."""
    w, h = img.size
    H, W = size
    if crop > 0:
        cw, ch = min(crop, w), min(crop, h)
    else:  # the largest centred box with the target's aspect ratio
        cw, ch = (w, round(w * H / W)) if w * H <= h * W else (round(h * W / H), h)
    left, top = (w - cw) // 2, (h - ch) // 2
    img = img.crop((left, top, left + cw, top + ch))
    if img.size != (W, H):
        img = img.resize((W, H), Image.Resampling.BILINEAR)
    return img


def decode(data: bytes, size: tuple[int, int], crop: int, channels: int) -> np.ndarray:
    """Encoded image bytes -> uint8 (C, H, W), upright as its EXIF orientation says (a phone's
    portrait photo stored sideways is turned). Raises on unreadable or truncated data."""
    with Image.open(io.BytesIO(data)) as img:
        turn = orientation(img) != 1
        img.load()  # decode fully now: a truncated file fails here, not later
        if turn:
            img = ImageOps.exif_transpose(img)
        img = crop_resize(to_mode(img, channels), size, crop)
    a = np.asarray(img, dtype=np.uint8)  # (H, W) or (H, W, 3)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def failure(e: Exception) -> str:
    """Why a file could not be read, in one line: the error's type and message (without the
    repr of Pillow's in-memory file)."""
    message = " ".join(str(e).split(" <_io.")[0].split())
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


def header(data: bytes) -> tuple[str, tuple[int, int]]:
    """(mode, (H, W)) from an image's header, without decoding the pixels; (H, W) as decode()
    turns it: an EXIF orientation of 5 to 8 (a quarter turn) swaps them."""
    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
        return img.mode, ((w, h) if orientation(img) >= 5 else (h, w))
