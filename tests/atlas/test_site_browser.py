"""The atlas website in a real browser: Playwright driving Debian's headless Chromium.

A small but complete atlas (renders, diversity images, top-k examples, an
attached facet picture, a real dissection report, class attributions) is
crawled from its index, once from ``file://`` and once from a static HTTP
server: every page reachable, every image decoded, every link resolving, and no
request leaving the site. Chromium is part of the project's set-up (`make
browser`), so a missing binary fails these tests instead of skipping them.
Screenshots go to ``artifacts/`` (gitignored).
"""

from __future__ import annotations

import re

import functools
import http.server
import threading
from collections import deque
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest
import torch

from tests.chromium import browser_session
from neuronscope.atlas import AtlasSettings, AtlasStore, build_atlas

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
TIMEOUT = 30_000  # ms; the machine is shared
UNITS = {("blocks.4", u) for u in range(4)} | {("head", u) for u in range(2)}


@pytest.fixture(scope="module")
def site(lite0, sample_photos, tmp_path_factory) -> Path:
    from neuronscope.data.scan import run_topk
    from neuronscope.data.store import Store
    from neuronscope.dissect import run_dissection
    from neuronscope.dissect.synthetic import make_shapes_dataset

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two OpenMP threads stall each other on the shared machine
    try:
        tmp = tmp_path_factory.mktemp("atlas")
        out = tmp / "site"
        topk = tmp / "topk"
        run_topk(lite0, [str(p) for p in sample_photos.values()], ["blocks.4", "head"], k=4, store=topk, size=96,
                 progress=False)
        with Store.open(topk) as st:  # a picture another command attached (as facets do)
            st.put_artifact("facet", "blocks.4", 0, "0", torch.rand(3, 40, 40), {"value": 1.5})
        shapes = make_shapes_dataset(tmp / "shapes", n=12, size=64, seed=0)
        report = tmp / "dissect"
        run_dissection(lite0, shapes, ["blocks.4"], report, size=64, label_size=64, images=False, progress=False)
        summary = build_atlas(lite0, ["blocks.4:0-3", "head:0-1"], out,
                              settings=AtlasSettings(size=32, steps=3, batch=6, diversity=2),
                              topk_store=topk, topk_k=4, dissection=report, classes_inputs=2, classes_size=64,
                              progress=False)
    finally:
        torch.set_num_threads(threads)
    assert summary.status == "complete" and summary.index == out / "index.html"
    return out


@pytest.fixture(scope="module")
def browser():
    yield from browser_session()


