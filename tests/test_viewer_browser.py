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

from chromium import browser_session

ROOT = Path(__file__).resolve().parents[1]
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
    run_topk(lite0, [str(p) for p in sample_photos.values()], ["blocks.5"], k=9, store=store, size=128, progress=False)
    app = create_app(lite0, store=store, cache_dir=tmp_path_factory.mktemp("synth"), synth_steps=4, synth_size=64)
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
    assert "blocks.5" in page.inner_text("#layer-caption")
    assert "80 channels" in page.inner_text("#grid-caption")
    assert natural_width(page, "#input-img") == 224
    assert "coffee.jpg" in page.inner_text("#input-caption")
    page.screenshot(path=str(ARTIFACTS / "viewer_upload.png"))


def test_switching_layers_redraws_the_grid_from_the_list_and_the_keys(page, photo_files):
    upload(page, photo_files["chelsea"])
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
    assert f"blocks.5:{unit}" in page.inner_text("#unit-caption")
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
    page.wait_for_function("document.querySelectorAll('#examples img').length === 4")  # the store's 4 photos
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
