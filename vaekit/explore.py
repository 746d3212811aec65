"""The latent explorer: a local web page and a JSON API over a trained VAE.

Standard library HTTP server (one thread per request, model calls under one lock), static
assets from vaekit/static (no CDN: the page makes no request off this server). Every API
handler validates its input and answers bad input with a 4xx and a JSON error; the server
never dies on a request.

API (JSON in and out; images are PNG data URLs at the model's resolution):
  GET  /api/info                         latent size, image shape, dataset, per-dim KL
  GET  /api/map                          test-set latent means in 2-D (PCA, top-KL dims), labels
  POST /api/decode  {"z": [[...], ...]}  -> {"images": [...]}
  POST /api/sample  {"n", "temperature", "seed"?}  -> {"z": [[...]], "images": [...]}
  POST /api/encode  {"index": i} | {"image": data URL or base64, "invert"?: bool} | raw image/*
                                         -> {"mu", "logvar", "input", "image"} (+ "label")
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from . import images
from .data import to_float
from .evaluate import posterior
from .model import VAE

MAX_BODY = 4 << 20  # bytes of a request body (a base64 upload of MAX_UPLOAD fits)
MAX_UPLOAD = 2 << 20  # bytes of an uploaded image file
MAX_UPLOAD_PIXELS = 4096 * 4096  # refuse larger images before decoding them
MAX_ROWS = 512  # latent vectors per decode or sample request (a 22x22 traversal grid)
MAX_ABS_Z = 100.0  # |z| beyond this is no longer exploring a N(0, I) prior
MAX_TEMPERATURE = 10.0
STATIC = Path(__file__).parent / "static"
ASSETS = {  # route -> (file, content type): the only files the server reads
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
# Nothing but this server: no CDN, no fonts, no analytics; images come as data: URLs.
CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


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


def _number(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ApiError(400, f"{what} must be a number, got {json.dumps(v)[:40]}")
    if not math.isfinite(v):
        raise ApiError(400, f"{what} must be finite, got {v}")
    return float(v)


def _int(body: dict, key: str, lo: int, hi: int, default: int | None = None) -> int:
    v = body.get(key, default)
    if v is None:
        raise ApiError(400, f"missing {key!r}")
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ApiError(400, f"{key!r} must be an integer in [{lo}, {hi}], got {json.dumps(v)[:40]}")
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
            if abs(_number(v, f"z[{i}] values")) > MAX_ABS_Z:
                raise ApiError(400, f"z[{i}] has {v}; values must lie within +-{MAX_ABS_Z:g}")
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
    unreadable = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)
    try:
        _, (h, w) = images.header(raw)
    except (*unreadable, Image.DecompressionBombError):
        raise ApiError(400, "'image' is not a readable PNG, JPEG, WebP, GIF or BMP image") from None
    if h * w > MAX_UPLOAD_PIXELS:
        raise ApiError(413, f"image is {w}x{h}; at most {MAX_UPLOAD_PIXELS} pixels")
    try:
        x = torch.from_numpy(images.decode(raw, size, 0, channels).copy())  # (C, H, W)
    except unreadable:
        raise ApiError(400, "'image' is truncated or corrupted") from None
    return 255 - x if invert else x


class Explorer:
    """A model and its test set, answering the API's requests as plain dicts.

    At start it encodes the whole test set once: the latent means for the map and for
    'encode a test image', and each dim's average KL to order the sliders.
    """

    def __init__(self, model: VAE, x: torch.Tensor, y: torch.Tensor | None, name: str):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        if y is not None and len(y) and int(y.min()) == int(y.max()):
            y = None  # one class (e.g. a folder without class subfolders): no labels to show
        self.x, self.y, self.name = x, y, name  # uint8 (N, C, H, W), int64 (N,) or None
        self.lock = threading.Lock()  # one model call at a time
        self.mu, self.kl = posterior(model, x)  # (N, D), (D,)
        self.order = sorted(range(len(self.kl)), key=lambda d: -self.kl[d])
        self.map = self._map()

    def _map(self) -> dict:
        """The test set's latent means in 2-D: top-2 PCA directions, and the two top-KL dims."""
        mu = self.mu.double()
        center = mu.mean(0)
        if mu.shape[1] >= 2:
            _, _, v = torch.linalg.svd(mu - center, full_matrices=False)
            comps = v[:2]  # (2, D)
        else:
            comps = torch.cat([torch.ones(1, 1), torch.zeros(1, 1)]).double()
        pca = (mu - center) @ comps.T  # (N, 2)
        i, j = (self.order * 2)[:2]
        return {
            "labels": None if self.y is None else self.y.tolist(),
            "pca": pca.float().round(decimals=3).tolist(),
            "pca_center": center.tolist(),
            "pca_components": comps.tolist(),
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
            "latent_dim": cfg.latent_dim,
            "image_shape": [cfg.in_channels, *cfg.image_size],
            "likelihood": cfg.likelihood,
            "kl_per_dim": self.kl,
            "order": self.order,
            "num_test": len(self.x),
            "labelled": self.y is not None,
        }

    def decode(self, body: dict) -> dict:
        return {"images": self._images(parse_z(body.get("z"), self.model.cfg.latent_dim))}

    def sample(self, body: dict) -> dict:
        n = _int(body, "n", 1, MAX_ROWS, default=1)
        t = _number(body.get("temperature", 1.0), "'temperature'")
        if not 0 <= t <= MAX_TEMPERATURE:
            raise ApiError(400, f"'temperature' must be in [0, {MAX_TEMPERATURE:g}], got {t}")
        g = torch.Generator()
        if "seed" in body:
            g.manual_seed(_int(body, "seed", 0, 2**63 - 1))
        else:
            g.seed()
        z = torch.randn(n, self.model.cfg.latent_dim, generator=g) * t  # (n, D), z ~ N(0, T^2 I)
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
            if not isinstance(invert, bool):
                raise ApiError(400, f"'invert' must be true or false, got {json.dumps(invert)}")
            x, out = read_image(body["image"], cfg.in_channels, cfg.image_size, invert), {}
        else:
            raise ApiError(400, "send {'index': i} or {'image': data URL}")
        xf = to_float(x[None].to(self.device))  # (1, C, H, W)
        with self.lock, torch.inference_mode():
            mu, logvar = self.model.encode(xf)
            recon = self.model.decode(mu)
        out.update(
            mu=mu[0].tolist(),
            logvar=logvar[0].tolist(),
            input=png_data_url(xf[0]),
            image=png_data_url(recon[0]),
        )
        return out


