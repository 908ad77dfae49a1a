"""The live toolbox end to end in a real browser: Playwright driving Debian's Chromium.

The server runs in a thread of this process (uvicorn on a free loopback port)
with the session's Lite0; Chromium is headless with a fake webcam. Screenshots
go to ``artifacts/`` (gitignored). Chromium is part of the project's set-up
(`make browser`), so a missing binary fails these tests instead of skipping them.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.chromium import browser_session

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
TIMEOUT = 30_000  # ms, generous: the machine is shared


@pytest.fixture(scope="module")
def server_url(lite0, sample_photos, tmp_path_factory):
    import torch
    import uvicorn

    from neuronscope.data.scan import run_topk
    from neuronscope.viewer.server import create_app

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Chromium runs on the same two cores
    store = tmp_path_factory.mktemp("topk") / "store"  # a small real top-k store for the top-9 pane
    run_topk(lite0, [str(p) for p in sample_photos.values()], ["blocks.4.dw_act"], k=9, store=store, size=128, progress=False)
    inputs = tmp_path_factory.mktemp("inputs")  # a folder of input images to step through
    for name in ("astronaut", "chelsea", "coffee"):
        Image.open(sample_photos[name]).convert("RGB").save(inputs / f"{name}.jpg", "JPEG", quality=90)
    app = create_app(lite0, store=store, cache_dir=tmp_path_factory.mktemp("synth"), synth_steps=4, synth_size=64,
                     inputs=inputs, pattern_size=32, pattern_steps=3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def browser():
    yield from browser_session(webcam=True)


@pytest.fixture
def page(browser, server_url):
    ARTIFACTS.mkdir(exist_ok=True)
    p = browser.new_page(viewport={"width": 1400, "height": 900})
    p.set_default_timeout(TIMEOUT)
    errors = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.goto(server_url)
    p.wait_for_function("window.neuronscope && window.neuronscope.info !== null && document.querySelector('.dot.on')")
    yield p
    p.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


@pytest.fixture(scope="module")
def photo_files(sample_photos, tmp_path_factory):
    d = tmp_path_factory.mktemp("uploads")
    out = {}
    for name in ("coffee", "chelsea"):
        p = d / f"{name}.jpg"
        Image.open(sample_photos[name]).convert("RGB").save(p, "JPEG", quality=90)
        out[name] = p
    good = out["coffee"].read_bytes()
    (d / "broken.jpg").write_bytes(good[: len(good) // 4])  # a JPEG cut off mid-file
    (d / "notes.jpg").write_bytes(b"these are notes, not a photo\n" * 20)
    out["broken"], out["notes"] = d / "broken.jpg", d / "notes.jpg"
    return out


def results(page) -> int:
    return page.evaluate("window.neuronscope.stats.results")


def upload(page, path: Path) -> None:
    before = results(page)
    page.set_input_files("#file-input", str(path))
    page.wait_for_function(f"window.neuronscope.stats.results > {before}")


def natural_width(page, selector: str) -> int:
    return page.eval_on_selector(selector, "img => img.complete ? img.naturalWidth : 0")


def test_uploading_a_photo_shows_the_layer_grid_and_top5(page, photo_files):
    upload(page, photo_files["coffee"])
    page.wait_for_function("document.querySelectorAll('#top5 li').length === 5")
    assert "espresso" in page.inner_text("#top5 li:first-child")
    page.wait_for_function("document.getElementById('grid-img').naturalWidth > 0")
    assert "blocks.4.dw_act" in page.inner_text("#layer-caption")  # a rectified layer, each channel to its own range
    assert "240 channels" in page.inner_text("#grid-caption") and "own range" in page.inner_text("#grid-caption")
    assert natural_width(page, "#input-img") == 224
    assert "coffee.jpg" in page.inner_text("#input-caption")
    page.screenshot(path=str(ARTIFACTS / "viewer_upload.png"))


def test_switching_layers_redraws_the_grid_from_the_list_and_the_keys(page, photo_files):
    upload(page, photo_files["chelsea"])
    curated = page.eval_on_selector_all("#layer-select option", "os => os.map(o => o.value)")
    assert curated[0] == "stem.act" and curated[-1] == "logits" and len(curated) == 19  # one rectified layer per block
    page.check("#all-layers")  # every layer, behind the toggle
    assert page.locator("#layer-select option").count() == len(page.evaluate("window.neuronscope.info.layers"))
    page.select_option("#layer-select", "head")
    page.wait_for_function("window.neuronscope.stats.lastHeader.layer === 'head'")
    assert "1280 channels" in page.inner_text("#grid-caption")
    assert page.eval_on_selector("#grid-img", "i => i.naturalWidth") == 36 * 8 + 1  # 36 x 36 tiles of 7 px + 1 px gaps
    names = page.evaluate("window.neuronscope.info.layers.map(l => l.name)")
    page.keyboard.press("]")
    after = names[names.index("head") + 1]
    page.wait_for_function(f"window.neuronscope.stats.lastHeader.layer === '{after}'")
    page.keyboard.press("PageUp")
    page.keyboard.press("PageUp")
    before = names[names.index("head") - 1]
    page.wait_for_function(f"window.neuronscope.stats.lastHeader.layer === '{before}'")
    assert page.input_value("#layer-select") == before
    page.screenshot(path=str(ARTIFACTS / "viewer_layers.png"))


def test_clicking_a_unit_shows_its_enlarged_map_backprop_and_synthetic_image(page, photo_files):
    upload(page, photo_files["coffee"])
    geo = page.evaluate("window.neuronscope.grid")
    box = page.locator("#grid-img").bounding_box()
    col, row = 4, 2
    unit = row * geo["cols"] + col
    sx, sy = box["width"] / geo["width"], box["height"] / geo["height"]
    x = (geo["pad"] + col * (geo["tile_w"] + geo["pad"]) + geo["tile_w"] / 2) * sx
    y = (geo["pad"] + row * (geo["tile_h"] + geo["pad"]) + geo["tile_h"] / 2) * sy
    page.locator("#grid-img").click(position={"x": x, "y": y})
    page.wait_for_function(f"(window.neuronscope.stats.lastHeader.unit || {{}}).index === {unit}")
    page.wait_for_function("!document.getElementById('unit-img').hidden && document.getElementById('unit-img').naturalWidth === 224")
    assert f"blocks.4.dw_act:{unit}" in page.inner_text("#unit-caption")
    assert page.is_visible("#grid-highlight")
    page.keyboard.press("b")  # off -> gradient
    page.keyboard.press("b")  # gradient -> deconv
    page.keyboard.press("b")  # deconv -> guided
    page.wait_for_function("window.neuronscope.stats.lastHeader.backprop.status === 'ok' && window.neuronscope.stats.lastHeader.backprop.mode === 'guided'")
    page.wait_for_function("!document.getElementById('backprop-img').hidden && document.getElementById('backprop-img').naturalWidth === 224")
    assert "guided" in page.inner_text("#backprop-caption")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"(window.neuronscope.stats.lastHeader.unit || {{}}).index === {unit + 1}")
    page.wait_for_function("!document.getElementById('synth-img').hidden && document.getElementById('synth-img').naturalWidth === 64", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('#examples img').length === 4", timeout=60_000)  # the store's 4 photos
    page.wait_for_function("[...document.querySelectorAll('#examples img, #patches img')].every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("#patches img").count() == 4
    page.screenshot(path=str(ARTIFACTS / "viewer_unit_backprop.png"))


def test_fake_webcam_frames_are_processed_continuously(page):
    page.click("#webcam-button")
    page.wait_for_function("window.neuronscope.stats.results >= 5")
    first = int(page.inner_text("#frame-count"))
    page.wait_for_function(f"Number(document.getElementById('frame-count').textContent) >= {first + 5}")
    assert page.evaluate("window.neuronscope.stats.lastHeader.stats.source") == "frame"
    assert "webcam" in page.inner_text("#input-caption")
    assert float(page.inner_text("#fps")) > 0
    page.screenshot(path=str(ARTIFACTS / "viewer_webcam.png"))
    page.click("#stop-button")
    page.wait_for_function("window.neuronscope.live === null")


def test_a_video_file_is_streamed_frame_by_frame(page, tmp_path):
    # A short WebM made by the browser itself (MediaRecorder on an animated canvas).
    b64 = page.evaluate(
        """async () => {
            const c = document.createElement('canvas'); c.width = 160; c.height = 120;
            const ctx = c.getContext('2d'); const rec = new MediaRecorder(c.captureStream(25), {mimeType: 'video/webm'});
            const chunks = []; rec.ondataavailable = e => chunks.push(e.data);
            rec.start(); const t0 = performance.now();
            while (performance.now() - t0 < 1500) {
                const t = (performance.now() - t0) / 1500;
                ctx.fillStyle = `hsl(${360 * t}, 80%, 50%)`; ctx.fillRect(0, 0, 160, 120);
                ctx.fillStyle = '#fff'; ctx.fillRect(20 + 100 * t, 40, 30, 30);
                await new Promise(r => setTimeout(r, 30));
            }
            await new Promise(r => { rec.onstop = r; rec.stop(); });
            const buf = await new Blob(chunks).arrayBuffer();
            let s = ''; new Uint8Array(buf).forEach(b => s += String.fromCharCode(b)); return btoa(s);
        }"""
    )
    before = results(page)
    page.set_input_files("#file-input", {"name": "clip.webm", "mimeType": "video/webm", "buffer": base64.b64decode(b64)})
    page.wait_for_function(f"window.neuronscope.stats.results >= {before + 5}")
    assert page.evaluate("window.neuronscope.stats.lastHeader.stats.source") == "frame"
    assert "clip.webm" in page.inner_text("#input-caption")
    page.click("#stop-button")


def test_a_corrupt_file_shows_an_error_and_the_app_keeps_working(page, photo_files):
    page.set_input_files("#file-input", str(photo_files["broken"]))
    page.wait_for_selector("#message:not([hidden])")
    text = page.inner_text("#message")
    assert "broken.jpg" in text and ("corrupt" in text or "truncated" in text)
    page.screenshot(path=str(ARTIFACTS / "viewer_corrupt_file.png"))
    page.set_input_files("#file-input", str(photo_files["notes"]))
    page.wait_for_function("document.getElementById('message').textContent.includes('notes.jpg')")
    assert "not an image" in page.inner_text("#message")
    upload(page, photo_files["coffee"])  # the same page still works
    page.wait_for_function("document.querySelector('#top5 li') && document.querySelector('#top5 li').textContent.includes('espresso')")
    assert page.evaluate("window.neuronscope.ws.readyState") == 1


# --------------------------------------------------------------------------- the 2015 toolbox's modes


def select_unit(page, unit: int) -> None:
    page.evaluate(f"window.neuronscope.state.unit = null")
    page.keyboard.press("Escape")
    for _ in range(unit + 1):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(f"(window.neuronscope.stats.lastHeader.unit || {{}}).index === {unit}")


def grid_colourful(page) -> float:
    """Mean |G - R| over the grid picture: 0 for a gray activation grid, large for red/green diffs."""
    return page.evaluate(
        """() => { const img = document.getElementById('grid-img'); const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight; const ctx = c.getContext('2d');
            ctx.drawImage(img, 0, 0); const d = ctx.getImageData(0, 0, c.width, c.height).data; let s = 0;
            for (let i = 0; i < d.length; i += 4) s += Math.abs(d[i + 1] - d[i]); return s / (d.length / 4); }"""
    )


def test_logits_are_named_by_class_and_the_unit_view_zooms(page, photo_files):
    upload(page, photo_files["chelsea"])
    page.select_option("#layer-select", "logits")
    page.wait_for_function("window.neuronscope.stats.lastHeader.layer === 'logits'")
    assert "classes" in page.inner_text("#layer-select")
    select_unit(page, 1)
    assert "logits:1 goldfish" in page.inner_text("#unit-caption")
    page.select_option("#layer-select", "blocks.4.dw_act")
    page.wait_for_function("window.neuronscope.stats.lastHeader.layer === 'blocks.4.dw_act'")
    select_unit(page, 3)
    page.keyboard.press("z")  # zoom: the selected unit's view fills the grid pane
    page.wait_for_function("!document.getElementById('zoom-img').hidden && document.getElementById('zoom-img').naturalWidth === 224")
    assert page.locator("#zoom-img").bounding_box()["width"] > 400  # larger than the unit pane itself
    assert page.locator("#pane-unit .square").bounding_box()["width"] >= 260
    page.screenshot(path=str(ARTIFACTS / "viewer_zoom_unit.png"))
    page.keyboard.press("z")  # -> backprop (off: nothing to zoom), then off
    page.keyboard.press("z")
    page.wait_for_function("document.getElementById('zoom-img').hidden")


def test_backprop_diffs_in_the_grid_and_a_frozen_backprop_unit(page, photo_files):
    upload(page, photo_files["chelsea"])
    page.select_option("#layer-select", "logits")
    page.wait_for_function("window.neuronscope.stats.lastHeader.layer === 'logits'")
    select_unit(page, 281)  # tabby
    page.keyboard.press("d")  # freeze the backprop unit (turns guided backprop on)
    page.wait_for_function("(window.neuronscope.stats.lastHeader.backprop || {}).frozen === true")
    assert "frozen logits:281 tabby" in page.inner_text("#backprop-caption")
    page.keyboard.press("ArrowRight")  # the selection moves on, the backprop unit stays
    page.wait_for_function("(window.neuronscope.stats.lastHeader.unit || {}).index === 282")
    assert page.evaluate("window.neuronscope.stats.lastHeader.backprop.source") == "logits:281"
    page.select_option("#layer-select", "blocks.4.dw_act")
    page.keyboard.press("a")  # the grid shows d(tabby)/d(blocks.4.dw_act), green + / red -
    page.wait_for_function(
        "window.neuronscope.stats.lastHeader.layer === 'blocks.4.dw_act' && window.neuronscope.stats.lastHeader.grid_kind === 'diffs'"
    )
    page.wait_for_function("document.getElementById('grid-img').complete && document.getElementById('grid-img').naturalWidth > 0")
    assert "diffs from logits:281 tabby" in page.inner_text("#grid-caption")
    assert grid_colourful(page) > 1.0
    assert page.is_visible("#freeze-button.active")
    page.screenshot(path=str(ARTIFACTS / "viewer_backprop_diffs_frozen.png"))
    page.keyboard.press("a")
    page.wait_for_function("window.neuronscope.stats.lastHeader.grid_kind === 'activations'")
    page.wait_for_timeout(300)
    assert grid_colourful(page) < 1.0  # gray again
    page.keyboard.press("d")
    page.wait_for_function("!(window.neuronscope.stats.lastHeader.backprop || {}).frozen && !document.querySelector('#freeze-button.active')")


def test_pattern_mode_fills_the_grid_with_cached_preferred_images(page, photo_files):
    upload(page, photo_files["coffee"])
    page.select_option("#layer-select", "stem.act")  # 32 channels: a quick layer to render
    page.wait_for_function("window.neuronscope.stats.lastHeader.layer === 'stem.act'")
    page.keyboard.press("s")
    page.wait_for_function("window.neuronscope.patternStatus && window.neuronscope.patternStatus.status === 'ready'", timeout=120_000)
    page.wait_for_function("document.getElementById('grid-img').src.includes('patterns.png') && document.getElementById('grid-img').complete")
    geo = page.evaluate("window.neuronscope.grid")
    assert geo["tile_w"] == 32 and geo["channels"] == 32
    assert natural_width(page, "#grid-img") == geo["width"]
    assert "preferred patterns of 32 units" in page.inner_text("#grid-caption")
    page.wait_for_timeout(300)
    # synthetic images are in colour; an activation grid is grey (exactly 0). The default preset's prior mutes
    # colour (its 3-step test renders measured 0.998, lucid's were above 1)
    assert grid_colourful(page) > 0.5
    box = page.locator("#grid-img").bounding_box()  # clicking a pattern tile selects that unit
    sx = box["width"] / geo["width"]
    page.locator("#grid-img").click(position={"x": (geo["pad"] + 2 * (geo["tile_w"] + geo["pad"]) + 5) * sx, "y": 5 * sx})
    page.wait_for_function("(window.neuronscope.stats.lastHeader.unit || {}).index === 2")
    page.screenshot(path=str(ARTIFACTS / "viewer_patterns.png"))
    page.keyboard.press("s")
    page.wait_for_function("!document.getElementById('grid-img').src.includes('patterns.png')")


def test_stepping_through_a_folder_of_input_images(page):
    assert page.is_visible("#inputs-group")
    page.keyboard.press("n")
    page.wait_for_function("(window.neuronscope.stats.lastHeader || {}).input && window.neuronscope.stats.lastHeader.input.name === 'astronaut.jpg'")
    assert "astronaut.jpg (1/3)" in page.inner_text("#input-caption")
    page.keyboard.press("n")
    page.wait_for_function("window.neuronscope.stats.lastHeader.input && window.neuronscope.stats.lastHeader.input.name === 'chelsea.jpg'")
    assert page.evaluate("window.neuronscope.stats.lastHeader.stats.source") == "folder"
    page.click("#prev-input")
    page.wait_for_function("window.neuronscope.stats.lastHeader.input && window.neuronscope.stats.lastHeader.input.index === 0")
    page.keyboard.press("p")  # wraps to the last image
    page.wait_for_function("window.neuronscope.stats.lastHeader.input && window.neuronscope.stats.lastHeader.input.name === 'coffee.jpg'")
    page.wait_for_function("document.querySelector('#top5 li') && document.querySelector('#top5 li').textContent.includes('espresso')")
    page.screenshot(path=str(ARTIFACTS / "viewer_input_folder.png"))


def test_deconv_of_the_top9_images(page, photo_files):
    upload(page, photo_files["coffee"])
    select_unit(page, 7)
    page.wait_for_function("document.querySelectorAll('#examples img').length === 4", timeout=60_000)
    page.select_option("#examples-view", "deconv")
    page.wait_for_function("[...document.querySelectorAll('#examples img')].length === 4 && [...document.querySelectorAll('#examples img')].every(i => i.src.includes('backprop.jpg') && i.complete && i.naturalWidth === 224)", timeout=60_000)
    assert "mode=deconv" in page.eval_on_selector("#examples img", "i => i.src")
    page.screenshot(path=str(ARTIFACTS / "viewer_top9_deconv.png"))
    page.select_option("#examples-view", "images")
    page.wait_for_function("[...document.querySelectorAll('#examples img')].every(i => i.src.includes('kind=image'))")
