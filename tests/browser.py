"""Headless Chromium driven by Playwright, for the explorer's browser tests (shared by
tests/test_explore.py and tests/test_explorer_browser.py): launching it, opening the page and
waiting for it, and the checks every page gets (no request off the server, no page error)."""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest

from vaekit.explorer import url_of

CHROMIUM_FLAGS = [  # root in a container, no GPU, and no calls home on this closed network
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 1000}
PHONE = {"width": 390, "height": 844}


def find_chromium() -> str | None:
    """$VAEKIT_CHROMIUM, else chromium on PATH (Debian's package puts it at /usr/bin/chromium)."""
    return (
        os.environ.get("VAEKIT_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


def launch():
    """Yield a launched headless Chromium (for a module-scoped fixture); skip when Playwright or
    Chromium is missing, except under CI (CI=true), where that fails."""
    chromium = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium, why = None, "the playwright package is not installed (pip install -e .[dev])"
    else:
        why = "no Chromium found: install Debian's chromium package or set VAEKIT_CHROMIUM"
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail(why + " (CI requires the browser tests)")
        pytest.skip(why)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@contextlib.contextmanager
def open_page(browser, server, viewport: dict = DESKTOP, hash: str = ""):
    """A fresh page on the explorer at `viewport` (URL hash `hash`), loaded and ready; fails
    the test on any request that leaves the server or on a page error."""
    base = url_of(server)
    page = browser.new_page(viewport=viewport)
    outside, errors = [], []
    page.on(
        "request", lambda r: None if r.url.startswith((base, "data:")) else outside.append(r.url)
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base + hash)
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    page.wait_for_function("() => document.getElementById('decoded').src.startsWith('data:')")
    yield page
    page.close()
    assert not outside, f"the page requested outside the server: {outside}"
    assert not errors, errors


def src(page, selector: str) -> str:
    return page.eval_on_selector(selector, "e => e.src")


def wait_changed(page, selector: str, old: str) -> str:
    page.wait_for_function(
        "([s, old]) => document.querySelector(s).src !== old", arg=[selector, old], timeout=10_000
    )
    return src(page, selector)