class Handler(BaseHTTPRequestHandler):
    """Routes requests to an Explorer (set on a subclass by make_server); JSON errors only."""

    explorer: Explorer
    server_version = "vaekit-explore"
    timeout = 30  # seconds a client may stall mid-request before its thread gives up
    quiet = False

    def log_message(self, fmt: str, *args) -> None:
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _body(self) -> dict:
        """The request's JSON object; a raw image body (Content-Type image/*) becomes
        {"image": its base64}, so `curl --data-binary @x.png -H 'Content-Type: image/png'` works."""
        raw = self._read()
        if self.headers.get("Content-Type", "").startswith("image/"):
            return {"image": base64.b64encode(raw).decode()}
        try:
            body = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        return body

    def _read(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            raise ApiError(411, "a JSON body with Content-Length is required")
        try:
            n = int(length)
        except ValueError:
            raise ApiError(400, f"bad Content-Length {length!r}") from None
        if n < 0 or n > MAX_BODY:
            self.close_connection = True  # the body is not read: drop the connection after
            raise ApiError(413, f"request body is {n} bytes; at most {MAX_BODY} allowed")
        return self.rfile.read(n)

    def _route(self) -> None:
        path = self.path.split("?", 1)[0]
        ex = self.explorer
        get = {"/api/info": ex.info, "/api/map": lambda: ex.map}
        post = {"/api/decode": ex.decode, "/api/sample": ex.sample, "/api/encode": ex.encode}
        try:
            if self.command in ("GET", "HEAD") and path in ASSETS:
                file, ctype = ASSETS[path]
                return self._send(200, (STATIC / file).read_bytes(), ctype)
            if path == "/favicon.ico":  # browsers ask; there is none
                return self._send(204, b"", "image/x-icon")
            if self.command in ("GET", "HEAD") and path in get:
                return self._json(200, get[path]())
            if self.command == "POST" and path in post:
                return self._json(200, post[path](self._body()))
            if path in ASSETS or path in get or path in post:
                raise ApiError(405, f"{self.command} is not allowed on {path}")
            raise ApiError(404, f"no such route: {path}")
        except ApiError as e:
            self._json(e.status, {"error": str(e)})
        except Exception as e:  # a bug, not bad input: answer, log, keep serving
            self.log_error("internal error on %s: %r", path, e)
            self._json(500, {"error": f"internal error: {type(e).__name__}"})

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _route


def host_warning(host: str) -> str | None:
    """A warning to print when the server listens beyond this machine, else None."""
    if host in LOOPBACK:
        return None
    return (
        f"warning: listening on {host}: anyone who can reach this machine on that address can "
        "use the explorer and see the model and its test images"
    )


def make_server(
    explorer: Explorer | None, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False
) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server for the explorer; port 0 picks a free port.

    The explorer may be set later on server.RequestHandlerClass, to bind before loading."""
    handler = type("ExplorerHandler", (Handler,), {"explorer": explorer, "quiet": quiet})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
