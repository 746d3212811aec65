"""The latent explorer's JSON API over a trained model: what each route computes, with every
input validated (a bad one is an ApiError: a 4xx and a one-line reason). The HTTP server that
routes requests here is vaekit.explorer.server.

API (JSON in and out; images are PNG data URLs at the model's resolution):
  GET  /api/info                         latent size, image shape, dataset, per-dim KL, the
                                         codes' range, the test set's bits/dim quantiles; "codes":
                                         the code grid of a model with discrete codes, else null
  GET  /api/map                          test-set latent means in 2-D (PCA, top-KL dims, t-SNE of
                                         a subset when computed), labels; null for discrete codes
  POST /api/decode  {"z": [[...], ...]} | {"codes": [grid, ...]}  -> {"images": [...]}
  POST /api/sample  {"n", "temperature", "seed"?}  -> {"z": [[...]] or "codes": [grid, ...],
                                         "images": [...]}
  POST /api/encode  {"index": i} | {"image": data URL or base64, "invert"?: bool | "auto"}
                                         | raw image/*
                                         -> {"mu", "logvar", "input", "image"} (+ "label"; for
                                         an image "inverted", "auto_inverted"; with a likelihood
                                         "scores" and "ood": its bits/dim against the test set's;
                                         for discrete codes "codes": its grid)
A model with discrete codes (vqvae: codes(x) -> (N, h, w) indices, decode_codes) is explored by
its grid of code indices (h rows of w integers in [0, K)) instead of a continuous z.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from ..data import images
from ..evaluation.bound import evaluate, posterior
from ..evaluation.scores import score
from ..figures.grids import dim_scores
from ..likelihoods import to_float
from ..models import LatentModel
from ..models.base import with_labels
from .projection import cache_key, tsne_map

if TYPE_CHECKING:
    from ..models.fitted import WithPrior

MAX_UPLOAD = 2 << 20  # bytes of an uploaded image file
MAX_UPLOAD_PIXELS = 4096 * 4096  # refuse larger images before decoding them
MAX_ROWS = 512  # latent vectors per decode or sample request (a 22x22 traversal grid)
MAX_ABS_Z = 100.0  # |z| beyond this is no longer exploring a N(0, I) prior
MAX_TEMPERATURE = 10.0
MIN_CODE_TEMPERATURE = 0.01  # a prior over code indices samples softmax(logits / T): T > 0
NUM_REFERENCE = 1000  # test images scored (KL per group, bits/dim range) and polarity-checked


class ApiError(Exception):
    """A request the API refuses: an HTTP status (4xx) and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def png_data_url(img: torch.Tensor) -> str:
    """(C, H, W) floats in [0, 1] -> "data:image/png;base64,..." (grey for C=1, else RGB)."""
    arr = (img.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    arr = arr.permute(1, 2, 0).numpy()  # (H, W, C)
    buf = io.BytesIO()
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(buf, "PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def show_value(v) -> str:
    """A JSON value as a short string for an error message (at most ~40 characters)."""
    try:
        text = json.dumps(v)
    except (ValueError, RecursionError):  # nested too deeply to print
        text = type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _number(v, what: str, lo: float, hi: float) -> float:
    """A JSON number in [lo, hi] as a float; NaN, infinities, numbers out of range (however
    many digits) and anything else are an ApiError."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ApiError(400, f"{what} must be a number, got {show_value(v)}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ApiError(400, f"{what} must be finite, got {v}")
    if not lo <= v <= hi:  # exact for ints of any size: no float() that could overflow
        raise ApiError(400, f"{what} must lie within [{lo:g}, {hi:g}], got {show_value(v)}")
    return float(v)


def _int(body: dict, key: str, lo: int, hi: int, default: int | None = None) -> int:
    v = body.get(key, default)
    if v is None:
        raise ApiError(400, f"missing {key!r}")
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ApiError(400, f"{key!r} must be an integer in [{lo}, {hi}], got {show_value(v)}")
    return v


def parse_z(z, dim: int) -> torch.Tensor:
    """A JSON list of latent vectors -> (N, dim) float32, or ApiError saying what is wrong."""
    if not isinstance(z, list) or not z or not all(isinstance(row, list) for row in z):
        raise ApiError(400, f"'z' must be a non-empty list of latent vectors (lists of {dim})")
    if len(z) > MAX_ROWS:
        raise ApiError(400, f"'z' has {len(z)} vectors; at most {MAX_ROWS} per request")
    for i, row in enumerate(z):
        if len(row) != dim:
            raise ApiError(400, f"z[{i}] has {len(row)} values; the model's latent size is {dim}")
        for v in row:
            _number(v, f"z[{i}] values", -MAX_ABS_Z, MAX_ABS_Z)
    return torch.tensor(z, dtype=torch.float32)


def code_grid(model: LatentModel) -> dict | None:
    """What a model with discrete codes (codes(x), decode_codes) encodes an image to: {"grid":
    [h, w], "codebook_size": K}; None for a model with continuous latents."""
    if not hasattr(model, "codes"):
        return None
    return {"grid": list(model.grid), "codebook_size": int(model.cfg.net.codebook_size)}


def _list_of(v, n: int, where: str, unit: str, grid: tuple[int, int]) -> list:
    """v if it is a list of n items, else ApiError: "codes[0] has 6 rows, not 7: the code grid
    is 7x7" (unit: "row" or "code index", said in the plural where more than one)."""
    h, w = grid
    if not isinstance(v, list):
        raise ApiError(400, f"{where} must be a list of {n} {plural(n, unit)}, got {show_value(v)}")
    if len(v) != n:
        has = f"{len(v)} {plural(len(v), unit)}"
        raise ApiError(400, f"{where} has {has}, not {n}: the code grid is {h}x{w}")
    return v


def plural(n: int, noun: str) -> str:
    """noun as said of n things: "1 row", "6 rows", "2 code indices"."""
    if n == 1:
        return noun
    return noun[:-2] + "ices" if noun.endswith("ex") else noun + "s"


def parse_codes(codes, grid: tuple[int, int], K: int) -> torch.Tensor:
    """A JSON list of code grids (h rows of w indices in [0, K)) -> (N, h, w) int64, or an
    ApiError naming the first bad grid, row or index."""
    h, w = grid
    if not isinstance(codes, list) or not codes:
        raise ApiError(400, f"'codes' must be a non-empty list of {h}x{w} grids of code indices")
    if len(codes) > MAX_ROWS:
        raise ApiError(400, f"'codes' has {len(codes)} grids; at most {MAX_ROWS} per request")
    for n, k in enumerate(codes):
        for i, row in enumerate(_list_of(k, h, f"codes[{n}]", "row", grid)):
            for j, v in enumerate(_list_of(row, w, f"codes[{n}][{i}]", "code index", grid)):
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < K:
                    where, got = f"codes[{n}][{i}][{j}]", show_value(v)
                    raise ApiError(400, f"{where} must be a code index in [0, {K - 1}], got {got}")
    return torch.tensor(codes, dtype=torch.long)


def read_image(data: str, channels: int, size: tuple[int, int], invert: bool) -> torch.Tensor:
    """An uploaded image (data URL or base64 of a PNG/JPEG/...) -> uint8 (C, H, W) the model
    takes, prepared as training images are (vaekit.images: mode, centre crop to the model's
    aspect ratio, resize); invert flips dark-on-light drawings for light-on-dark data."""
    if not isinstance(data, str):
        raise ApiError(400, "'image' must be a data URL or base64 string")
    b64 = data.split(",", 1)[1] if data.startswith("data:") and "," in data else data
    if len(b64) * 3 // 4 > MAX_UPLOAD:
        raise ApiError(413, f"image is over {MAX_UPLOAD >> 20} MiB")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "'image' is not valid base64") from None
    # Any error of Pillow on these bytes is the upload's fault (a crafted file can make a
    # decoder raise anything, struct.error or ZeroDivisionError included): a 400, not a 500.
    try:
        _, (h, w) = images.header(raw)
    except Exception:
        raise ApiError(400, "'image' is not a readable PNG, JPEG, WebP, GIF or BMP image") from None
    if h * w > MAX_UPLOAD_PIXELS:
        raise ApiError(413, f"image is {w}x{h}; at most {MAX_UPLOAD_PIXELS} pixels")
    try:
        x = torch.from_numpy(images.decode(raw, size, 0, channels).copy())  # (C, H, W)
    except Exception as e:
        raise ApiError(400, f"'image' is truncated or corrupted ({images.failure(e)})") from None
    return 255 - x if invert else x


def border_mean(x: torch.Tensor) -> float:
    """uint8 images (N, C, H, W) -> the mean of their outermost ring of pixels, in 0..255."""
    ring = (x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1])
    return float(torch.cat([r.flatten(1) for r in ring], 1).float().mean())


