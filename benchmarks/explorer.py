"""The latent explorer on a trained run: decode latency (API and in the browser) and the
README's screenshot. Not a test; needs Playwright and Chromium (as the browser tests do).

    python benchmarks/explorer.py runs/mnist --screenshot docs/explorer.png --out runs/explorer.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import threading
import time
from pathlib import Path

import torch
from common import commit, hardware

from vaekit import checkpoint
from vaekit.data import load_split, modelled
from vaekit.explore import Explorer, make_server, url_of

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

# In the page: n decodes of a random code, one at a time, as a slider drag makes them.
BROWSER_LOOP = """async ([n, d]) => {
  const times = [];
  for (let i = 0; i < n; i++) {
    const z = [Array.from({length: d}, () => 2 * Math.random() - 1)];
    const t0 = performance.now();
    const r = await fetch("/api/decode", {method: "POST", body: JSON.stringify({z})});
    const img = new Image();
    img.src = (await r.json()).images[0];
    await img.decode();
    times.push(performance.now() - t0);
  }
  return times;
}"""


def summary(ms: list[float]) -> dict:
    q = statistics.quantiles(ms, n=20)
    return {"n": len(ms), "median_ms": statistics.median(ms), "p95_ms": q[18], "max_ms": max(ms)}


def api_latency(server, dim: int, n: int) -> dict:
    """Round trips of POST /api/decode with one random code, from Python over loopback."""
    host, port = server.server_address[:2]
    ms = []
    for _ in range(n):
        body = json.dumps({"z": torch.randn(1, dim).tolist()})
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(host, port)
        conn.request("POST", "/api/decode", body=body)
        assert conn.getresponse().read()
        conn.close()
        ms.append(1000 * (time.perf_counter() - t0))
    return summary(ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--n", type=int, default=200, help="decodes to time [200]")
    ap.add_argument("--screenshot", type=Path, help="write a full-page PNG here")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument("--chromium", default=os.environ.get("VAEKIT_CHROMIUM") or "chromium")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    ckpt = checkpoint.load(args.run_dir)
    model = checkpoint.build_model(ckpt, args.run_dir).eval()
    dataset = ckpt["train_config"]["dataset"]
    x, y = load_split(dataset, "test")
    t0 = time.perf_counter()
    explorer = Explorer(model, modelled(x, model.cfg.likelihood), y, dataset)
    startup = time.perf_counter() - t0
    server = make_server(explorer, "127.0.0.1", 0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dim = model.cfg.latent_dim
    api_latency(server, dim, 20)  # warm up
    res = {
        "run": str(args.run_dir),
        "dataset": dataset,
        "latent_dim": dim,
        "startup_s": round(startup, 2),
        "api_decode": api_latency(server, dim, args.n),
    }
    with sync_playwright() as p:
        chromium = shutil.which(args.chromium) or args.chromium
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url_of(server))
        page.wait_for_selector("body[data-ready='1']")
        res["browser_decode"] = summary(page.evaluate(BROWSER_LOOP, [args.n, dim]))
        if args.screenshot:
            page.fill("#index", "0")
            page.click("#encode")
            page.wait_for_selector("#encoded:not([hidden])")
            page.fill("#interp-a", "3")
            page.fill("#interp-b", "2")
            page.click("#interp-go")
            page.wait_for_function("() => document.querySelectorAll('#strip img').length > 0")
            page.click("#traverse-go")
            page.wait_for_function("() => document.getElementById('grid').dataset.n")
            page.wait_for_timeout(300)
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.screenshot), full_page=True)
            res["screenshot"] = str(args.screenshot)
        browser.close()
    server.shutdown()
    res.update(date=time.strftime("%Y-%m-%d"), commit=commit(), hardware=hardware("cpu"))
    print(json.dumps(res, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
