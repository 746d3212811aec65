"""The latent explorer on a trained run: decode latency (API and in the browser), a burst of
concurrent decode requests, and the README's screenshots (desktop, 1280 px wide, and phone,
390 px). Not a test; the browser part needs Playwright and Chromium (as the browser tests do);
--no-browser skips it.

    python benchmarks/explorer.py runs/mnist --screenshot docs/explorer.png \
        --phone-screenshot docs/explorer-phone.png --out runs/explorer.json
    python benchmarks/explorer.py runs/mnist --no-browser --concurrent 200 --bursts 5
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
from collections import Counter
from pathlib import Path

import torch
from common import commit, hardware

from vaekit import checkpoint
from vaekit.data import load_split
from vaekit.explorer import Explorer, make_server, url_of

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


def burst(server, dim: int, clients: int) -> tuple[list[float], Counter]:
    """`clients` threads, released at once, each POST /api/decode of one random code on its own
    connection: (latencies in ms of those answered 200, {failure: count} of the rest)."""
    host, port = server.server_address[:2]
    bodies = [json.dumps({"z": torch.randn(1, dim).tolist()}) for _ in range(clients)]
    go = threading.Barrier(clients)
    results = [None] * clients

    def one(i: int) -> None:
        go.wait()
        t0 = time.perf_counter()
        try:
            conn = http.client.HTTPConnection(host, port, timeout=60)
            conn.request("POST", "/api/decode", body=bodies[i])
            r = conn.getresponse()
            r.read()
            conn.close()
            outcome = r.status
        except OSError as e:
            outcome = type(e).__name__
        results[i] = (outcome, 1000 * (time.perf_counter() - t0))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [ms for outcome, ms in results if outcome == 200]
    return ok, Counter(str(outcome) for outcome, _ in results if outcome != 200)


def concurrent(server, dim: int, clients: int, bursts: int) -> dict:
    """Served count, and median and p99 latency over all bursts' answered requests."""
    ms, failed, served = [], Counter(), []
    for _ in range(bursts):
        ok, bad = burst(server, dim, clients)
        ms += ok
        failed += bad
        served.append(len(ok))
        time.sleep(0.5)  # let the last burst's connections close
    q = statistics.quantiles(ms, n=100) if len(ms) > 1 else ms * 99
    return {
        "clients": clients,
        "bursts": bursts,
        "served_per_burst": served,
        "served": sum(served),
        "requests": clients * bursts,
        "failed": dict(failed),
        "median_ms": statistics.median(ms) if ms else None,
        "p99_ms": q[98] if ms else None,
        "max_ms": max(ms) if ms else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--n", type=int, default=200, help="decodes to time [200]")
    ap.add_argument("--concurrent", type=int, default=200, help="clients per burst (0: none) [200]")
    ap.add_argument("--bursts", type=int, default=3, help="bursts of concurrent clients [3]")
    ap.add_argument("--no-browser", action="store_true", help="skip the headless Chromium part")
    ap.add_argument("--screenshot", type=Path, help="write a full-page PNG (1280 px) here")
    ap.add_argument("--phone-screenshot", type=Path, help="and one at a phone's 390x844 here")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument("--chromium", default=os.environ.get("VAEKIT_CHROMIUM") or "chromium")
    args = ap.parse_args()

    ckpt = checkpoint.load(args.run_dir)
    model = checkpoint.build_model(ckpt, args.run_dir).eval()
    dataset = ckpt["train_config"]["dataset"]
    x, y = load_split(dataset, "test")
    t0 = time.perf_counter()
    explorer = Explorer(model, model.likelihood.prepare_eval(x), y, dataset)
    startup = time.perf_counter() - t0
    server = make_server(explorer, "127.0.0.1", 0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dim = model.top_dim
    api_latency(server, dim, 20)  # warm up
    res = {
        "run": str(args.run_dir),
        "dataset": dataset,
        "latent_dim": dim,
        "startup_s": round(startup, 2),
        "api_decode": api_latency(server, dim, args.n),
    }
    if args.concurrent:
        res["concurrent_decode"] = concurrent(server, dim, args.concurrent, args.bursts)
    if not args.no_browser:
        browser_part(server, dim, args, res)
    server.shutdown()
    res.update(date=time.strftime("%Y-%m-%d"), commit=commit(), hardware=hardware("cpu"))
    print(json.dumps(res, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")


def browser_part(server, dim: int, args, res: dict) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = shutil.which(args.chromium) or args.chromium
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url_of(server))
        page.wait_for_selector("body[data-ready='1']")
        res["browser_decode"] = summary(page.evaluate(BROWSER_LOOP, [args.n, dim]))
        page.close()
        shots = {"screenshot": (args.screenshot, 1280, 1000), "phone_screenshot": (
            args.phone_screenshot, 390, 844)}  # fmt: skip
        for key, (path, width, height) in shots.items():
            if path:
                page = browser.new_page(viewport={"width": width, "height": height})
                screenshot(page, url_of(server), path, full_page=width > 390)
                page.close()
                res[key] = str(path)
        browser.close()


def screenshot(page, url: str, path: Path, full_page: bool) -> None:
    """A PNG of the explorer in use: test image 0 encoded, an interpolation strip, a traversal
    grid, and the map's hover preview of a point; the full page, or the window scrolled to the
    map (under the status line, which stays at the top)."""
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    page.fill("#index", "0")
    page.press("#index", "Enter")
    page.wait_for_selector("#encoded:not([hidden])")
    page.fill("#interp-a", "3")
    page.fill("#interp-b", "2")
    page.click("#interp-go")
    page.wait_for_function("() => document.querySelectorAll('#strip img').length > 0")
    page.click("#traverse-go")
    page.wait_for_function("() => document.getElementById('grid').dataset.n")
    # Hover the test image 7's point: its preview (image, label, score) shows beside it.
    top = "0" if full_page else "document.getElementById('map-section').offsetTop - 70"
    page.evaluate(f"() => window.scrollTo(0, {top})")
    x, y = page.evaluate(
        "() => { const r = document.getElementById('map').getBoundingClientRect(), "
        "s = r.width / document.getElementById('map').width, "
        "[px, py] = mapFrame().toPx(points()[7]); return [r.left + px * s, r.top + py * s]; }"
    )
    page.mouse.move(x, y)
    page.wait_for_selector("#tip-img:not([hidden])")
    page.wait_for_timeout(300)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)


if __name__ == "__main__":
    main()
