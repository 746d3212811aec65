"""The latent explorer: a local web page and a JSON API over a trained VAE.

Standard library HTTP server (a bounded pool of worker threads, model calls under one lock),
static assets from vaekit/static (no CDN: the page makes no request off this server). Every API
handler validates its input and answers bad input with a 4xx and a JSON error; the server
never dies on a request. It answers only requests addressed to it (the Host header) and not
sent by another site's page (the Origin header), and reads each request under deadlines, so
slow or silent clients cannot hold its threads.

API (JSON in and out; images are PNG data URLs at the model's resolution):
  GET  /api/info                         latent size, image shape, dataset, per-dim KL, the
                                         codes' range, the test set's bits/dim quantiles
  GET  /api/map                          test-set latent means in 2-D (PCA, top-KL dims, t-SNE of
                                         a subset when computed), labels
  POST /api/decode  {"z": [[...], ...]}  -> {"images": [...]}
  POST /api/sample  {"n", "temperature", "seed"?}  -> {"z": [[...]], "images": [...]}
  POST /api/encode  {"index": i} | {"image": data URL or base64, "invert"?: bool | "auto"}
                                         | raw image/*
                                         -> {"mu", "logvar", "input", "image"} (+ "label"; for
                                         an image "inverted", "auto_inverted"; with a likelihood
                                         "scores" and "ood": its bits/dim against the test set's)
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import json
import math
import queue
import re
import selectors
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import torch
from PIL import Image

from . import outputs
from .data import images
from .evaluation.bound import evaluate, posterior
from .evaluation.scores import score
from .figures.grids import dim_scores
from .likelihoods import to_float
from .models import LatentModel
from .projection import cache_key, tsne_map

MAX_BODY = 4 << 20  # bytes of a request body (a base64 upload of MAX_UPLOAD fits)
MAX_UPLOAD = 2 << 20  # bytes of an uploaded image file
MAX_UPLOAD_PIXELS = 4096 * 4096  # refuse larger images before decoding them
MAX_ROWS = 512  # latent vectors per decode or sample request (a 22x22 traversal grid)
MAX_ABS_Z = 100.0  # |z| beyond this is no longer exploring a N(0, I) prior
MAX_TEMPERATURE = 10.0
NUM_REFERENCE = 1000  # test images scored (KL per group, bits/dim range) and polarity-checked
STATIC = Path(__file__).parent / "static"
ASSETS = {  # route -> (file, content type): the only files the server reads
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
# Nothing but this server: no CDN, no fonts, no analytics; images come as data: URLs.
CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# The HTTP layer's limits. A connection waits in the listen backlog; once accepted, one thread
# reads all connections' headers, under a deadline counted from the accept; then a worker
# thread reads the body, under its own deadline, and answers.
BACKLOG = 256  # listen() backlog: a burst of concurrent clients waits instead of being reset
WORKERS = 32  # threads answering requests, at most
MAX_QUEUED = 512  # connections accepted and not yet taken by a worker; beyond it a 503 at once
HEADER_TIMEOUT = 5.0  # seconds from accept to a complete request line and headers
BODY_TIMEOUT = 10.0  # seconds from the headers to the whole body: then 408
SEND_TIMEOUT = 10.0  # seconds a client may take to take in a response
_BUSY_BODY = b'{"error": "the explorer has too many connections waiting; try again"}'
BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s"
    % (len(_BUSY_BODY), _BUSY_BODY)
)


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


def _show(v) -> str:
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
        raise ApiError(400, f"{what} must be a number, got {_show(v)}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ApiError(400, f"{what} must be finite, got {v}")
    if not lo <= v <= hi:  # exact for ints of any size: no float() that could overflow
        raise ApiError(400, f"{what} must lie within [{lo:g}, {hi:g}], got {_show(v)}")
    return float(v)


def _int(body: dict, key: str, lo: int, hi: int, default: int | None = None) -> int:
    v = body.get(key, default)
    if v is None:
        raise ApiError(400, f"missing {key!r}")
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ApiError(400, f"{key!r} must be an integer in [{lo}, {hi}], got {_show(v)}")
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

    At start it encodes the whole test set once: the latent means for the map and for
    'encode a test image', and each dim's average KL to order the sliders. With tsne_max > 0,
    also a t-SNE map of at most that many of them (vaekit.projection), read from or written to
    the file `cache` when given.
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
    ):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        if y is not None and len(y) and int(y.min()) == int(y.max()):
            y = None  # one class (e.g. a folder without class subfolders): no labels to show
        self.x, self.y, self.name = x, y, name  # uint8 (N, C, H, W), int64 (N,) or None
        self.lock = threading.Lock()  # one model call at a time
        self.mu, self.kl = posterior(model, x)  # (N, D), (D,) or None (no KL: an autoencoder)
        bad = int((~torch.isfinite(self.mu)).any(1).sum())
        if bad:  # NaN/Inf weights loaded on purpose (--allow-nonfinite): no map to draw
            raise ValueError(f"the latent means of {bad} of {len(x)} images are not finite: no map")
        used = dim_scores(self.mu, self.kl)  # how much each dim is used
        self.order = sorted(range(len(used)), key=lambda d: -used[d])
        n = min(len(x), NUM_REFERENCE)  # the KL of each latent group, on the first 1000
        self.kl_groups = evaluate(model, x[:n])["kl_per_group"] if n else None
        self.z_max = float(self.mu.abs().max()) if len(self.mu) else 0.0  # the codes' reach
        self.border = border_mean(x[:n]) if n else None  # the data's background, 0..255
        self.bpd = None  # the first n test images' bits/dim, sorted (vaekit.scores)
        if model.has_kl and n:
            s = score(model, model.likelihood.prepare_eval(x[:n]))["bits_per_dim"]
            self.bpd = torch.from_numpy(s).sort().values
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

    def _images(self, z: torch.Tensor) -> list[str]:
        with self.lock, torch.inference_mode():
            return [png_data_url(img) for img in self.model.decode(z.to(self.device))]

    def info(self) -> dict:
        cfg = self.model.cfg
        return {
            "dataset": self.name,
            "latent_dim": self.model.top_dim,
            "family": cfg.family,
            "has_prior": self.model.has_prior,
            "groups": len(self.model.latent_shapes),
            "kl_per_group": self.kl_groups,
            "note": self.note(),
            "image_shape": [cfg.in_channels, *cfg.image_size],
            "likelihood": cfg.likelihood,
            "kl_per_dim": self.kl,
            "order": self.order,
            "num_test": len(self.x),
            "labelled": self.y is not None,
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
        if not m.has_prior:
            return f"a {m.cfg.family} has no prior: random codes are not samples of a model"
        if len(m.latent_shapes) > 1:
            return (
                f"sliders: the top of {len(m.latent_shapes)} latent groups; the lower groups "
                "take their prior means given it (Random sample draws the top group only)"
            )
        return ""

    def decode(self, body: dict) -> dict:
        return {"images": self._images(parse_z(body.get("z"), self.model.top_dim))}

    def sample(self, body: dict) -> dict:
        n = _int(body, "n", 1, MAX_ROWS, default=1)
        t = _number(body.get("temperature", 1.0), "'temperature'", 0, MAX_TEMPERATURE)
        g = torch.Generator()
        if "seed" in body:
            g.manual_seed(_int(body, "seed", 0, 2**63 - 1))
        else:
            g.seed()
        z = torch.randn(n, self.model.top_dim, generator=g) * t  # (n, D), z ~ N(0, T^2 I)
        return {"z": z.tolist(), "images": self._images(z)}

    def encode(self, body: dict) -> dict:
        cfg = self.model.cfg
        if "index" in body:
            i = _int(body, "index", 0, len(self.x) - 1)
            x, out = self.x[i], {"index": i}
            if self.y is not None:
                out["label"] = int(self.y[i])
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
        else:
            raise ApiError(400, "send {'index': i} or {'image': data URL}")
        xf = to_float(x[None].to(self.device))  # (1, C, H, W)
        with self.lock, torch.inference_mode():
            mu, logvar = self.model.encode(xf)
            recon = self.model.decode(mu)
        out.update(
            mu=mu[0].tolist(),
            logvar=None if logvar is None else logvar[0].tolist(),
            input=png_data_url(xf[0]),
            image=png_data_url(recon[0]),
        )
        if self.model.has_kl:  # its anomaly scores (vaekit.scores), in bits
            with self.lock:
                s = score(self.model, self.model.likelihood.prepare_eval(x[None]))
            out["scores"] = {k: round(float(v[0]), 4) for k, v in s.items()}
            if self.bpd is not None:
                out["ood"] = self.ood(out["scores"]["bits_per_dim"])
        return out


class _DeadlineReader(io.RawIOBase):
    """A connection's input with a deadline for a whole part of the request (the request line
    and headers, then the body): unlike a socket timeout, which each byte restarts, it drops a
    client that sends one byte at a time. Bytes already received are read even past the
    deadline (a request that waited in the queue is not lost); waiting for more is not."""

    def __init__(self, sock, deadline: float, send_timeout: float, late: str, head: bytes = b""):
        self.sock, self.deadline, self.send_timeout = sock, deadline, send_timeout
        self.late = late  # the TimeoutError's message
        self.head = head  # bytes already read from the socket (by the server's header reader)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self.head:
            n = min(len(buf), len(self.head))
            buf[:n], self.head = self.head[:n], self.head[n:]
            return n
        self.sock.settimeout(max(self.deadline - time.monotonic(), 0.0))  # 0: data already here
        try:
            return self.sock.recv_into(buf)
        except (BlockingIOError, TimeoutError):
            raise TimeoutError(self.late) from None
        finally:
            self.sock.settimeout(self.send_timeout)  # for the response


class Handler(BaseHTTPRequestHandler):
    """Routes requests to an Explorer (set on a subclass by make_server); JSON errors only.
    Answers only requests addressed to this server (Host) from its own page or no page (Origin).
    """

    explorer: Explorer
    server_version = "vaekit-explore"
    header_timeout = HEADER_TIMEOUT  # seconds from accept to the end of the headers
    body_timeout = BODY_TIMEOUT  # seconds from the headers to the end of the body
    timeout = SEND_TIMEOUT  # seconds a client may take to take in a response
    quiet = False

    def setup(self) -> None:
        super().setup()
        local = getattr(self.server, "local", None)  # an ExplorerServer's: what it read
        start = getattr(local, "accepted", None) or time.monotonic()
        self.rfile.close()  # the plain socket file: read through the deadline instead
        late = f"no complete request line and headers within {self.header_timeout:g} s"
        deadline = start + self.header_timeout
        head = getattr(local, "head", b"")
        self.input = _DeadlineReader(self.connection, deadline, self.timeout, late, head)
        self.rfile = io.BufferedReader(self.input)

    def log_message(self, fmt: str, *args) -> None:
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response_only(status)  # logged once sent: a vanished client logs one line
        self.send_header("Server", self.version_string())
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.log_request(status, len(body))

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, outputs.dumps(obj).encode(), "application/json")  # strict JSON

    def send_error(self, code: int, message: str | None = None, explain: str | None = None):
        """http.server's own refusals (a request line that is not HTTP, headers too long, an
        unknown method) as JSON, like every other answer, always with a status line; an
        unknown method is a 405 like a known one on the wrong route, not a 501."""
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = (
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"method {self.command[:40]!r} is not allowed",
            )
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # a line that is not HTTP: answer in HTTP/1.0
            self.request_version = "HTTP/1.0"
        self._json(code, {"error": message or self.responses.get(code, ("error",))[0]})

    def _body(self, image_ok: bool) -> dict:
        """The request's JSON object, whatever its Content-Type says (curl -d sends a form's,
        a browser's fetch of a string text/plain), except: a raw image body (image/*) becomes
        {"image": its base64} where image_ok (/api/encode), so `curl --data-binary @x.png -H
        'Content-Type: image/png'` works; multipart forms are refused (415)."""
        raw = self._read()
        ctype = self.headers.get_content_type()  # lower case; text/plain when not given
        if ctype.startswith("image/"):
            if not image_ok:
                raise ApiError(415, f"a raw image body ({ctype}) is only for /api/encode")
            return {"image": base64.b64encode(raw).decode()}
        if ctype.startswith("multipart/"):
            raise ApiError(
                415, f"{ctype} is not accepted: send a JSON object, or a raw image (image/*)"
            )
        if not raw.strip():
            raise ApiError(400, "the request body is empty: send a JSON object")
        try:
            body = json.loads(raw)
        except RecursionError:
            raise ApiError(400, "request body is not valid JSON: nested too deeply") from None
        except json.JSONDecodeError as e:
            raise ApiError(
                400, f"request body is not valid JSON ({e.msg}, at byte {e.pos})"
            ) from None
        except UnicodeDecodeError:
            raise ApiError(400, "request body is not valid JSON (not UTF-8 text)") from None
        except ValueError as e:  # an integer of more digits than Python converts
            why = str(e).split(":")[0]
            raise ApiError(400, f"request body is not valid JSON ({why})") from None
        if not isinstance(body, dict):
            raise ApiError(400, f"request body must be a JSON object, got {_show(body)}")
        return body

    def _read(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            raise ApiError(411, "a JSON body with Content-Length is required")
        if not (length.strip().isascii() and length.strip().isdigit()):
            raise ApiError(400, f"bad Content-Length {length[:40]!r}: not a number of bytes")
        n = int(length)
        if n > MAX_BODY:
            self.close_connection = True  # the body is not read: drop the connection after
            raise ApiError(413, f"request body is {n} bytes; at most {MAX_BODY} allowed")
        self.input.deadline = time.monotonic() + self.body_timeout
        try:
            raw = self.rfile.read(n)
        except TimeoutError:
            self.close_connection = True
            why = f"request body ({n} bytes) not received within {self.body_timeout:g} s"
            raise ApiError(408, why) from None
        if len(raw) < n:
            self.close_connection = True
            raise ApiError(400, f"request body ended after {len(raw)} of its {n} bytes")
        return raw

    def _check_addressed_to_us(self) -> None:
        """403 unless Host names this server (a page elsewhere cannot reach it by re-pointing
        its own domain at 127.0.0.1: DNS rebinding) and any Origin is this server's own (a
        page elsewhere cannot post to it: CSRF)."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1:
            raise ApiError(403, f"a request needs exactly one Host header, got {len(hosts)}")
        host = split_host(hosts[0])
        if host is None or not self.server.accepts(*host):
            raise ApiError(403, f"Host {hosts[0][:80]!r} is not this server's address")
        origin = self.headers.get("Origin")
        if origin is not None:
            own = origin.lower().startswith("http://") and split_host(origin[7:]) == host
            if not own:
                raise ApiError(403, f"cross-origin request refused (Origin {origin[:80]!r})")

    def _gone(self, e: OSError) -> None:
        """The client went away or stopped reading: one log line, no traceback."""
        self.close_connection = True
        if isinstance(e, TimeoutError):
            why = f"did not take the response within {self.timeout:g} s"
        else:
            why = f"disconnected ({type(e).__name__})"
        self.log_message('"%s %s": client %s', self.command, self.path[:200], why)

    def _route(self) -> None:
        path = self.path.split("?", 1)[0]
        ex = self.explorer
        get = {"/api/info": ex.info, "/api/map": lambda: ex.map}
        post = {"/api/decode": ex.decode, "/api/sample": ex.sample, "/api/encode": ex.encode}
        try:
            try:
                self._check_addressed_to_us()
                if self.command in ("GET", "HEAD") and path in ASSETS:
                    file, ctype = ASSETS[path]
                    return self._send(200, (STATIC / file).read_bytes(), ctype)
                if path == "/favicon.ico":  # browsers ask; there is none
                    return self._send(204, b"", "image/x-icon")
                if self.command in ("GET", "HEAD") and path in get:
                    return self._json(200, get[path]())
                if self.command == "POST" and path in post:
                    return self._json(200, post[path](self._body(path == "/api/encode")))
                if path in ASSETS or path in get or path in post:
                    raise ApiError(405, f"{self.command} is not allowed on {path}")
                raise ApiError(404, f"no such route: {path}")
            except ApiError as e:
                self._json(e.status, {"error": str(e)})
            except (ConnectionError, TimeoutError):
                raise
            except Exception as e:  # a bug, not bad input: answer, log, keep serving
                self.log_error("internal error on %s: %r", path, e)
                self._json(500, {"error": f"internal error: {type(e).__name__}"})
        except (ConnectionError, TimeoutError) as e:
            self._gone(e)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _route


