"""Generic picture sheets: self-contained HTML pages and PNG mosaics.

``write_html_page(path, title, sections)`` writes one HTML page whose pictures
sit in a folder beside it (``<page>_files/``) or are given as existing files;
``mosaic`` tiles images without captions (e.g. a unit's 3x3 top patches);
``caption_block`` stacks a title line over an image for PNG sheets.
Any command can use these; nothing here knows about units or models.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .images import atomic_write_text, save_png, tensor_to_pil
from .text import draw_line
from .text import font as text_font
from .templating import render_template

PictureLike = Image.Image | torch.Tensor | str | os.PathLike


@dataclass
class Figure:
    """A picture with a caption. ``image`` is a PIL image, a [0,1] tensor or an existing file."""

    image: PictureLike
    caption: str = ""
    width: int | None = None  # display width in px (default: natural size)
    name: str | None = None  # file name stem when the picture has to be written


@dataclass
class Link:
    """A line of text ending in a link: ``text`` then ``label`` pointing to ``href`` (relative)."""

    text: str
    href: str
    label: str


@dataclass
class Section:
    """A titled block of the page: optional text, figures in a row-wrapping flow, then link lines."""

    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
    return s[:60] or "img"


def write_html_page(path: str | os.PathLike, title: str, sections: Sequence[Section | dict]) -> Path:
    """Write an HTML page (``templates/sheet.html``); pictures that are not files yet go to ``<page>_files/``.

    ``sections`` are :class:`Section` objects or dicts with the same keys
    (``title``, ``text``, ``figures`` as Figure objects, dicts or (image,
    caption) tuples, ``links``). The page is written atomically; links are
    relative, so the page and its folder can be moved together.
    """
    page = Path(path)
    assets = page.with_name(page.stem + "_files")
    used: set[str] = set()
    shown = []
    for si, sec in enumerate(sections):
        if isinstance(sec, dict):
            sec = Section(**sec)
        figures = []
        for fi, fig in enumerate(sec.figures):
            if isinstance(fig, dict):
                fig = Figure(**fig)
            elif isinstance(fig, tuple):
                fig = Figure(*fig)
            src = _figure_file(fig, page, assets, f"s{si}_{fi}", used)
            figures.append({"src": src, "width": fig.width, "caption": fig.caption})
        shown.append({"title": sec.title, "text": sec.text, "figures": figures, "links": sec.links})
    atomic_write_text(page, render_template("sheet.html", title=title, sections=shown))
    return page


def _figure_file(fig: Figure, page: Path, assets: Path, default: str, used: set[str]) -> str:
    if isinstance(fig.image, (str, os.PathLike)):
        f = Path(fig.image)
        try:
            return os.path.relpath(f.resolve(), page.parent.resolve())
        except ValueError:
            return f.resolve().as_uri()
    stem = _slug(fig.name or default)
    name, n = f"{stem}.png", 1
    while name in used:
        n += 1
        name = f"{stem}_{n}.png"
    used.add(name)
    save_png(fig.image, assets / name)
    return f"{assets.name}/{name}"


# ---------------------------------------------------------------- PNG helpers

def as_pil(img: Image.Image | torch.Tensor | np.ndarray) -> Image.Image:
    if isinstance(img, torch.Tensor):
        return tensor_to_pil(img)
    if isinstance(img, np.ndarray):
        a = img if img.dtype == np.uint8 else (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        return Image.fromarray(a)
    return img.convert("RGB")


def mosaic(
    images: Sequence[Image.Image | torch.Tensor | None],
    columns: int,
    cell: int,
    *,
    rows: int | None = None,
    pad: int = 1,
    background=(255, 255, 255),
    empty=(235, 235, 235),
) -> Image.Image:
    """Images resized to ``cell`` px squares in a grid; ``None`` (or missing) cells are grey."""
    rows = rows or max(1, int(np.ceil(len(images) / columns)))
    sheet = Image.new("RGB", (columns * (cell + pad) + pad, rows * (cell + pad) + pad), background)
    for i in range(rows * columns):
        r, c = divmod(i, columns)
        xy = (pad + c * (cell + pad), pad + r * (cell + pad))
        im = images[i] if i < len(images) else None
        if im is None:
            sheet.paste(Image.new("RGB", (cell, cell), empty), xy)
        else:
            sheet.paste(as_pil(im).resize((cell, cell), Image.LANCZOS), xy)
    return sheet


def caption_block(image: Image.Image, lines: Sequence[str], *, font_size: int = 11, width: int | None = None) -> Image.Image:
    """``image`` with caption lines above it, on white."""
    font = text_font(font_size)
    lh = font_size + 3
    w = max(width or 0, image.size[0])
    out = Image.new("RGB", (w, image.size[1] + lh * len(lines) + 2), (255, 255, 255))
    d = ImageDraw.Draw(out)
    for j, line in enumerate(lines):
        draw_line(d, (2, 1 + lh * j), line, font, font_size, (20, 20, 20))
    out.paste(image, (0, lh * len(lines) + 2))
    return out


def stack(images: Sequence[Image.Image], *, direction: str = "horizontal", gap: int = 6, background=(255, 255, 255)) -> Image.Image:
    """Concatenate images left-to-right (or top-to-bottom), top/left aligned."""
    if direction == "horizontal":
        W = sum(i.size[0] for i in images) + gap * (len(images) - 1)
        H = max(i.size[1] for i in images)
    else:
        W = max(i.size[0] for i in images)
        H = sum(i.size[1] for i in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (max(W, 1), max(H, 1)), background)
    pos = 0
    for im in images:
        out.paste(im, (pos, 0) if direction == "horizontal" else (0, pos))
        pos += (im.size[0] if direction == "horizontal" else im.size[1]) + gap
    return out
