"""Inline display in Jupyter: render results, facet results and written sheets show themselves.

IPython calls ``_repr_png_`` / ``_repr_html_`` on the last value of a cell. The
classes here add those methods and nothing else:

* :class:`RenderDisplay` (mixed into ``RenderResult``): a labelled grid of the
  rendered rows with each row's objective value.
* :class:`FacetDisplay` (mixed into ``FacetResult``): one column per facet, the
  render over the cluster's mean image.
* :class:`Sheet` (a ``pathlib.Path`` returned by ``visualize``) and
  :class:`FacetSheet` (the ``(html, png)`` pair returned by ``write_facet_sheet``):
  still a path and a tuple, shown as their PNG picture.

Progress bars use ``tqdm.auto``: widgets in a notebook, text in a terminal.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import NamedTuple

from PIL import Image

#: pictures wider than this are scaled down for display (the files keep full size)
MAX_WIDTH = 1200


def _png(img: Image.Image) -> bytes:
    if img.width > MAX_WIDTH:
        img = img.resize((MAX_WIDTH, max(1, round(img.height * MAX_WIDTH / img.width))), Image.LANCZOS)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def _html(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure style='margin:0'><img src='data:image/png;base64,{data}' style='max-width:100%'/>"
            f"<figcaption style='font:12px monospace'>{html.escape(caption)}</figcaption></figure>")


class _Displayable:
    def picture(self) -> Image.Image:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def caption(self) -> str:
        return type(self).__name__

    def _repr_png_(self) -> bytes:
        return _png(self.picture())

    def _repr_html_(self) -> str:
        return _html(self._repr_png_(), self.caption())


class RenderDisplay(_Displayable):
    """For ``RenderResult``: needs ``images`` (B,3,H,W), ``values`` (B,), ``meta``."""

    def picture(self) -> Image.Image:
        from .images import labelled_grid

        labels = [f"{i}: {float(v):.3g}" for i, v in enumerate(self.values)]
        cols = min(8, len(labels))
        return labelled_grid(list(self.images), labels, columns=cols)

    def caption(self) -> str:
        m = self.meta or {}
        parts = [f"{len(self.values)} row(s)", f"{m.get('size', self.images.shape[-1])} px"]
        if "steps" in m:
            parts.append(f"{m['steps']} steps")
        if "preset" in m:
            parts.append(f"preset {m['preset']}")
        return "render: " + ", ".join(parts) + f", {self.seconds:.1f} s"


class FacetDisplay(_Displayable):
    """For ``FacetResult``: needs ``facets`` with ``image`` / ``preset_image`` / ``mean_image``."""

    def picture(self) -> Image.Image:
        from .images import labelled_grid

        tiles, labels = [], []
        for rank, f in enumerate(self.facets):
            for name, img in (("render", f.image), ("preset", f.preset_image), ("mean", f.mean_image)):
                if img is not None:
                    tiles.append(img)
                    labels.append(f"facet {rank} {name}")
        if not tiles:
            return Image.new("RGB", (240, 40), (255, 255, 255))
        per = max(1, len(tiles) // max(1, len(self.facets)))
        return labelled_grid(tiles, labels, columns=per if len(self.facets) > 1 else min(8, len(tiles)))

    def caption(self) -> str:
        label = getattr(self.unit, "label", str(self.unit))
        return f"facets of {label}: {len(self.facets)} facet(s), {self.mode} mode, {self.model}"


class Sheet(type(Path())):
    """The folder ``visualize`` wrote; still a ``Path``, shown in a notebook as its ``grid.png``."""

    def _repr_png_(self) -> bytes | None:
        grid = self / "grid.png"
        return _png(Image.open(grid)) if grid.is_file() else None

    def _repr_html_(self) -> str | None:
        png = self._repr_png_()
        return _html(png, str(self)) if png else None


class FacetSheet(NamedTuple):
    """``(html, png)`` of a written facet sheet; shown in a notebook as the picture."""

    html: Path
    png: Path

    def _repr_png_(self) -> bytes:
        return _png(Image.open(self.png))

    def _repr_html_(self) -> str:
        return _html(self._repr_png_(), str(self.html))