_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:/?#@\[\]\\]+)(?::([0-9]{1,5}))?")


def split_host(value: str) -> tuple[str, int] | None:
    """A Host header (or an origin without its scheme) -> (lower-case name, port), the port 80
    when absent and IPv6 brackets dropped; None when it is not a plain host[:port]."""
    m = _HOST.fullmatch(value.strip())
    if m is None:
        return None
    return m.group(1).strip("[]").lower(), int(m.group(2) or 80)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class ExplorerServer(HTTPServer):
    """The explorer's HTTP server. One thread accepts (a listen backlog for bursts); one thread
    reads every connection's request line and headers at once (a selector), dropping those not
    complete within the header deadline, so slow or silent clients hold a socket, not a thread;
    complete requests go to at most `workers` threads. At most `max_queued` connections wait
    for a worker (in either stage); beyond that a 503 at once.

    Hosts: bound to a loopback address, only localhost, 127.0.0.1, [::1] (and the bound
    address) with the bound port; bound to another address or 0.0.0.0, also any IP address
    (a literal address cannot be re-pointed by DNS) and this machine's host name, and any
    names given in `hosts`."""

    request_queue_size = BACKLOG

    def __init__(
        self, address, handler, workers: int = WORKERS, max_queued: int = MAX_QUEUED, hosts=()
    ):
        self.workers, self.max_queued = workers, max_queued
        self.local = threading.local()  # a worker's connection: accept time, bytes read so far
        self._new: queue.SimpleQueue = queue.SimpleQueue()  # accepted, for the header reader
        self._ready: queue.SimpleQueue = queue.SimpleQueue()  # headers complete, for a worker
        self._waiting = 0  # connections accepted and not yet taken by a worker
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._heads: threading.Thread | None = None
        self._closed = False
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)  # binds and listens; OSError if it cannot
        bound, self.port = self.server_address[:2]
        self.loopback = ipaddress.ip_address(bound).is_loopback
        names = {"localhost", "127.0.0.1", "::1", bound.lower()}
        if not self.loopback:
            names.add(socket.gethostname().lower())
        self.host_names = frozenset(names | {h.lower() for h in hosts})

    def accepts(self, name: str, port: int) -> bool:
        """Whether a request whose Host is name:port is addressed to this server."""
        if port != self.port:
            return False
        return name in self.host_names or (not self.loopback and _is_ip(name))

    def log(self, line: str) -> None:
        if not self.RequestHandlerClass.quiet:
            sys.stderr.write(line + "\n")

    def process_request(self, request, client_address) -> None:
        """Hand an accepted connection to the header reader, or answer 503 when full."""
        with self._lock:
            full = self._waiting >= self.max_queued
            self._waiting += not full
        if full:
            self.log(f"{client_address[0]} 503: {self.max_queued} connections already waiting")
            request.setblocking(False)
            try:
                request.send(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        if self._heads is None:
            self._heads = threading.Thread(
                target=self._read_heads, name=f"explorer-{self.port}-headers", daemon=True
            )
            self._heads.start()
        self._new.put((request, client_address, time.monotonic()))
        try:
            self._wake_w.send(b"\0")
        except OSError:  # the wake-up pipe is full: the reader has wake-ups pending anyway
            pass

    def _read_heads(self) -> None:
        """Read all new connections' request lines and headers; hand complete ones to workers,
        drop those past the header deadline or gone. Connections are kept in accept order, so
        the first is the next to expire."""
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        conns: dict[socket.socket, tuple] = {}  # sock -> (client address, accept time, bytes)
        limit = self.RequestHandlerClass.header_timeout
        while not self._closed:
            first = next(iter(conns.values()), None)
            wait = 1.0 if first is None else max(first[1] + limit - time.monotonic(), 0.0)
            for key, _ in sel.select(wait):
                sock = key.fileobj
                if sock is self._wake_r:
                    try:
                        self._wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                    while True:
                        try:
                            sock, address, accepted = self._new.get_nowait()
                        except queue.Empty:
                            break
                        sock.setblocking(False)
                        conns[sock] = (address, accepted, b"")
                        sel.register(sock, selectors.EVENT_READ)
                    continue
                address, accepted, head = conns[sock]
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:  # reset before its request was complete
                    self.log(f"{address[0]} client disconnected ({type(e).__name__})")
                    chunk = b""
                if chunk:
                    tail = head[-3:] + chunk
                    head += chunk
                    conns[sock] = (address, accepted, head)
                if not chunk or b"\n\n" in tail or b"\n\r\n" in tail or len(head) > 65540:
                    sel.unregister(sock)
                    del conns[sock]
                    if chunk:  # complete (or too long: the handler answers 414 or 431)
                        self._hand_over(sock, address, accepted, head)
                    else:  # closed without a request, as a browser's spare connection does
                        self._drop(sock)
            now = time.monotonic()
            while conns:
                sock, (address, accepted, head) = next(iter(conns.items()))
                if now < accepted + limit:
                    break
                sel.unregister(sock)
                del conns[sock]
                if head:  # a slow client (one that sent nothing is a browser's spare connection)
                    why = f"no complete request line and headers within {limit:g} s"
                    self.log(f"{address[0]} dropped: {why}")
                self._drop(sock)
        for sock in conns:
            self._drop(sock)
        sel.close()

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._waiting -= 1
        self.shutdown_request(sock)

    def _hand_over(self, sock: socket.socket, address, accepted: float, head: bytes) -> None:
        """Queue a connection whose headers are in for a worker (started as needed, at most
        `workers` of them)."""
        sock.setblocking(True)
        self._ready.put((sock, address, accepted, head))
        with self._lock:
            if len(self._threads) < self.workers and self._ready.qsize() > self._idle:
                t = threading.Thread(target=self._work, daemon=True)
                t.name = f"explorer-{self.port}-worker-{len(self._threads)}"
                self._threads.append(t)
                t.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            item = self._ready.get()
            with self._lock:
                self._idle -= 1
                self._waiting -= item is not None
            if item is None:
                return
            request, client_address, self.local.accepted, self.local.head = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        """A client that vanished mid-request is one log line; anything else a traceback."""
        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, TimeoutError)):
            self.log(f"{client_address[0]} client disconnected ({type(e).__name__})")
        else:
            super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self._closed = True
        try:
            self._wake_w.send(b"\0")  # the header reader ends, closing its connections
        except OSError:
            pass
        if self._heads is not None:
            self._heads.join(timeout=5)
        for q in (self._new, self._ready):  # connections not yet read or served: close them
            while True:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self.shutdown_request(item[0])
        for _ in self._threads:  # and let the workers end
            self._ready.put(None)
        self._wake_r.close()
        self._wake_w.close()


