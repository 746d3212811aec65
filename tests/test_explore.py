"""The explorer's JSON API against a real server on 127.0.0.1: answers, and refusals (4xx with a
JSON error, never a 500 or a dead server) for bad input; the HTTP layer under many, slow,
vanishing and foreign clients."""

from __future__ import annotations

import base64
import http.client
import io
import json
import shutil
import socket
import struct
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from vaekit import VAE, checkpoint
from vaekit.api.runs import open_run
from vaekit.cli import main
from vaekit.config import build_model_config
from vaekit.data import load_split, to_float
from vaekit.explorer import (
    ApiError,
    Explorer,
    host_warning,
    make_server,
    parse_z,
    png_data_url,
    read_image,
)
from vaekit.explorer import api as explorer_api
from vaekit.explorer.api import MAX_ROWS, border_mean, wrong_polarity
from vaekit.explorer.server import MAX_BODY, split_host
from vaekit.models.fitted import WithPrior
from vaekit.priors import store
from vaekit.priors.normal import StandardNormal
from vaekit.priors.pixelcnn import PixelCNN

from .browser import launch, open_page, src, wait_changed


def start(explorer: Explorer, **options):
    server = make_server(explorer, "127.0.0.1", 0, **{"quiet": True, **options})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def served(tiny_run, data_root):
    """(explorer, server) on a free port; the tiny run's model and the real MNIST test set."""
    ckpt = checkpoint.load(tiny_run)
    model = checkpoint.build_model(ckpt).eval()
    x, y = load_split("mnist", "test", data_root)
    explorer = Explorer(model, x, y, "mnist")
    server = start(explorer)
    yield explorer, server
    server.shutdown()
    server.server_close()


def request(server, method: str, path: str, body=None, raw: bytes | None = None, headers=None):
    """(status, parsed JSON or raw bytes, headers) of one request on a fresh connection."""
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers=headers or {})
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    if r.getheader("Content-Type") == "application/json":
        payload = json.loads(payload)
    return r.status, payload, dict(r.getheaders())