@pytest.fixture(scope="module")
def http_root(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    thread.join(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def crawl(browser, start: str, exists) -> dict:
    """Visit every page reachable from ``start`` within the site; return what was seen and what failed."""
    origin = start.rsplit("/", 1)[0] + "/"
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests, failures, errors = [], [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failures.append(f"{r.url}: {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and failures.append(f"{r.url}: HTTP {r.status}"))
    page.on("pageerror", lambda e: errors.append(str(e)))
    seen, queue, broken_imgs, broken_links = set(), deque([start]), [], []
    try:
        while queue:
            url = queue.popleft()
            if url in seen:
                continue
            seen.add(url)
            resp = page.goto(url, wait_until="load", timeout=TIMEOUT)
            assert resp is None or resp.ok, f"{url} answered {resp.status}"
            # lazy images only load when visible: make them eager and wait for every one to settle
            page.evaluate("() => document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
            page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=TIMEOUT)
            for src, width in page.eval_on_selector_all("img", "els => els.map(i => [i.currentSrc || i.src, i.naturalWidth])"):
                if width == 0:
                    broken_imgs.append(f"{src} on {url}")
            for href in page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))"):
                target = urldefrag(urljoin(url, href))[0]
                if not target.startswith(origin):
                    broken_links.append(f"{href} on {url} leaves the site")
                elif not exists(target):
                    broken_links.append(f"{href} on {url} does not exist")
                elif target.endswith(".html"):
                    queue.append(target)
        if True:  # screenshots for people reviewing the run
            ARTIFACTS.mkdir(exist_ok=True)
            kind = urlparse(start).scheme
            page.goto(start, wait_until="load")
            page.screenshot(path=str(ARTIFACTS / f"atlas_index_{kind}.png"), full_page=True)
            page.goto(urljoin(start, "units/blocks.4/00000.html"), wait_until="load")
            page.evaluate("() => document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
            page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=TIMEOUT)
            page.screenshot(path=str(ARTIFACTS / f"atlas_unit_{kind}.png"), full_page=True)
    finally:
        page.close()
    outside = [r for r in requests if not r.startswith(origin)]
    return {"pages": seen, "broken_images": broken_imgs, "broken_links": broken_links, "failures": failures,
            "errors": errors, "outside": outside}


def _expected_pages(origin: str) -> set[str]:
    pages = {origin + "index.html", origin + "layers/blocks.4.html", origin + "layers/head.html"}
    return pages | {f"{origin}units/{layer}/{unit:05d}.html" for layer, unit in UNITS}


def _check(result: dict, origin: str) -> None:
    assert result["broken_images"] == []
    assert result["broken_links"] == []
    assert result["failures"] == []
    assert result["errors"] == []
    assert result["outside"] == [], "the site must not fetch anything from outside itself (no CDN)"
    assert result["pages"] == _expected_pages(origin)


def test_atlas_site_opens_from_the_file_system_with_no_broken_image_or_link(site, browser):
    origin = site.resolve().as_uri() + "/"
    result = crawl(browser, origin + "index.html", lambda url: Path(urlparse(url).path).exists())
    _check(result, origin)


def test_atlas_site_opens_from_a_static_server_with_no_broken_image_or_link(site, browser, http_root):
    def exists(url: str) -> bool:
        return (site / urlparse(url).path.lstrip("/")).exists()

    result = crawl(browser, http_root + "index.html", exists)
    _check(result, http_root)


def test_unit_page_shows_everything_known_about_the_unit(site, browser, lite0):
    page = browser.new_page()
    try:
        page.goto((site / "units" / "blocks.4" / "00000.html").resolve().as_uri(), wait_until="load")
        text = page.inner_text("main")
        assert "Diversity (2 renders" in text
        assert "Dataset examples (top 4" in text
        assert any(f"{name}.png" in text for name in ("coffee", "chelsea", "astronaut", "rocket"))
        assert "Facets and other attached pictures" in text and "facet 0" in text
        assert "dissection label" in text and "IoU" in text
        assert "gradient attribution" in text and "raises most" in text and "lowers most" in text
        assert len(page.query_selector_all("a[rel=next]")) == 1 and not page.query_selector_all("a[rel=prev]")
        page.keyboard.press("ArrowRight")
        page.wait_for_url("**/00001.html", timeout=TIMEOUT)

        page.goto((site / "units" / "head" / "00001.html").resolve().as_uri(), wait_until="load")
        top = lite0.label(int(lite0.net.fc.weight[:, 1].argmax())).split(",")[0]
        assert "exact" in page.inner_text("main") and top in page.inner_text("main")
        assert "no report for this layer" in page.inner_text("main")
    finally:
        page.close()
    with AtlasStore.open(site / "store") as st:
        assert {(r.layer, r.unit) for r in st.units()} == UNITS and st.check() == []


def test_crawler_notices_a_missing_picture_and_a_dead_link(site, browser, tmp_path):
    """The crawl is only evidence if it can fail: break a copy of the site and watch it notice."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(site, broken)
    # main picture: <unit>-<hex token>.png; diversity renders add -d<i> (a token may itself start with "d")
    picture = next(p for p in (broken / "store" / "units" / "head").glob("00000-*.png")
                   if re.fullmatch(r"\d{5}-[0-9a-f]+\.png", p.name))
    picture.unlink()
    (broken / "units" / "head" / "00001.html").unlink()
    origin = broken.resolve().as_uri() + "/"
    result = crawl(browser, origin + "index.html", lambda url: Path(urlparse(url).path).exists())
    assert any(picture.name in b for b in result["broken_images"])
    assert any("00001.html" in b and "does not exist" in b for b in result["broken_links"])
