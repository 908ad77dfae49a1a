"""Debian's headless Chromium under Playwright, launched one way for the browser tests and benchmarks/viewer_fps.py.

Chromium is part of the project's set-up (`make browser`), so a missing binary
is an error (a failed test, a benchmark that stops), never a skip. Nothing here
imports Playwright; the callers pass in their ``sync_playwright()`` handle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

CHROMIUM = "/usr/bin/chromium"
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING = (
    f"{CHROMIUM} is missing: the browser tests and benchmarks need Debian's Chromium. "
    "Install it with `make browser` (bash scripts/install_chromium.sh)."
)


def launch(pw, *, webcam: bool = False, camera_fps: int | None = None):
    """Headless Chromium from ``pw`` (a started ``sync_playwright()``).

    ``webcam``: grant camera access without asking and feed Chromium's fake
    webcam (at ``camera_fps`` frames per second when given).
    """
    args = list(CHROME_ARGS)
    if webcam:
        fps = f"=fps={camera_fps}" if camera_fps is not None else ""
        args += [f"--use-fake-device-for-media-stream{fps}", "--use-fake-ui-for-media-stream"]
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


def browser_session(**launch_args) -> Iterator:
    """The body of a pytest browser fixture (``yield from browser_session(...)``): a missing Chromium fails."""
    import pytest

    if not Path(CHROMIUM).exists():
        pytest.fail(MISSING)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw, **launch_args)
        yield b
        b.close()