def png_bytes(arr: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(arr)
    (im.convert(mode) if mode else im).save(buf, fmt)
    return buf.getvalue()


def data_url(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def decode_png(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_info_orders_dims_by_kl(served):
    explorer, server = served
    status, info, _ = request(server, "GET", "/api/info")
    assert status == 200
    assert info["latent_dim"] == 4 and info["image_shape"] == [1, 28, 28]
    assert info["dataset"] == "mnist" and info["num_test"] == 10000 and info["labelled"]
    kl = info["kl_per_dim"]
    assert len(kl) == 4 and min(kl) >= 0
    assert [kl[d] for d in info["order"]] == sorted(kl, reverse=True)


def test_decode_matches_the_model(served):
    explorer, server = served
    z = [[0.0] * 4, [1.5, -2.0, 0.5, 3.0]]
    status, out, headers = request(server, "POST", "/api/decode", {"z": z})
    assert status == 200 and len(out["images"]) == 2
    with torch.inference_mode():
        want = explorer.model.decode(torch.tensor(z))  # (2, 1, 28, 28) in [0, 1]
    for url, img in zip(out["images"], want, strict=True):
        got = decode_png(url)
        assert got.shape == (28, 28)
        np.testing.assert_allclose(got, (img[0] * 255).round().numpy(), atol=1)
    assert not np.array_equal(decode_png(out["images"][0]), decode_png(out["images"][1]))
    assert "default-src 'self'" in headers["Content-Security-Policy"]


def test_sample_is_seeded_and_scaled_by_temperature(served):
    _, server = served
    a = request(server, "POST", "/api/sample", {"n": 3, "temperature": 0.5, "seed": 7})[1]
    b = request(server, "POST", "/api/sample", {"n": 3, "temperature": 0.5, "seed": 7})[1]
    c = request(server, "POST", "/api/sample", {"n": 3, "temperature": 0.5})[1]
    assert len(a["z"]) == 3 and len(a["z"][0]) == 4 and len(a["images"]) == 3
    assert a == b and a["z"] != c["z"]
    want = torch.randn(3, 4, generator=torch.Generator().manual_seed(7)) * 0.5
    np.testing.assert_allclose(a["z"], want.numpy(), rtol=1e-6)
    zero = request(server, "POST", "/api/sample", {"n": 1, "temperature": 0})[1]
    assert zero["z"] == [[0.0] * 4]


def test_encode_by_index_is_the_posterior_mean(served):
    explorer, server = served
    status, out, _ = request(server, "POST", "/api/encode", {"index": 3})
    assert status == 200 and out["index"] == 3 and out["label"] == int(explorer.y[3])
    with torch.inference_mode():
        mu, _ = explorer.model.encode(to_float(explorer.x[3:4]))
    np.testing.assert_allclose(out["mu"], mu[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(decode_png(out["input"]), explorer.x[3, 0].numpy())
    assert decode_png(out["image"]).shape == (28, 28)


def test_encode_upload_equals_the_same_test_image(served):
    explorer, server = served
    img = explorer.x[5, 0].numpy()  # (28, 28) uint8
    by_index = request(server, "POST", "/api/encode", {"index": 5})[1]
    upload = request(server, "POST", "/api/encode", {"image": data_url(png_bytes(img))})[1]
    np.testing.assert_allclose(upload["mu"], by_index["mu"], rtol=1e-5, atol=1e-6)
    # the upload's anomaly scores: the same image scores the same, as vaekit score computes them
    from vaekit.evaluation.scores import score

    want = score(explorer.model, explorer.x[5:6])
    assert upload["scores"] == by_index["scores"]
    for k, v in want.items():
        assert abs(upload["scores"][k] - v[0]) < 1e-3
    inverted = 255 - img
    raw = data_url(png_bytes(inverted)).split(",", 1)[1]  # plain base64 works too
    again = request(server, "POST", "/api/encode", {"image": raw, "invert": True})[1]
    np.testing.assert_allclose(again["mu"], by_index["mu"], rtol=1e-5, atol=1e-6)
    headers = {"Content-Type": "image/png"}  # a raw upload, as curl --data-binary sends it
    status, out, _ = request(server, "POST", "/api/encode", raw=png_bytes(img), headers=headers)
    assert status == 200
    np.testing.assert_allclose(out["mu"], by_index["mu"], rtol=1e-5, atol=1e-6)
    status, out, _ = request(server, "POST", "/api/encode", raw=b"GIF89a...", headers=headers)
    assert status == 400 and "readable" in out["error"]


def test_info_gives_the_codes_range_and_the_test_sets_bits_per_dim(served):
    explorer, server = served
    info = request(server, "GET", "/api/info")[1]
    assert info["z_max"] == pytest.approx(float(explorer.mu.abs().max()))  # the sliders' reach
    assert info["border_mean"] < 32  # MNIST: light strokes on a black background
    ref = info["test_bits_per_dim"]  # bits/dim of the first 1000 test images, by vaekit score
    assert ref["n"] == 1000
    assert ref["min"] <= ref["q01"] <= ref["median"] <= ref["q99"] <= ref["max"]
    from vaekit.evaluation.scores import score

    want = score(explorer.model, explorer.x[:1000])["bits_per_dim"]
    assert ref["min"] == pytest.approx(want.min()) and ref["max"] == pytest.approx(want.max())


def test_an_upload_in_the_wrong_polarity_is_inverted_or_flagged(served):
    explorer, server = served
    img = explorer.x[5, 0].numpy()  # (28, 28) uint8, white on black
    negative = data_url(png_bytes(255 - img))  # the same digit drawn black on white
    right = request(server, "POST", "/api/encode", {"image": data_url(png_bytes(img))})[1]
    auto = request(server, "POST", "/api/encode", {"image": negative, "invert": "auto"})[1]
    assert auto["inverted"] and auto["auto_inverted"]
    np.testing.assert_allclose(auto["mu"], right["mu"], rtol=1e-5, atol=1e-6)
    positive = {"image": data_url(png_bytes(img)), "invert": "auto"}
    kept = request(server, "POST", "/api/encode", positive)[1]
    assert not kept["inverted"] and not kept["auto_inverted"]  # already the data's polarity
    # As it is, the negative scores far above every test image: flagged out of distribution.
    raw = request(server, "POST", "/api/encode", {"image": negative, "invert": False})[1]
    assert not raw["inverted"] and raw["ood"]["flag"] and raw["ood"]["above_share"] == 1.0
    assert raw["scores"]["bits_per_dim"] > raw["ood"]["test"]["max"]
    assert not right["ood"]["flag"] and right["ood"]["above_share"] < 1
    status, out, _ = request(server, "POST", "/api/encode", {"image": negative, "invert": "yes"})
    assert status == 400 and "'invert' must be true, false or \"auto\"" in out["error"]


def test_polarity_is_judged_only_against_a_plain_background():
    assert border_mean(torch.full((2, 1, 8, 8), 7, dtype=torch.uint8)) == 7
    x = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    x[..., 1:-1, 1:-1] = 255  # a white square inside a black border
    assert border_mean(x) == 0
    assert wrong_polarity(250, 3) and wrong_polarity(5, 240)  # MNIST-like data, either way
    assert not wrong_polarity(20, 3) and not wrong_polarity(120, 3)  # dark or grey: as is
    assert not wrong_polarity(250, 110)  # photos (CIFAR's mean border): never inverted


@pytest.mark.parametrize(
    "mode,size",
    [("RGB", (50, 40)), ("RGBA", (28, 28)), ("P", (100, 100)), ("L", (7, 300)), ("1", (64, 64))],
)
def test_upload_modes_and_sizes_become_the_model_input(mode, size):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    raw = png_bytes(arr, mode)
    x = read_image(data_url(raw), 1, (28, 28), invert=False)
    assert x.shape == (1, 28, 28) and x.dtype == torch.uint8
    x3 = read_image(data_url(raw), 3, (32, 48), invert=False)
    assert x3.shape == (3, 32, 48)


def test_jpeg_upload_works():
    arr = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    x = read_image(data_url(png_bytes(arr, fmt="JPEG")), 1, (28, 28), invert=False)
    assert x.shape == (1, 28, 28)


TRUNCATED = png_bytes(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8))[:300]
BAD = [
    ("/api/decode", {"z": [[0, 0, 0]]}, "latent size is 4"),
    ("/api/decode", {"z": [[0, 0, 0, 0, 0]]}, "latent size is 4"),
    ("/api/decode", {"z": [0, 0, 0, 0]}, "list of latent vectors"),
    ("/api/decode", {"z": []}, "non-empty"),
    ("/api/decode", {"z": "0,0,0,0"}, "list of latent vectors"),
    ("/api/decode", {}, "list of latent vectors"),
    ("/api/decode", {"z": [[0, "a", 0, 0]]}, "must be a number"),
    ("/api/decode", {"z": [[0, None, 0, 0]]}, "must be a number"),
    ("/api/decode", {"z": [[0, True, 0, 0]]}, "must be a number"),
    ("/api/decode", {"z": [[0, 1e300, 0, 0]]}, "within"),
    ("/api/decode", {"z": [[0, -101, 0, 0]]}, "within"),
    ("/api/decode", {"z": [[0, 0, 0, 0]] * (MAX_ROWS + 1)}, "at most"),
    ("/api/sample", {"n": 0}, "'n' must be an integer"),
    ("/api/sample", {"n": 10**9}, "'n' must be an integer"),
    ("/api/sample", {"n": 2.5}, "'n' must be an integer"),
    ("/api/sample", {"n": 1, "temperature": -1}, "temperature"),
    ("/api/sample", {"n": 1, "temperature": 1e9}, "temperature"),
    ("/api/sample", {"n": 1, "temperature": "hot"}, "must be a number"),
    ("/api/sample", {"n": 1, "seed": -5}, "'seed'"),
    ("/api/encode", {"index": 10000}, "'index' must be an integer in [0, 9999]"),
    ("/api/encode", {"index": -1}, "'index'"),
    ("/api/encode", {"index": "3"}, "'index'"),
    ("/api/encode", {}, "send"),
    ("/api/encode", {"image": "not base64!!"}, "base64"),
    ("/api/encode", {"image": base64.b64encode(b"hello, not an image").decode()}, "readable"),
    ("/api/encode", {"image": 42}, "data URL"),
    ("/api/encode", {"image": data_url(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)}, "readable"),
    ("/api/encode", {"image": data_url(TRUNCATED)}, "truncated"),
]


@pytest.mark.parametrize("path,body,message", BAD)
def test_bad_input_is_a_4xx_json_error(served, path, body, message):
    _, server = served
    status, out, _ = request(server, "POST", path, body)
    assert status == 400, out
    assert message in out["error"]


def test_nan_and_infinity_are_refused(served):
    _, server = served
    for token in ("NaN", "Infinity", "-Infinity"):
        raw = f'{{"z": [[0, {token}, 0, 0]]}}'.encode()
        status, out, _ = request(server, "POST", "/api/decode", raw=raw)
        assert status == 400 and "finite" in out["error"]


def test_malformed_requests(served):
    _, server = served
    assert request(server, "POST", "/api/decode", raw=b"{not json")[0] == 400
    assert request(server, "POST", "/api/decode", raw=b"[1, 2]")[0] == 400
    assert request(server, "POST", "/api/decode", raw=b"\xff\xfe")[0] == 400
    status, out, _ = request(server, "GET", "/api/nope")
    assert status == 404 and "no such route" in out["error"]
    assert request(server, "GET", "/../../etc/passwd")[0] == 404
    assert request(server, "PUT", "/api/decode", {"z": [[0] * 4]})[0] == 405
    assert request(server, "GET", "/api/decode")[0] == 405
    assert request(server, "DELETE", "/api/info")[0] == 405
    status, out, _ = request(server, "POST", "/api/info", {})
    assert status == 405 and "error" in out


def test_oversize_bodies_and_images_are_refused(served):
    _, server = served
    # Declared too large: refused from the header alone, the body never read.
    status, out, _ = request(
        server, "POST", "/api/encode", raw=b"{}", headers={"Content-Length": str(MAX_BODY + 1)}
    )
    assert status == 413 and "at most" in out["error"]
    big = base64.b64encode(b"\0" * (5 << 19)).decode()  # 2.5 MiB of "image" in a 3.4 MiB body
    status, out, _ = request(server, "POST", "/api/encode", {"image": big})
    assert status == 413 and "over 2 MiB" in out["error"]
    huge = png_bytes(np.zeros((5000, 4000), np.uint8))  # a small file of too many pixels
    status, out, _ = request(server, "POST", "/api/encode", {"image": data_url(huge)})
    assert status == 413 and "4000x5000" in out["error"]


def test_server_keeps_serving_after_bad_requests(served):
    _, server = served
    for path, body, _ in BAD[:5]:
        request(server, "POST", path, body)
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    conn.sock = None
    conn.connect()
    conn.sock.sendall(b"GARBAGE\r\n\r\n")  # not HTTP at all
    conn.sock.recv(1024)
    conn.close()
    assert request(server, "GET", "/api/info")[0] == 200


# Every class of bad body, as raw bytes (and headers): each a 4xx with a one-line JSON error.
DEEP = b'{"z": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"  # json's recursion limit
HOSTILE = [
    # invalid JSON
    ("/api/decode", b"{not json", {}, 400, "not valid JSON"),
    ("/api/decode", b'{"z": [[0, 0, 0, 0]]', {}, 400, "not valid JSON"),
    ("/api/decode", b"\xff\xfe\x00", {}, 400, "not valid JSON"),
    ("/api/decode", DEEP, {}, 400, "nested too deeply"),
    ("/api/sample", b'{"n": ' + b"9" * 5000 + b"}", {}, 400, "not valid JSON"),
    # not an object
    ("/api/decode", b"[1, 2]", {}, 400, "JSON object"),
    ("/api/sample", b'"n"', {}, 400, "JSON object"),
    ("/api/sample", b"3", {}, 400, "JSON object"),
    ("/api/sample", b"null", {}, 400, "JSON object"),
    # wrong types
    ("/api/sample", b'{"n": "2"}', {}, 400, "'n' must be an integer"),
    ("/api/sample", b'{"n": [2]}', {}, 400, "'n' must be an integer"),
    ("/api/sample", b'{"n": {"v": 2}}', {}, 400, "'n' must be an integer"),
    ("/api/sample", b'{"n": 1, "seed": 1.5}', {}, 400, "'seed'"),
    ("/api/sample", b'{"n": 1, "temperature": [1]}', {}, 400, "must be a number"),
    ("/api/encode", b'{"index": true}', {}, 400, "'index'"),
    ("/api/encode", b'{"index": null}', {}, 400, "missing 'index'"),
    ("/api/encode", b'{"image": ["a"]}', {}, 400, "data URL"),
    ("/api/encode", rb'{"image": "\u00e9\u00e9\u00e9\u00e9"}', {}, 400, "base64"),
    ("/api/encode", b'{"index": 0, "invert": "yes"}', {}, 200, None),  # invert: uploads only
    ("/api/encode", b'{"image": "AAAA", "invert": "yes"}', {}, 400, "'invert'"),
    ("/api/decode", b'{"z": [[[0], 0, 0, 0]]}', {}, 400, "must be a number"),
    ("/api/decode", b'{"z": [{"a": 1}]}', {}, 400, "list of latent vectors"),
    # NaN and infinities, anywhere
    ("/api/sample", b'{"n": 1, "temperature": NaN}', {}, 400, "finite"),
    ("/api/sample", b'{"n": 1, "temperature": -Infinity}', {}, 400, "finite"),
    ("/api/sample", b'{"n": NaN}', {}, 400, "'n' must be an integer"),
    ("/api/sample", b'{"n": 1, "seed": Infinity}', {}, 400, "'seed'"),
    ("/api/encode", b'{"index": NaN}', {}, 400, "'index'"),
    # huge numbers
    ("/api/decode", b'{"z": [[0, 1' + b"0" * 400 + b", 0, 0]]}", {}, 400, "within"),
    ("/api/decode", b'{"z": [[0, 1e400, 0, 0]]}', {}, 400, "finite"),
    ("/api/sample", b'{"n": 1, "temperature": 1' + b"0" * 400 + b"}", {}, 400, "temperature"),
    ("/api/sample", b'{"n": 1' + b"0" * 400 + b"}", {}, 400, "'n' must be an integer"),
    ("/api/sample", b'{"n": 1, "seed": 18446744073709551616}', {}, 400, "'seed'"),
    ("/api/encode", b'{"index": 1' + b"0" * 400 + b"}", {}, 400, "'index'"),
    # negative numbers and indices
    ("/api/sample", b'{"n": -1}', {}, 400, "'n' must be an integer"),
    ("/api/encode", b'{"index": -10001}', {}, 400, "'index'"),
    # missing fields
    ("/api/decode", b'{"zz": [[0, 0, 0, 0]]}', {}, 400, "list of latent vectors"),
    ("/api/encode", b'{"invert": true}', {}, 400, "send"),
    # content types
    ("/api/decode", b'{"z": [[0, 0, 0, 0]]}', {"Content-Type": "image/png"}, 415, "image"),
    ("/api/sample", b"\x89PNG", {"Content-Type": "image/png"}, 415, "image"),
    ("/api/encode", b"--x\r\n", {"Content-Type": "multipart/form-data; boundary=x"}, 415, "JSON"),
    ("/api/decode", b"z=1", {"Content-Type": "application/x-www-form-urlencoded"}, 400, "JSON"),
    ("/api/encode", b"", {"Content-Type": "image/png"}, 400, "readable"),
    # empty bodies
    ("/api/decode", b"", {}, 400, "JSON object"),
    ("/api/sample", b"   ", {}, 400, "JSON object"),
]


@pytest.mark.parametrize("path,raw,headers,status,message", HOSTILE)
def test_hostile_bodies_are_a_4xx_with_a_one_line_json_error(
    served, path, raw, headers, status, message
):
    _, server = served
    got, out, _ = request(server, "POST", path, raw=raw, headers=headers)
    assert got == status, out
    if message is not None:
        assert isinstance(out, dict) and message in out["error"], out
        assert "\n" not in out["error"] and len(out["error"]) < 300


def test_hostile_bodies_leave_no_traceback_in_the_servers_log(server_with, capsys):
    server = server_with(quiet=False)
    for path, raw, headers, _, _ in HOSTILE:
        assert request(server, "POST", path, raw=raw, headers=headers)[0] < 500
    time.sleep(0.2)  # the last log line comes just after the answer
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(err.splitlines()) == len(HOSTILE)  # one line a request


def test_json_bodies_are_accepted_without_a_json_content_type(served):
    # curl -d sends application/x-www-form-urlencoded, a browser's fetch of a string text/plain
    _, server = served
    z = json.dumps({"z": [[0.0] * 4]}).encode()
    for ctype in (None, "application/json; charset=utf-8", "text/plain;charset=UTF-8",
                  "application/x-www-form-urlencoded"):  # fmt: skip
        headers = {"Content-Type": ctype} if ctype else {}
        assert request(server, "POST", "/api/decode", raw=z, headers=headers)[0] == 200, ctype


@pytest.mark.parametrize(
    "data,status,message",
    [
        (b"GARBAGE\r\n\r\n", 400, "Bad request"),
        (b"FOO /api/info HTTP/1.0\r\n\r\n", 405, "FOO"),
        (b"GET /api/info HTTP/9.9\r\n\r\n", 505, None),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.0\r\n\r\n", 414, None),
        (b"POST /api/decode HTTP/1.0\r\nContent-Length: x1\r\n\r\n", 400, "Content-Length"),
        (b"POST /api/decode HTTP/1.0\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length"),
        (b"POST /api/decode HTTP/1.0\r\n\r\n", 411, "Content-Length"),
    ],
)
def test_malformed_http_gets_a_json_error(served, data, status, message):
    _, server = served
    host, port = server.server_address[:2]
    if b"Host:" not in data and b"\r\n\r\n" in data:
        line, rest = data.split(b"\r\n", 1)
        data = line + f"\r\nHost: {host}:{port}".encode() + b"\r\n" + rest
    got, out, _ = exchange(server, data)
    assert got == status and isinstance(out["error"], str), out
    if message:
        assert message in out["error"]


def test_page_and_assets_are_local(served):
    _, server = served
    status, html, headers = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for path in ("/static/app.js", "/static/style.css"):
        status, asset, _ = request(server, "GET", path)
        assert status == 200
        assert b"http://" not in asset and b"https://" not in asset, path
    assert b"http://" not in html and b"https://" not in html
    assert request(server, "GET", "/favicon.ico")[0] == 204


def test_map_projects_every_test_image(served):
    explorer, server = served
    status, m, _ = request(server, "GET", "/api/map")
    assert status == 200 and len(m["pca"]) == len(m["kl"]) == len(m["labels"]) == 10000
    assert m["labels"][:3] == explorer.y[:3].tolist()
    assert m["kl_dims"] == explorer.order[:2]
    # The PCA basis the page uses for the marker reproduces the points.
    c, comps = torch.tensor(m["pca_center"]), torch.tensor(m["pca_components"])
    np.testing.assert_allclose(((explorer.mu[:50] - c) @ comps.T).numpy(), m["pca"][:50], atol=2e-3)


@pytest.fixture(scope="module")
def tsne_served(served, tmp_path_factory):
    """(explorer, server, cache): 400 test images, a t-SNE map of 150 of them, cached."""
    explorer, _ = served
    cache = tmp_path_factory.mktemp("tsne") / "last.tsne.npz"
    x, y = explorer.x[:400], explorer.y[:400]
    e = Explorer(explorer.model, x, y, "mnist", tsne_max=150, cache=cache, log=lambda _: None)
    server = start(e)
    yield e, server, cache
    server.shutdown()
    server.server_close()


def test_map_has_a_tsne_of_a_subset_when_asked(served, tsne_served):
    _, server, cache = tsne_served
    status, m, _ = request(server, "GET", "/api/map")
    t = m["tsne"]
    assert status == 200 and t["of"] == 400 and len(t["index"]) == len(t["points"]) == 150
    assert t["index"] == sorted(set(t["index"])) and t["perplexity"] == 30 and cache.is_file()
    assert len(m["pca"]) == len(m["kl"]) == 400  # PCA and the top-KL dims place every image
    a, b = m["pca_variance"]
    assert 1 >= a >= b > 0
    assert served[0].map["tsne"] is None  # only when asked for


def test_unlabelled_data_has_no_map_labels(served):
    explorer, _ = served
    x = explorer.x[:50]
    for y in (None, torch.zeros(50, dtype=torch.int64)):  # a folder without class subfolders
        e = Explorer(explorer.model, x, y, "folder:/somewhere")
        assert e.info()["labelled"] is False and e.map["labels"] is None
        assert "label" not in e.encode({"index": 3})


def test_colour_models_at_any_size():
    values = dict(in_channels=3, image_size=(32, 48), channels=(8, 16), latent_dim=3)
    cfg = build_model_config(values)
    model = VAE(cfg).eval()
    x = torch.randint(0, 256, (20, 3, 32, 48), dtype=torch.uint8)
    e = Explorer(model, x, torch.arange(20) % 4, "cifar-like")
    assert e.info()["image_shape"] == [3, 32, 48]
    img = decode_png(e.decode({"z": [[0.0, 1.0, -1.0]]})["images"][0])
    assert img.shape == (32, 48, 3)
    grey = data_url(png_bytes(np.full((100, 100), 128, np.uint8)))
    out = e.encode({"image": grey})
    assert decode_png(out["input"]).shape == (32, 48, 3) and len(out["mu"]) == 3


def test_parse_z_accepts_ints_and_floats():
    z = parse_z([[0, 1.5], [-2, 3]], 2)
    assert z.dtype == torch.float32 and z.tolist() == [[0, 1.5], [-2, 3]]


def test_host_warning():
    assert host_warning("127.0.0.1") is None and host_warning("localhost") is None
    assert "0.0.0.0" in host_warning("0.0.0.0")


def test_cli_explore_errors_are_one_line(tmp_path, tiny_run, capsys):
    assert main(["explore", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such run directory" in err
    for flag, value, words in [("--port", "70000", "an integer in [0, 65535]"),
                               ("--tsne-max", "-1", "an integer >= 0")]:  # fmt: skip
        with pytest.raises(SystemExit) as e:  # refused by the parser, before any work
            main(["explore", str(tiny_run), flag, value])
        assert e.value.code == 2
        assert f"argument {flag}: must be {words}, got {value}" in capsys.readouterr().err


def test_cli_explore_refuses_a_busy_port(served, tiny_run, data_root, capsys):
    _, server = served
    port = server.server_address[1]
    argv = ["explore", str(tiny_run), "--port", str(port), "--data-dir", str(data_root)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err


# ---- the HTTP layer: many clients, foreign hosts and origins, slow and vanishing clients.
# Each runs against its own server with small deadlines, and finishes in a few seconds.


@pytest.fixture
def server_with(served):
    """make(**options) -> a server on the shared explorer with those make_server options,
    serving on a free port; all are closed after the test."""
    explorer, _ = served
    servers = []

    def make(**options):
        servers.append(start(explorer, **options))
        return servers[-1]

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def exchange(server, data: bytes, half_close: bool = False, timeout: float = 8):
    """Send raw bytes, read until the server closes: (status, parsed JSON body, seconds)."""
    t0 = time.monotonic()
    with socket.create_connection(server.server_address[:2], timeout=timeout) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), time.monotonic() - t0


def test_200_concurrent_decodes_are_all_served(served):
    # Before: a listen backlog of 5 reset 23-29% of them.
    _, server = served
    n, results = 200, {}
    go = threading.Barrier(n)

    def one(i):
        go.wait()
        try:
            results[i] = request(server, "POST", "/api/decode", {"z": [[i / n, 0, 0, 0]]})[0]
        except OSError as e:
            results[i] = repr(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    failed = {i: r for i, r in results.items() if r != 200}
    assert len(results) == n and not failed, f"{len(failed)} of {n} failed: {failed}"


def test_requests_for_another_host_are_refused(served):
    # DNS rebinding: a page on evil.example re-points its name at 127.0.0.1; its requests then
    # carry Host: evil.example. Before, they got the test images and labels.
    explorer, server = served
    port = server.server_address[1]
    rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    status, out, headers = request(server, "POST", "/api/encode", {"index": 0}, headers=rebound)
    assert status == 403 and "evil.example" in out["error"] and "label" not in out
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for host in (
        "evil.example",
        f"evil.example:{port}",
        f"localhost.evil.example:{port}",
        f"127.0.0.1:{port + 1}",
        "127.0.0.1",  # port 80
        f"10.0.0.1:{port}",  # an IP address, but not loopback: this server listens on loopback
        f"user@127.0.0.1:{port}",
        "",
    ):
        status, out, _ = request(server, "GET", "/api/map", headers={"Host": host})
        assert status == 403 and "not this server's address" in out["error"], host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", f"[::1]:{port}"):
        assert request(server, "GET", "/api/info", headers={"Host": host})[0] == 200, host
    no_host = b"GET /api/info HTTP/1.0\r\n\r\n"
    two = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example\r\n\r\n".encode()
    for data in (no_host, two):
        status, out, _ = exchange(server, data)
        assert status == 403 and "exactly one Host" in out["error"]


def test_cross_origin_posts_are_refused(served):
    # CSRF: a page elsewhere posting to http://127.0.0.1:PORT (its browser sends its Origin).
    _, server = served
    port = server.server_address[1]
    z = {"z": [[0.0] * 4]}
    for origin in (
        "http://evil.example",
        f"http://evil.example:{port}",
        "null",  # a sandboxed frame or a file:// page
        f"https://127.0.0.1:{port}",
        f"http://127.0.0.1:{port + 1}",
        f"http://localhost:{port}",  # another origin than the page's, http://127.0.0.1:PORT
    ):
        status, out, _ = request(server, "POST", "/api/decode", z, headers={"Origin": origin})
        assert status == 403 and "cross-origin" in out["error"], origin
    # The page's own fetches (browsers send Origin on POST), and clients that send none, work.
    own = {"Origin": f"http://127.0.0.1:{port}"}
    assert request(server, "POST", "/api/decode", z, headers=own)[0] == 200
    assert request(server, "POST", "/api/decode", z)[0] == 200
    by_name = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}
    assert request(server, "POST", "/api/decode", z, headers=by_name)[0] == 200
    assert request(server, "GET", "/api/info", headers=own)[0] == 200


def test_hosts_accepted_when_listening_on_all_addresses(served):
    explorer, _ = served
    server = make_server(explorer, "0.0.0.0", 0, quiet=True, hosts=("explorer.lan",))
    try:
        port = server.port
        for name in ("127.0.0.1", "192.168.1.20", "[fe80::1]", "localhost", "Explorer.lan"):
            assert server.accepts(*split_host(f"{name}:{port}")), name
        assert server.accepts(socket.gethostname().lower(), port)
        for host in (f"evil.example:{port}", f"127.0.0.1:{port + 1}", "explorer.lan"):
            assert not server.accepts(*split_host(host)), host
    finally:
        server.server_close()


def test_byte_at_a_time_clients_are_dropped(server_with):
    # Slowloris. Before, each held a thread as long as it kept sending (a 30 s timeout per
    # recv); now the headers have 1 s in all, read by one thread for all connections, and at
    # most 4 threads answer requests.
    server = server_with(workers=4, header_timeout=1)
    host, port = server.server_address[:2]
    n, open_for = 8, {}
    line = f"GET /api/info HTTP/1.1\r\nHost: {host}:{port}\r\nX-Slow: ".encode() + b"a" * 100

    def slow(i):
        t0 = time.monotonic()
        with socket.create_connection((host, port), timeout=1) as s:
            s.setblocking(False)
            for byte in line:
                try:
                    s.send(bytes([byte]))
                    if s.recv(1) == b"":  # the server closed the connection
                        break
                except BlockingIOError:
                    pass  # still open, nothing to read
                except OSError:  # reset or broken pipe: closed
                    break
                time.sleep(0.05)
            else:
                open_for[i] = None  # still open after all 100+ bytes (over 5 s)
                return
        open_for[i] = time.monotonic() - t0

    threads = [threading.Thread(target=slow, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert request(server, "GET", "/api/info")[0] == 200  # still answering others
    answered = time.monotonic() - t0
    workers = [t for t in threading.enumerate() if t.name.startswith(f"explorer-{port}-worker")]
    for t in threads:
        t.join(timeout=10)
    assert len(workers) <= 4
    assert all(s is not None and s < 2.5 for s in open_for.values()) and len(open_for) == n, (
        open_for
    )
    assert answered < 1  # not queued behind the slow ones


def test_connections_beyond_the_queue_get_a_503_at_once(server_with):
    server = server_with(workers=1, max_queued=2, header_timeout=2)
    silent = []
    for _ in range(2):  # two connections that send nothing: the most that may wait
        silent.append(socket.create_connection(server.server_address[:2], timeout=5))
        time.sleep(0.1)
    status, out, seconds = exchange(server, b"")
    assert status == 503 and "try again" in out["error"] and seconds < 1
    for s in silent:
        s.close()
    deadline = time.monotonic() + 3  # the worker reads the closed ones' EOF, and is free again
    while (status := request(server, "GET", "/api/info")[0]) == 503:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status == 200


def test_a_short_body_is_a_prompt_408_not_a_500(server_with):
    # Before: 500 "internal error: TimeoutError" after 30 s.
    server = server_with(body_timeout=1)
    host, port = server.server_address[:2]
    head = f"POST /api/decode HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 100\r\n\r\n"
    data = head.encode() + b'{"z": [[0, 0'
    status, out, seconds = exchange(server, data)  # the client waits: the body never comes
    assert status == 408 and "not received within 1 s" in out["error"] and seconds < 3
    status, out, seconds = exchange(server, data, half_close=True)  # the client ends it
    assert status == 400 and "ended after 12 of its 100 bytes" in out["error"] and seconds < 1
    assert request(server, "POST", "/api/decode", {"z": [[0.0] * 4]})[0] == 200


def test_a_client_that_disconnects_leaves_one_log_line(server_with, capsys):
    # Before: a BrokenPipe/ConnectionReset traceback in the server's log.
    server = server_with(quiet=False)
    host, port = server.server_address[:2]
    body = json.dumps({"z": [[0.5] * 4] * MAX_ROWS}).encode()  # a large answer to write
    head = f"POST /api/decode HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}"
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(head.encode() + b"\r\n\r\n" + body)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    err, deadline = "", time.monotonic() + 5
    while "disconnected" not in err and time.monotonic() < deadline:
        time.sleep(0.05)
        err += capsys.readouterr().err
    time.sleep(0.2)
    err += capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "client disconnected" in err and err.startswith("127.0.0.1 ")
    assert request(server, "GET", "/api/info")[0] == 200
    deadline = time.monotonic() + 2  # its log line comes just after the answer: take it here
    while "/api/info" not in err and time.monotonic() < deadline:
        time.sleep(0.05)
        err += capsys.readouterr().err


# ---- the page in headless Chromium, driven by Playwright


@pytest.fixture(scope="module")
def browser():
    yield from launch()


@pytest.fixture
def page(browser, served):
    """A fresh page on the explorer, loaded and ready (tests.browser.open_page)."""
    with open_page(browser, served[1]) as p:
        yield p


def test_browser_slider_decodes_live(page, served):
    explorer, _ = served
    sliders = page.locator("#sliders input[type=range]")
    assert sliders.count() == 4
    top = explorer.order[0]
    assert sliders.first.get_attribute("data-dim") == str(top)  # most informative first
    before = src(page, "#decoded")
    sliders.first.fill("2.5")
    after = wait_changed(page, "#decoded", before)
    with torch.inference_mode():
        z = torch.zeros(1, 4)
        z[0, top] = 2.5
        want = (explorer.model.decode(z)[0, 0] * 255).round().numpy()
    np.testing.assert_allclose(decode_png(after), want, atol=1)
    assert page.text_content("#latency").endswith("ms")


def test_browser_random_sample_and_reset(page):
    before = src(page, "#decoded")
    page.click("#random")
    after = wait_changed(page, "#decoded", before)
    values = page.eval_on_selector_all("#sliders input", "es => es.map(e => +e.value)")
    assert any(v != 0 for v in values)
    page.click("#reset")
    wait_changed(page, "#decoded", after)
    values = page.eval_on_selector_all("#sliders input", "es => es.map(e => +e.value)")
    assert values == [0, 0, 0, 0]


def test_browser_upload_encodes_an_image(page, served, tmp_path):
    explorer, _ = served
    path = tmp_path / "digit.png"
    Image.fromarray(explorer.x[7, 0].numpy()).resize((64, 64)).convert("RGB").save(path)
    before = src(page, "#decoded")
    page.set_input_files("#upload", str(path))
    page.wait_for_selector("#encoded:not([hidden])")
    caption = page.text_content("#input-caption")  # the file's name, what was done, its scores
    assert caption.startswith("digit.png · as uploaded · -ELBO ") and "bits/dim" in caption
    assert decode_png(src(page, "#input-img")).shape == (28, 28)
    wait_changed(page, "#decoded", before)


def test_browser_interpolation_traversal_map_and_screenshot(page, served, tmp_path):
    explorer, _ = served
    page.fill("#interp-steps", "6")
    page.click("#interp-go")
    page.wait_for_function("() => document.querySelectorAll('#strip img').length === 6")
    page.fill("#steps", "5")
    page.click("#traverse-go")
    page.wait_for_function("() => document.getElementById('grid').dataset.n === '5'")
    size = page.eval_on_selector("#grid", "c => [c.width, c.height]")
    assert size == [5 * 56 + 62, 5 * 56 + 36]  # 5x5 cells of 56 px, and margins for the axes
    # Click the map where test image 0 is drawn: it loads that image's code.
    page.select_option("#map-method", "kl")
    x, y = page.evaluate("() => mapFrame().toPx(map.kl[0])")
    page.click("#map", position={"x": x, "y": y})
    page.wait_for_selector("#encoded:not([hidden])")
    index = int(page.input_value("#index"))
    assert page.text_content("#input-caption").startswith(f"test #{index}")
    np.testing.assert_allclose(
        explorer.mu[index, explorer.order[:2]].numpy(), explorer.mu[0, explorer.order[:2]], atol=0.1
    )
    shot = tmp_path / "explorer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] == 1280


def test_an_upload_is_turned_upright_by_its_exif_orientation():
    arr = np.zeros((40, 40), np.uint8)
    arr[:, :20] = 255  # stored: the left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: the top half white
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", exif=exif)
    x = read_image(data_url(buf.getvalue()), 1, (28, 28), invert=False)  # (1, 28, 28)
    assert x[0, :12].float().mean() > 200 and x[0, 16:].float().mean() < 50


def test_browser_map_shows_tsne_first_and_says_which_projection(browser, tsne_served):
    explorer, server, _ = tsne_served
    with open_page(browser, server) as page:
        assert page.input_value("#map-method") == "tsne"
        caption = page.text_content("#map-caption")
        assert caption.startswith("t-SNE of 150 of 400 test images (a fixed random subset)")
        assert page.evaluate("() => project(z)") is None  # z = 0 is no test image: no ring
        # Click a t-SNE point: it loads that point's test image, and the ring marks it.
        x, y = page.evaluate("() => mapFrame().toPx(map.tsne.points[10])")
        page.click("#map", position={"x": x, "y": y})
        page.wait_for_selector("#encoded:not([hidden])")
        index = int(page.input_value("#index"))
        assert index in explorer.map["tsne"]["index"]  # a test image, not a row of the map
        px, py = page.evaluate("() => mapFrame().toPx(project(z))")
        assert (px - x) ** 2 + (py - y) ** 2 <= 64  # the one under the click (within 8 px)
        assert page.text_content("#input-caption").startswith(f"test #{index}")
        page.select_option("#map-method", "pca")
        assert page.text_content("#map-caption").startswith("PCA of all 400 latent means")
        page.select_option("#map-method", "kl")
        assert "with the largest average KL" in page.text_content("#map-caption")


# --- a model with discrete codes (vqvae): its grid of code indices instead of a continuous z ----


@pytest.fixture(scope="module")
def vq_served(tiny_vq_run, data_root):
    """(explorer, server) over the tiny vqvae run (7x7 codes from 8; no prior fitted over them)
    and the first 300 MNIST test images."""
    x, y = load_split("mnist", "test", data_root)
    explorer = Explorer(vaekit.load(tiny_vq_run), x[:300], y[:300], "mnist")
    server = start(explorer)
    yield explorer, server
    server.shutdown()
    server.server_close()


def farthest_code(model, k: int) -> int:
    """The code whose vector is farthest from code k's: an edit to it must show."""
    c = model.quantizer.codebook
    return int((c - c[k]).norm(dim=1).argmax())


def test_a_vqvae_is_explored_by_its_code_grid_not_by_a_map(vq_served, served, tmp_path):
    explorer, server = vq_served
    status, info, _ = request(server, "GET", "/api/info")
    assert status == 200 and info["codes"] == {"grid": [7, 7], "codebook_size": 8}
    assert not info["has_prior"] and "`vaekit prior RUN --kind pixelcnn`" in info["note"]
    assert request(server, "GET", "/api/map")[1] is None  # no map of code vectors to steer
    assert request(served[1], "GET", "/api/info")[1]["codes"] is None  # a vae: continuous z
    cache = tmp_path / "tsne.npz"  # nor a t-SNE of them computed and cached
    vq = Explorer(explorer.model, explorer.x[:60], None, "mnist", tsne_max=60, cache=cache)
    assert vq.map is None and not cache.exists()


def test_a_vqvae_explorer_encodes_no_test_set_at_start(vq_served, served, monkeypatch):
    """The latent means order sliders and draw the map: a code grid's page has neither."""
    explorer, _ = vq_served

    def refuse(*args, **kwargs):
        raise AssertionError("the test set's latent means were computed")

    monkeypatch.setattr(explorer_api, "posterior", refuse)
    vq = Explorer(explorer.model, explorer.x[:60], None, "mnist")
    info = vq.info()
    assert info["order"] == [] and info["kl_per_dim"] is None and info["codes"] is not None
    with pytest.raises(AssertionError, match="latent means"):  # a vae's explorer does need them
        Explorer(served[0].model, explorer.x[:60], None, "mnist")


def test_the_code_grid_round_trips_to_the_reconstruction(vq_served):
    explorer, server = vq_served
    model, x = explorer.model, to_float(explorer.x[3:4])
    status, out, _ = request(server, "POST", "/api/encode", {"index": 3})
    with torch.inference_mode():
        k, want = model.codes(x), png_data_url(model.reconstruct(x)[0])
    assert status == 200 and out["codes"] == k[0].tolist()
    assert np.array(out["codes"]).shape == (7, 7) and out["image"] == want
    status, decoded, _ = request(server, "POST", "/api/decode", {"codes": [out["codes"]]})
    assert status == 200 and decoded["images"] == [want]  # encode -> grid -> decode
    upload = {"image": data_url(png_bytes(explorer.x[3, 0].numpy()))}
    assert request(server, "POST", "/api/encode", upload)[1]["codes"] == out["codes"]


def test_an_edited_cell_decodes_as_the_model_decodes_the_edited_grid(vq_served):
    explorer, server = vq_served
    grid = request(server, "POST", "/api/encode", {"index": 3})[1]["codes"]
    edited = [row[:] for row in grid]
    edited[2][4] = farthest_code(explorer.model, grid[2][4])
    status, out, _ = request(server, "POST", "/api/decode", {"codes": [grid, edited]})
    with torch.inference_mode():
        want = explorer.model.decode_codes(torch.tensor([grid, edited]))
    assert status == 200 and out["images"] == [png_data_url(img) for img in want]
    assert not np.array_equal(decode_png(out["images"][0]), decode_png(out["images"][1]))


def grid_with(value, i: int = 2, j: int = 5) -> list:
    """A 7x7 grid of code 0 with cell (i, j) set to value."""
    grid = [[0] * 7 for _ in range(7)]
    grid[i][j] = value
    return grid


@pytest.mark.parametrize(
    "codes, message",
    [
        ([grid_with(8)], "codes[0][2][5] must be a code index in [0, 7], got 8"),
        ([grid_with(-1)], "codes[0][2][5] must be a code index in [0, 7], got -1"),
        ([grid_with(1.5)], "got 1.5"),
        ([grid_with(True)], "got true"),
        ([grid_with("3")], 'got "3"'),
        ([grid_with(0)[:6]], "codes[0] has 6 rows, not 7: the code grid is 7x7"),
        ([grid_with(0)[:1]], "codes[0] has 1 row, not 7: the code grid is 7x7"),
        ([grid_with(0)[:6] + [[0]]], "codes[0][6] has 1 code index, not 7"),
        ([grid_with(0), grid_with(0)[:6] + [[0] * 8]], "codes[1][6] has 8 code indices, not 7"),
        ([grid_with(0), 5], "codes[1] must be a list of 7 rows, got 5"),
        ([], "'codes' must be a non-empty list of 7x7 grids of code indices"),
        ("0" * 49, "'codes' must be a non-empty list"),
        ([grid_with(0)] * (MAX_ROWS + 1), f"at most {MAX_ROWS} per request"),
    ],
)
def test_bad_edits_are_a_400_with_a_one_line_error(vq_served, codes, message):
    status, out, _ = request(vq_served[1], "POST", "/api/decode", {"codes": codes})
    assert status == 400 and message in out["error"] and "\n" not in out["error"]


def test_codes_for_a_model_without_them_are_a_400(served):
    status, out, _ = request(served[1], "POST", "/api/decode", {"codes": [grid_with(0)]})
    assert status == 400 and out["error"] == "'codes': this model has no discrete codes; send 'z'"


def test_samples_come_from_the_prior_over_the_codes_and_none_without_one(
    vq_served, tiny_vq_run, tmp_path
):
    explorer, server = vq_served
    status, out, _ = request(server, "POST", "/api/sample", {"n": 2, "seed": 1})
    assert status == 400 and out["error"] == explorer.note()  # not decoded noise
    run = tmp_path / "run"
    shutil.copytree(tiny_vq_run, run)
    torch.manual_seed(0)
    store.save(PixelCNN(8, (7, 7), channels=4, layers=2), "pixelcnn", run, meta={})
    model = open_run(run).model  # RUN/priors/pixelcnn.pt attached: the model's own prior
    vq = Explorer(model, explorer.x[:60], None, "mnist")
    assert vq.info()["has_prior"] and vq.info()["note"] == ""
    out = vq.sample({"n": 3, "temperature": 0.7, "seed": 5})
    k = model.prior.sample(3, torch.Generator().manual_seed(5), 0.7)
    assert out["codes"] == k.tolist() and "z" not in out
    with torch.inference_mode():
        assert out["images"] == [png_data_url(img) for img in model.decode_codes(k)]
    with pytest.raises(ApiError, match="'temperature' must lie within") as e:
        vq.sample({"temperature": 0})  # softmax(logits / 0): no distribution to draw from
    assert e.value.status == 400
    vectors = WithPrior(model, StandardNormal((147,)), "normal")  # a prior over code vectors
    vq = Explorer(model, explorer.x[:60], None, "mnist", fitted=vectors)
    with pytest.raises(ApiError, match="the fitted prior normal draws code vectors, not code"):
        vq.sample({"n": 1})  # no grid to show for them


def test_random_samples_of_a_vampprior_model_come_from_its_prior():
    """A VampPrior's codes are a mixture over its pseudo-inputs, not N(0, I): the explorer's
    Random sample draws them as `vaekit sample` does."""
    torch.manual_seed(0)
    cfg = build_model_config(dict(likelihood="bernoulli", latent_dim=4, channels=(4, 8),
                                  prior="vamp", pseudo_inputs=5))  # fmt: skip
    model = VAE(cfg).eval()
    x = (torch.rand(20, 1, 28, 28) < 0.3).to(torch.uint8) * 255
    explorer = Explorer(model, x, None, "mnist")
    out = explorer.sample({"n": 3, "temperature": 0.5, "seed": 7})
    with torch.inference_mode():
        want = model.prior.sample(3, torch.Generator().manual_seed(7), 0.5)
    np.testing.assert_allclose(out["z"], want.numpy(), rtol=1e-6)
    assert out["images"] == explorer.decode({"z": out["z"]})["images"]
    assert explorer.info()["note"] == "Random sample draws from the model's learned prior (vamp)"
    z0 = explorer.sample({"n": 2, "temperature": 0, "seed": 1})["z"]  # the components' means
    means = model.prior.mixture()[0].detach()
    assert all(any(torch.allclose(torch.tensor(z), m, atol=1e-6) for m in means) for z in z0)