def wrong_polarity(upload: float, data: float) -> bool:
    """Whether an image whose border averages `upload` (0..255) is the negative of data whose
    images' borders average `data`: only for data with a plain dark or light background (MNIST's
    black, not a photo's), when the upload's border lies on the other side of mid-grey."""
    plain = data < 32 or data > 223
    return plain and abs(upload - data) > 128


def reference_bits_per_dim(bpd: torch.Tensor) -> dict:
    """The bits/dim of the scored test images (N,) -> their count and quantiles."""
    levels = {"min": 0.0, "q01": 0.01, "median": 0.5, "q99": 0.99, "max": 1.0}
    q = torch.quantile(bpd.double(), torch.tensor(list(levels.values()), dtype=torch.float64))
    return {"n": len(bpd), **dict(zip(levels, q.tolist(), strict=True))}


class Explorer:
    """A model and its test set, answering the API's requests as plain dicts.

    At start it encodes the whole test set once: the latent means for the map, and each dim's
    average KL to order the sliders. With tsne_max > 0, also a t-SNE map of at most that many
    of them (vaekit.explorer.projection), read from or written to the file `cache` when given.
    A model with discrete codes (code_grid) has no map: its page shows and edits code grids
    instead of sliders over z (and it encodes no test set at start).
    """

    def __init__(
        self,
        model: LatentModel,
        x: torch.Tensor,
        y: torch.Tensor | None,
        name: str,
        *,
        tsne_max: int = 0,
        cache: Path | None = None,
        log=print,
        fitted: WithPrior | None = None,
    ):
        self.model = model.eval()
        self.fitted = fitted  # samples from this fitted prior, not from the model's own
        self.device = next(model.parameters()).device
        if y is not None and len(y) and int(y.min()) == int(y.max()):
            y = None  # one class (e.g. a folder without class subfolders): no labels to show
        self.x, self.y, self.name = x, y, name  # uint8 (N, C, H, W), int64 (N,) or None
        if model.conditional and y is None:
            raise ValueError("a conditional model needs the images' class labels to explore them")
        self.y_model = y if model.conditional else None  # the labels the model takes
        self.lock = threading.Lock()  # one model call at a time
        self.codes = code_grid(model)  # {"grid", "codebook_size"}, or None: continuous latents
        self.mu, self.kl, self.order, self.z_max = None, None, [], 0.0  # (a code grid's page)
        if self.codes is None:  # sliders ordered by use, a map: the test set's latent means
            self.mu, self.kl = posterior(model, x, y=self.y_model)  # (N, D), (D,) or None
            bad = int((~torch.isfinite(self.mu)).any(1).sum())
            if bad:  # NaN/Inf weights loaded on purpose (--allow-nonfinite): no map to draw
                why = f"the latent means of {bad} of {len(x)} images are not finite: no map"
                raise ValueError(why)
            used = dim_scores(self.mu, self.kl)  # how much each dim is used
            self.order = sorted(range(len(used)), key=lambda d: -used[d])
            self.z_max = float(self.mu.abs().max()) if len(self.mu) else 0.0  # the codes' reach
        n = min(len(x), NUM_REFERENCE)  # the KL of each latent group, on the first 1000
        y_n = None if self.y_model is None else self.y_model[:n]
        self.kl_groups = evaluate(model, x[:n], y=y_n)["kl_per_group"] if n else None
        self.border = border_mean(x[:n]) if n else None  # the data's background, 0..255
        self.bpd = None  # the first n test images' bits/dim, sorted (vaekit.evaluation.scores)
        if model.has_kl and n and not model.conditional:  # (scores are of unconditional models)
            s = score(model, model.likelihood.prepare_eval(x[:n]))["bits_per_dim"]
            self.bpd = torch.from_numpy(s).sort().values
        if self.codes is not None:  # a map of code vectors: no place to steer codes from
            self.map = None
            return
        key = cache_key(model, x, tsne_max) if tsne_max > 0 and cache is not None else ""
        self.map = {**self._map(), "tsne": tsne_map(self.mu, tsne_max, cache, key, log)}

    def _map(self) -> dict:
        """The test set's latent means in 2-D: top-2 PCA directions (and the share of the
        variance along each), and the two top-KL dims."""
        mu = self.mu.double()
        center = mu.mean(0)
        if mu.shape[1] >= 2:
            _, s, v = torch.linalg.svd(mu - center, full_matrices=False)
            comps = v[:2]  # (2, D)
            share = (s[:2] ** 2 / (s**2).sum().clamp(min=1e-300)).tolist()
        else:
            comps = torch.cat([torch.ones(1, 1), torch.zeros(1, 1)]).double()
            share = [1.0, 0.0]
        pca = (mu - center) @ comps.T  # (N, 2)
        i, j = (self.order * 2)[:2]
        return {
            "labels": None if self.y is None else self.y.tolist(),
            "pca": pca.float().round(decimals=3).tolist(),
            "pca_center": center.tolist(),
            "pca_components": comps.tolist(),
            "pca_variance": share,
            "kl_dims": [i, j],
            "kl": self.mu[:, [i, j]].round(decimals=3).tolist(),
        }

    def _images(self, z: torch.Tensor, label: int | None = None) -> list[str]:
        """z (N, D) decoded (given a conditional model's class label) as PNG data URLs."""
        y = None if label is None else torch.full((len(z),), label, device=self.device)
        return self._render(lambda: self.model.decode(z.to(self.device), **with_labels(y)))

    def _code_images(self, k: torch.Tensor) -> list[str]:
        """Code grids (N, h, w) decoded as PNG data URLs."""
        return self._render(lambda: self.model.decode_codes(k.to(self.device)))

    def _render(self, decode) -> list[str]:
        """The images (N, C, H, W) decode() returns, computed under the lock, as data URLs."""
        with self.lock, torch.inference_mode():
            return [png_data_url(img) for img in decode()]

    def _label(self, body: dict, default: int = 0) -> int | None:
        """The class a conditional model decodes with: body's 'label', else default; None for
        an unconditional model (which refuses one)."""
        if not self.model.conditional:
            if "label" in body:
                raise ApiError(400, "'label': this model is not conditional")
            return None
        return _int(body, "label", 0, self.model.num_classes - 1, default=default)

    def info(self) -> dict:
        cfg = self.model.cfg
        return {
            "dataset": self.name,
            "latent_dim": self.model.top_dim,
            "family": cfg.family,
            "has_prior": self.model.has_prior or self.fitted is not None,
            "prior": "own" if self.fitted is None else self.fitted.name,
            "groups": len(self.model.latent_shapes),
            "kl_per_group": self.kl_groups,
            "note": self.note(),
            "image_shape": [cfg.in_channels, *cfg.image_size],
            "likelihood": cfg.likelihood,
            "kl_per_dim": self.kl,
            "order": self.order,
            "num_test": len(self.x),
            "labelled": self.y is not None,
            "conditional": self.model.conditional,
            "codes": self.codes,
            "num_classes": self.model.num_classes,
            "z_max": self.z_max,
            "border_mean": self.border,
            "test_bits_per_dim": None if self.bpd is None else reference_bits_per_dim(self.bpd),
        }

    def ood(self, bits_per_dim: float) -> dict:
        """Where an image's bits/dim falls among the scored test images': the share of them it
        exceeds, and `flag` when it exceeds them all (far outside what the model was fit to)."""
        above = int(torch.searchsorted(self.bpd, torch.tensor(bits_per_dim, dtype=self.bpd.dtype)))
        return {
            "bits_per_dim": bits_per_dim,
            "above_share": above / len(self.bpd),
            "flag": above == len(self.bpd),
            "test": reference_bits_per_dim(self.bpd),
        }

    def note(self) -> str:
        """What the page should say about the model's latents."""
        m = self.model
        if self.fitted is not None:
            return f"Random sample draws from the fitted prior {self.fitted.name}"
        if self.codes is not None and self.sampled_prior() is None:
            return (
                "no prior is fitted over the model's codes, so there is nothing to sample (random "
                "codes would decode to noise): fit one with `vaekit prior RUN --kind pixelcnn`"
            )
        if not m.has_prior:
            return f"a {m.cfg.family} has no prior: random codes are not samples of a model"
        if self.codes is None and self.sampled_prior() is not None:
            return f"Random sample draws from the model's learned prior ({m.cfg.net.prior})"
        if len(m.latent_shapes) > 1:
            return (
                f"sliders: the top of {len(m.latent_shapes)} latent groups; the lower groups "
                "take their prior means given it (Random sample draws the top group only)"
            )
        return ""

    def sampled_prior(self):
        """The prior Random sample draws from: a fitted one; else the model's own prior when it
        is a learned one (a vae's VampPrior; a vqvae's prior over its code grids,
        RUN/priors/pixelcnn.pt, attached when the run was opened: None when it has none); else
        None: z ~ N(0, I)."""
        if self.fitted is not None:
            return self.fitted.prior
        return getattr(self.model, "prior", None)

    def decode(self, body: dict) -> dict:
        if "codes" in body:
            if self.codes is None:
                raise ApiError(400, "'codes': this model has no discrete codes; send 'z'")
            k = parse_codes(body["codes"], self.codes["grid"], self.codes["codebook_size"])
            return {"images": self._code_images(k)}
        z = parse_z(body.get("z"), self.model.top_dim)
        return {"images": self._images(z, self._label(body))}

    def sample(self, body: dict) -> dict:
        n = _int(body, "n", 1, MAX_ROWS, default=1)
        t_min = 0.0 if self.codes is None else MIN_CODE_TEMPERATURE
        t = _number(body.get("temperature", 1.0), "'temperature'", t_min, MAX_TEMPERATURE)
        g = torch.Generator()
        if "seed" in body:
            g.manual_seed(_int(body, "seed", 0, 2**63 - 1))
        else:
            g.seed()
        prior = self.sampled_prior()
        if prior is not None:  # (n, D) codes or (n, h, w) code grids, the spread scaled by T
            z = prior.sample(n, g, t).cpu()
        elif self.codes is not None:
            raise ApiError(400, self.note())
        else:
            z = torch.randn(n, self.model.top_dim, generator=g) * t  # (n, D), z ~ N(0, T^2 I)
        if not z.is_floating_point():  # code indices
            return {"codes": z.tolist(), "images": self._code_images(z)}
        if self.codes is not None:  # vectors between the codes: no grid to show or edit
            why = f"the fitted prior {self.fitted.name} draws code vectors, not code indices"
            raise ApiError(400, f"{why}: explore with --prior pixelcnn for grids of codes")
        z = z.reshape(n, -1)
        return {"z": z.tolist(), "images": self._images(z, self._label(body))}

    def encode(self, body: dict) -> dict:
        cfg = self.model.cfg
        if "index" in body:
            i = _int(body, "index", 0, len(self.x) - 1)
            x, out = self.x[i], {"index": i}
            if self.y is not None:
                out["label"] = int(self.y[i])
            label = self._label(body, out.get("label", 0))  # default: the image's own
        elif "image" in body:
            invert = body.get("invert", False)
            if not isinstance(invert, bool) and invert != "auto":
                why = f"'invert' must be true, false or \"auto\", got {json.dumps(invert)[:40]}"
                raise ApiError(400, why)
            x = read_image(body["image"], cfg.in_channels, cfg.image_size, invert is True)
            flip = invert == "auto" and self.border is not None
            flip = flip and wrong_polarity(border_mean(x[None]), self.border)
            x = 255 - x if flip else x
            out = {"inverted": invert is True or flip, "auto_inverted": flip}
            label = self._label(body)
        else:
            raise ApiError(400, "send {'index': i} or {'image': data URL}")
        xf = to_float(x[None].to(self.device))  # (1, C, H, W)
        y = with_labels(None if label is None else torch.tensor([label], device=self.device))
        with self.lock, torch.inference_mode():
            mu, logvar = self.model.encode(xf, **y)
            recon = self.model.decode(mu, **y)
            if self.codes is not None:  # its grid (h, w): decode_codes of it is recon
                out["codes"] = self.model.codes(xf)[0].tolist()
        if label is not None:
            out["decoded_label"] = label
        out.update(
            mu=mu[0].tolist(),
            logvar=None if logvar is None else logvar[0].tolist(),
            input=png_data_url(xf[0]),
            image=png_data_url(recon[0]),
        )
        if self.model.has_kl and label is None:  # its anomaly scores (evaluation.scores), bits
            with self.lock:
                s = score(self.model, self.model.likelihood.prepare_eval(x[None]))
            out["scores"] = {k: round(float(v[0]), 4) for k, v in s.items()}
            if self.bpd is not None:
                out["ood"] = self.ood(out["scores"]["bits_per_dim"])
        return out
