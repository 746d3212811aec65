"""The explorer's page in headless Chromium (Playwright), at a desktop's 1280x1000 and a phone's
390x844: layout, the map (hover, drag, zoom, keys, legend), uploads in the wrong polarity,
errors beside their controls, sliders, axes, downloads and the state in the URL; a VQ-VAE's code
grid, edited cell by cell. One server on the tiny run and the real MNIST test set for the module
(and one per test for the other models); a fresh page per test."""

from __future__ import annotations

import base64
import contextlib
import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from vaekit import checkpoint
from vaekit.data import load_split
from vaekit.explorer import Explorer, make_server
from vaekit.priors.pixelcnn import PixelCNN

from .browser import DESKTOP, PHONE, launch, open_page, src, wait_changed

VIEWPORTS = pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])


@pytest.fixture(scope="module")
def served(tiny_run, data_root):
    """(explorer, server): the tiny run's model on the first 2000 MNIST test images."""
    model = checkpoint.build_model(checkpoint.load(tiny_run)).eval()
    x, y = load_split("mnist", "test", data_root)
    explorer = Explorer(model, x[:2000], y[:2000], "mnist")
    server = make_server(explorer, "127.0.0.1", 0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield explorer, server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    yield from launch()


def js_z(page) -> np.ndarray:
    return np.array(page.evaluate("() => z"))


def point_xy(page, k: int) -> tuple[float, float]:
    """Where map point k (a row of the current projection) is on the page, in CSS px."""
    page.locator("#map").scroll_into_view_if_needed()
    return page.evaluate(
        """k => { const c = document.getElementById("map"), r = c.getBoundingClientRect();
        const [px, py] = mapFrame().toPx(points()[k]), s = r.width / c.width;
        return [r.left + px * s, r.top + py * s]; }""",
        k,
    )


def map_xy(page, px: float, py: float) -> tuple[float, float]:
    """Canvas pixel (px, py) of the map -> page CSS px."""
    return page.evaluate(
        """([px, py]) => { const c = document.getElementById("map"), r = c.getBoundingClientRect();
        const s = r.width / c.width; return [r.left + px * s, r.top + py * s]; }""",
        [px, py],
    )


def enlarged(explorer: Explorer, i: int) -> np.ndarray:
    """Test image i at 84x84 (uint8, white on black as MNIST draws it), as a photo would be."""
    return np.asarray(Image.fromarray(explorer.x[i, 0].numpy()).resize((84, 84)))


def data_url(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@VIEWPORTS
def test_layout_fits_the_width_and_shows_no_broken_image(browser, served, viewport):
    with open_page(browser, served[1], viewport) as page:
        assert page.evaluate("() => document.scrollingElement.scrollWidth <= innerWidth")
        broken = page.evaluate(
            """() => [...document.images].filter((i) => i.checkVisibility()
                && !(i.complete && i.naturalWidth > 0)).map((i) => i.id || i.alt)"""
        )
        assert broken == []  # #encoded is [hidden] until something is encoded: not displayed
        assert page.eval_on_selector("#encoded", "e => getComputedStyle(e).display") == "none"
        box = {s: page.locator(s).bounding_box() for s in ("#viewer", "#latents", "#map-section")}
        if viewport is PHONE:  # one column: the map at full width, right below the image
            main = page.locator("main").bounding_box()
            assert box["#map-section"]["width"] > main["width"] - 30
            assert box["#viewer"]["y"] < box["#map-section"]["y"] < box["#latents"]["y"]
            assert page.locator("#map").bounding_box()["width"] > 300
        else:  # three columns side by side
            assert box["#viewer"]["x"] < box["#latents"]["x"] < box["#map-section"]["x"]
            assert box["#viewer"]["y"] == box["#latents"]["y"] == box["#map-section"]["y"]
        # After an interpolation and a traversal grid the page is still no wider than the screen.
        page.click("#interp-go")
        page.wait_for_function("() => document.querySelectorAll('#strip img').length === 10")
        page.click("#traverse-go")
        page.wait_for_function("() => document.getElementById('grid').dataset.n === '9'")
        assert page.evaluate("() => document.scrollingElement.scrollWidth <= innerWidth")


@VIEWPORTS
def test_hover_shows_the_nearest_points_preview(browser, served, viewport):
    explorer, server = served
    with open_page(browser, server, viewport) as page:
        page.select_option("#map-method", "kl")
        assert page.is_hidden("#tooltip")
        x, y = point_xy(page, 7)
        page.mouse.move(x + 1, y)
        page.wait_for_selector("#tip-img:not([hidden])")
        tip = page.locator("[role=tooltip]")
        assert tip.is_visible()
        k = page.evaluate("() => +document.getElementById('tooltip').dataset.index")
        text = tip.text_content()  # the point under the pointer: its index, label and score
        assert text.startswith(f"test #{k} · label {int(explorer.y[k])} · ")
        assert text.endswith("bits/dim")
        assert page.evaluate("() => document.getElementById('tip-img').naturalWidth") == 28
        near = explorer.mu[k, explorer.order[:2]] - explorer.mu[7, explorer.order[:2]]
        assert float(near.abs().max()) < 0.2  # k is 7 or a point drawn on top of it
        page.mouse.move(*map_xy(page, -50, -50))  # off the map: the preview goes
        page.wait_for_selector("#tooltip", state="hidden")


@VIEWPORTS
def test_a_black_on_white_upload_is_inverted_and_the_box_re_encodes(
    browser, served, viewport, tmp_path
):
    explorer, server = served
    path = tmp_path / "pen.png"
    Image.fromarray(255 - enlarged(explorer, 5)).save(path)  # black on white, as a pen draws
    want = np.array(explorer.encode({"image": data_url(enlarged(explorer, 5))})["mu"])
    with open_page(browser, server, viewport) as page:
        page.set_input_files("#upload", str(path))
        page.wait_for_selector("#upload-note:not([hidden])")
        assert "inverted before encoding" in page.text_content("#upload-note")
        assert page.is_checked("#invert")
        assert page.text_content("#input-caption").startswith("pen.png · inverted automatically")
        np.testing.assert_allclose(js_z(page), want, atol=0.05)  # the white-on-black digit's
        assert page.is_hidden("#ood-note")
        # Untick "invert": the same file encodes as it is, out of distribution, and says so.
        page.uncheck("#invert")
        page.wait_for_selector("#ood-note:not([hidden])")
        assert page.text_content("#input-caption").startswith("pen.png · as uploaded")
        assert page.text_content("#ood-note").startswith("Out of distribution: ")
        assert "out of distribution" in page.text_content("#status")
        assert np.abs(js_z(page) - want).max() > 0.05
        # Choosing the same file again encodes it again (its polarity judged afresh).
        page.set_input_files("#upload", str(path))
        page.wait_for_selector("#ood-note", state="hidden")
        assert page.text_content("#input-caption").startswith("pen.png · inverted automatically")
        np.testing.assert_allclose(js_z(page), want, atol=0.05)


def status_in_view(page) -> bool:
    return page.evaluate(
        """() => { const r = document.getElementById("status").getBoundingClientRect();
        return r.top >= 0 && r.bottom <= innerHeight; }"""
    )


@VIEWPORTS
def test_errors_appear_beside_their_control_and_in_the_sticky_status(
    browser, served, viewport, tmp_path
):
    with open_page(browser, served[1], viewport) as page:
        # steps = 1 would divide by zero: refused before any request, beside the field.
        page.fill("#steps", "1")
        page.click("#traverse-go")
        error = page.locator("#steps-error")
        assert error.is_visible() and "between 2 and 21, got 1" in error.text_content()
        assert page.evaluate(  # right after the field's label
            "() => document.getElementById('steps-error').previousElementSibling.contains("
            "document.getElementById('steps'))"
        )
        assert page.get_attribute("#steps", "aria-invalid") == "true"
        assert page.eval_on_selector("#grid", "c => c.dataset.n") is None  # nothing drawn
        assert "Error: " in page.text_content("#status") and status_in_view(page)
        page.fill("#steps", "3")  # fixed: the error goes as soon as the value is valid
        assert page.is_hidden("#steps-error")
        # min and max of every number field are enforced; Enter in the index field encodes.
        for field, bad in [("#index", "-1"), ("#index", "2000"), ("#interp-steps", "40"),
                           ("#span", "0"), ("#index", "2.5")]:  # fmt: skip
            page.fill(field, bad)
            assert page.locator(f"{field}-error").is_visible(), (field, bad)
        page.fill("#index", "2000")
        page.press("#index", "Enter")
        assert "between 0 and 1999, got 2000" in page.text_content("#index-error")
        assert page.is_hidden("#encoded")
        page.fill("#index", "12")
        page.press("#index", "Enter")
        page.wait_for_selector("#encoded:not([hidden])")
        assert page.text_content("#input-caption").startswith("test #12")
        # The server's refusal of a file that is no image shows beside the upload field.
        bad = tmp_path / "notes.png"
        bad.write_bytes(b"not an image at all")
        page.set_input_files("#upload", str(bad))
        page.wait_for_selector("#upload-error:not([hidden])")
        assert "not a readable" in page.text_content("#upload-error")
        page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        assert status_in_view(page) and "not a readable" in page.text_content("#status")


def test_the_url_keeps_the_state_and_restores_it(browser, served):
    explorer, server = served
    with open_page(browser, server) as page:
        page.select_option("#map-method", "kl")
        page.fill("#index", "12")
        page.press("#index", "Enter")
        page.wait_for_function("() => location.hash.includes('i=12')")
        loaded = page.evaluate("() => location.hash")
        page.locator("#sliders input").nth(1).fill("1.5")  # an edit: no longer test image 12
        page.wait_for_function(
            "() => !location.hash.includes('i=') && location.hash.includes('z=')"
        )
        edited, z = page.evaluate("() => location.hash"), js_z(page)
    assert "view=kl" in loaded and "view=kl" in edited
    with open_page(browser, server, hash=edited) as page:
        np.testing.assert_allclose(js_z(page), z, atol=1e-4)
        assert page.input_value("#map-method") == "kl"
        assert page.eval_on_selector_all("#sliders input", "es => es.map(e => +e.value)")[1] == 1.5
    with open_page(browser, server, hash=loaded) as page:
        page.wait_for_selector("#encoded:not([hidden])")
        assert page.input_value("#index") == "12"
        assert page.text_content("#input-caption").startswith("test #12")
        np.testing.assert_allclose(js_z(page), explorer.mu[12].numpy(), atol=1e-5)
    with open_page(browser, server, hash="#z=1,2") as page:  # a code of the wrong size
        assert "this model has 4 latent dims: ignored" in page.text_content("#status")
        assert (js_z(page) == 0).all()


@VIEWPORTS
def test_dragging_on_the_top_kl_map_sets_those_two_dims(browser, served, viewport):
    explorer, server = served
    i, j = explorer.order[:2]
    with open_page(browser, server, viewport) as page:
        page.select_option("#map-method", "kl")
        before = src(page, "#decoded")
        page.locator("#map").scroll_into_view_if_needed()
        start, end = map_xy(page, 100, 100), map_xy(page, 160, 220)
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(*end, steps=5)
        page.mouse.up()
        z = js_z(page)
        want = page.evaluate("() => mapFrame().fromPx([160, 220])")
        np.testing.assert_allclose(z[[i, j]], want, atol=0.05)  # the pointer's place, in z
        assert all(z[d] == 0 for d in range(4) if d not in (i, j))  # the other dims kept
        ring = page.evaluate("() => mapFrame().toPx(project(z))")
        np.testing.assert_allclose(ring, [160, 220], atol=3)  # the ring follows the code
        assert page.text_content("#z-caption").startswith("set on the map: ")
        wait_changed(page, "#decoded", before)  # decoded live


def test_dragging_on_the_pca_map_inverts_the_projection(browser, served):
    explorer, server = served
    with open_page(browser, server) as page:
        assert page.input_value("#map-method") == "pca"
        page.locator("#map").scroll_into_view_if_needed()
        page.mouse.move(*map_xy(page, 200, 200))
        page.mouse.down()
        page.mouse.move(*map_xy(page, 90, 300), steps=4)
        page.mouse.up()
        u, v = page.evaluate("() => mapFrame().fromPx([90, 300])")
        m = explorer.map
        want = np.array(m["pca_center"]) + u * np.array(m["pca_components"][0])
        want += v * np.array(m["pca_components"][1])
        np.testing.assert_allclose(js_z(page), want, atol=0.02)  # z = mean + [u v] @ components
        np.testing.assert_allclose(
            page.evaluate("() => mapFrame().toPx(project(z))"), [90, 300], atol=2
        )


def test_map_zoom_keys_legend_pick_and_a_click_on_nothing(browser, served):
    explorer, server = served
    with open_page(browser, server) as page:
        page.select_option("#map-method", "kl")
        # A click far from every point says so.
        page.locator("#map").scroll_into_view_if_needed()
        corner = page.evaluate("""() => { const {pts, toPx} = mapFrame();
            const far = ([x, y]) => pts.every((p) => {
              const [px, py] = toPx(p); return Math.hypot(px - x, py - y) > 20; });
            for (let x = 5; x < 400; x += 10) for (let y = 5; y < 400; y += 10)
              if (far([x, y])) return [x, y]; return null; }""")
        assert corner is not None
        page.mouse.click(*map_xy(page, *corner))
        assert page.text_content("#map-msg").startswith("No test image within 12 px")
        # The wheel zooms about the pointer; Reset view undoes it.
        x, y = point_xy(page, 3)
        page.mouse.move(x, y)
        page.mouse.wheel(0, -400)
        page.wait_for_function("() => view.k > 1.5")
        x2, y2 = point_xy(page, 3)
        assert abs(x2 - x) < 2 and abs(y2 - y) < 2  # the point under the pointer stays put
        page.click("#zoom-reset")
        assert page.evaluate("() => view") == {"k": 1, "tx": 0, "ty": 0}
        # Drag pans when "drag" says so.
        page.select_option("#drag-mode", "pan")
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 40, y + 10, steps=4)
        page.mouse.up()
        tx, ty = page.evaluate("() => [view.tx, view.ty]")
        assert tx > 30 and ty > 5 and (js_z(page) == 0).all()
        # Keys: focus, arrows move between points (with their preview), Enter loads one.
        page.focus("#map")
        page.keyboard.press("ArrowRight")
        first = page.evaluate("() => cursor")
        page.keyboard.press("ArrowRight")
        k = page.evaluate("() => cursor")
        assert first >= 0 and k >= 0 and k != first and page.is_visible("#tooltip")
        assert page.text_content("#map-msg").startswith(f"point: test #{k}")
        page.keyboard.press("Enter")
        page.wait_for_function(f"() => loaded === {k}")
        np.testing.assert_allclose(js_z(page), explorer.mu[k].numpy(), atol=1e-5)
        # The legend isolates a class; "next image of this label" walks through that class.
        page.click("#legend button[data-label='3']")
        assert page.get_attribute("#legend button[data-label='3']", "aria-pressed") == "true"
        assert page.evaluate("() => shown(0) === (map.labels[0] === 3)")
        page.select_option("#pick-label", "3")
        for _ in range(2):
            page.click("#pick-go")
            page.wait_for_function("() => loaded !== null && map.labels[loaded] === 3")
            assert page.text_content("#input-caption").startswith("test #")
        page.click("#legend button[data-label='3']")  # again: every class
        assert page.evaluate("() => isolated") is None


def test_sliders_cover_the_codes_and_say_what_they_hide(browser, served):
    explorer, server = served
    far = int(explorer.mu.abs().amax(1).argmax())  # the test image with the largest |code|
    with open_page(browser, server) as page:
        lim = page.eval_on_selector("#sliders input", "e => +e.max")
        assert lim >= float(explorer.mu.abs().max())  # every test image's code fits
        rows = page.eval_on_selector_all(".slider", "rs => rs.map(r => r.textContent)")
        assert all(
            r.startswith(f"z{d}") and " nats" in r
            for r, d in zip(rows, explorer.order, strict=True)
        )
        page.fill("#index", str(far))
        page.press("#index", "Enter")
        page.wait_for_function(f"() => loaded === {far}")
        values = page.eval_on_selector_all("#sliders input", "es => es.map(e => +e.value)")
        np.testing.assert_allclose(values, explorer.mu[far, explorer.order].numpy(), atol=0.01)
        # A list too short for every slider says how many it hides, until scrolled to them.
        assert page.is_hidden("#sliders-more")
        page.evaluate("""() => { const b = document.getElementById("sliders");
            b.style.maxHeight = "40px"; b.dispatchEvent(new Event("scroll")); }""")
        assert page.text_content("#sliders-more").endswith("more dims below: scroll the list")
        page.evaluate("""() => { const b = document.getElementById("sliders");
            b.scrollTop = b.scrollHeight; b.dispatchEvent(new Event("scroll")); }""")
        page.wait_for_selector("#sliders-more", state="hidden")


def test_strip_and_grid_have_axes_mark_the_current_code_and_download(browser, served, tmp_path):
    explorer, server = served
    with open_page(browser, server) as page:
        page.select_option("#map-method", "kl")
        for k in (4, 9):  # shift-clicks choose the endpoints: from, then to
            x, y = point_xy(page, k)
            page.keyboard.down("Shift")
            page.mouse.click(x, y)
            page.keyboard.up("Shift")
        a, b = int(page.input_value("#interp-a")), int(page.input_value("#interp-b"))
        near = lambda i, k: float((explorer.mu[i] - explorer.mu[k])[explorer.order[:2]].abs().max())  # noqa: E731
        assert near(a, 4) < 0.2 and near(b, 9) < 0.2
        page.fill("#interp-steps", "5")
        page.click("#interp-go")
        page.wait_for_function("() => document.querySelectorAll('#strip img').length === 5")
        assert page.text_content("#strip-axis").startswith(f"t = 0: test #{a}")
        captions = page.eval_on_selector_all(
            "#strip figcaption", "cs => cs.map(c => c.textContent)"
        )
        assert captions == ["t 0.00", "t 0.25", "t 0.50", "t 0.75", "t 1.00"]
        page.click("#strip figure:nth-child(3)")
        assert page.eval_on_selector_all("#strip figure.current", "fs => fs.length") == 1
        assert "current" in page.get_attribute("#strip figure:nth-child(3)", "class")
        page.fill("#steps", "5")
        page.click("#traverse-go")
        page.wait_for_function("() => document.getElementById('grid').dataset.n === '5'")
        assert page.eval_on_selector("#grid", "c => c.dataset.current") == "12"  # the centre
        page.locator("#grid").scroll_into_view_if_needed()
        box = page.locator("#grid").bounding_box()
        size = page.eval_on_selector("#grid", "c => [c.width, c.height]")
        s = box["width"] / size[0]
        page.mouse.click(box["x"] + (62 + 56 * 4.5) * s, box["y"] + (36 + 56 * 0.5) * s)
        assert page.eval_on_selector("#grid", "c => c.dataset.current") == "4"  # row 0, col 4
        # The axes are drawn on the grid: pixels in its top and left margins are not blank.
        ink = page.evaluate("""() => { const c = document.getElementById("grid");
            const d = c.getContext("2d").getImageData(0, 0, 62, c.height).data;
            let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] < 128; return n; }""")
        assert ink > 50
        files = [("#download-decoded", "vaekit-decoded.png", 252),
                 ("#download-grid", "vaekit-traversal.png", size[0])]  # fmt: skip
        for button, name, width in files:
            with page.expect_download() as d:
                page.click(button)
            assert d.value.suggested_filename == name
            path = tmp_path / name
            d.value.save_as(path)
            assert Image.open(path).format == "PNG" and Image.open(path).size[0] == width


def test_a_conditional_models_class_picker_decodes_the_code_as_that_class(
    browser, tiny_cvae_run, data_root
):
    import vaekit

    x, y = load_split("mnist", "test", data_root)
    explorer = Explorer(vaekit.load(tiny_cvae_run), x[:300], y[:300], "mnist", log=lambda *a: 0)
    server = make_server(explorer, "127.0.0.1", 0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with open_page(browser, server) as page:
            assert page.is_visible("#label-row")
            assert page.eval_on_selector_all("#label option", "os => os.length") == 10
            before = src(page, "#decoded")
            page.select_option("#label", "3")
            after = wait_changed(page, "#decoded", before)
            z = [js_z(page).tolist()]
            assert after == explorer.decode({"z": z, "label": 3})["images"][0]
            page.fill("#index", "0")  # test image 0, a 7: encoded with its own label
            page.click("#encode")
            page.wait_for_function("() => document.getElementById('label').value === '7'")
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serving(explorer: Explorer):
    """A server on a free port for explorer, for the length of a with block."""
    server = make_server(explorer, "127.0.0.1", 0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def grid_cells(page) -> list[int]:
    return page.eval_on_selector_all("#code-grid button", "bs => bs.map((b) => +b.textContent)")


def test_a_vqvae_shows_the_code_grid_of_a_test_image_and_decodes_an_edited_cell(
    browser, tiny_vq_run, data_root
):
    x, y = load_split("mnist", "test", data_root)
    explorer = Explorer(vaekit.load(tiny_vq_run), x[:300], y[:300], "mnist")
    with serving(explorer) as server, open_page(browser, server) as page:
        for view in ("#latents", "#map-section", "#interp", "#traverse"):  # views of a z
            assert page.is_hidden(view)
        assert page.is_disabled("#random")  # no prior over the codes: said, not sampled
        assert "`vaekit prior RUN --kind pixelcnn`" in page.text_content("#sample-note")
        page.fill("#index", "5")
        page.click("#encode")
        want = explorer.encode({"index": 5})
        page.wait_for_function("s => $('decoded').src === s", arg=want["image"])
        assert grid_cells(page) == sum(want["codes"], [])  # 7x7, row by row
        assert src(page, "#recon-img") == want["image"] and src(page, "#input-img") == want["input"]
        before = src(page, "#decoded")
        edited = [row[:] for row in want["codes"]]
        c = explorer.model.quantizer.codebook
        edited[2][3] = int((c - c[edited[2][3]]).norm(dim=1).argmax())  # the farthest code
        page.click("#code-grid button >> nth=17")  # row 3, column 4
        assert page.input_value("#code-value") == str(want["codes"][2][3])
        page.fill("#code-value", str(edited[2][3]))
        after = wait_changed(page, "#decoded", before)
        assert after == explorer.decode({"codes": [edited]})["images"][0]
        assert grid_cells(page) == sum(edited, [])
        marked = page.eval_on_selector_all("#code-grid .edited", "bs => bs.map((b) => b.ariaLabel)")
        assert marked == [f"row 3, column 4: code {edited[2][3]}"]
        assert page.is_visible("#encoded-stale")
        page.fill("#code-value", "8")  # out of range: said beside the field, nothing decoded
        assert "must be between 0 and 7, got 8" in page.text_content("#code-value-error")
        assert src(page, "#decoded") == after and grid_cells(page) == sum(edited, [])


def test_a_vqvae_with_a_prior_samples_code_grids(browser, tiny_vq_run, data_root):
    x, y = load_split("mnist", "test", data_root)
    model = vaekit.load(tiny_vq_run)
    torch.manual_seed(0)
    model.set_prior(PixelCNN(8, (7, 7), channels=4, layers=2).eval())
    explorer = Explorer(model, x[:100], y[:100], "mnist")
    with serving(explorer) as server, open_page(browser, server) as page:
        assert page.is_enabled("#random") and page.is_hidden("#sample-note")
        page.click("#random")
        page.wait_for_function("() => $('status').textContent.startsWith('a sample')")
        codes = page.evaluate("() => codes")
        assert grid_cells(page) == sum(codes, [])
        want = explorer.decode({"codes": [codes]})["images"][0]
        page.wait_for_function("s => $('decoded').src === s", arg=want)