def host_warning(host: str) -> str | None:
    """A warning to print when the server listens beyond this machine, else None."""
    if host in LOOPBACK:
        return None
    return (
        f"warning: listening on {host}: anyone who can reach this machine on that address can "
        "use the explorer and see the model and its test images (it answers requests whose Host "
        "is an IP address, localhost or this machine's name, with this port)"
    )


def make_server(
    explorer: Explorer | None,
    host: str = "127.0.0.1",
    port: int = 8000,
    quiet: bool = False,
    *,
    workers: int = WORKERS,
    max_queued: int = MAX_QUEUED,
    header_timeout: float = HEADER_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
    send_timeout: float = SEND_TIMEOUT,
    hosts: tuple[str, ...] = (),
) -> ExplorerServer:
    """A bound (not yet serving) HTTP server for the explorer; port 0 picks a free port.

    The explorer may be set later on server.RequestHandlerClass, to bind before loading.
    `hosts`: more names for the Host header to accept (a name you reach this machine by)."""
    attrs = {
        "explorer": explorer,
        "quiet": quiet,
        "header_timeout": header_timeout,
        "body_timeout": body_timeout,
        "timeout": send_timeout,
    }
    handler = type("ExplorerHandler", (Handler,), attrs)
    return ExplorerServer((host, port), handler, workers, max_queued, hosts)


def url_of(server: HTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
