"""Pattern mode: every unit's synthetic preferred image laid out as the layer grid.

The 2015 toolbox's ``s`` key swapped the activation grid for each unit's
regularized-optimization image, loaded from pre-computed files. Here the images
come from an atlas store when one covers the layer (``neuronscope atlas``;
``serve --atlas``), and otherwise are rendered in a background thread, a batch
of units at a time through ``neuronscope.optim.render`` on a private copy of the
model, and cached as one small PNG per unit under
``CACHE/<model>/patterns/<layer>/<size>px-<steps>st/``. The page polls
:meth:`PatternGrid.status` and shows :meth:`PatternGrid.picture`, which tiles
whatever is ready (missing tiles stay dark) with the activation grid's column
count, so clicking a tile selects the same unit.
"""

from __future__ import annotations

import copy
import io
import logging
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..images import atomic_write_bytes, png_bytes
from ..optim import objectives as O
from ..optim.presets import DEFAULT_PRESET
from ..optim.render import render
from . import frames as fr
from .synth import _slug, preset_for

log = logging.getLogger("neuronscope.viewer")


class _Cancelled(Exception):
    pass


def open_atlas(path, model_name: str):
    """An atlas store at ``path`` (the store or the site folder holding ``store/``) made for ``model_name``."""
    from ..atlas.store import AtlasStore
    from ..errors import NeuronscopeError

    p = Path(path)
    if not (p / "atlas.sqlite").exists() and (p / "store" / "atlas.sqlite").exists():
        p = p / "store"
    store = AtlasStore.open(p)
    made_for = store.manifest.get("model")
    if made_for not in (None, model_name):
        store.close()
        raise NeuronscopeError(f"the atlas store {p} was made for model {made_for}, not {model_name}")
    return store


class PatternGrid:
    """Per-layer grids of synthetic unit images, from an atlas store or rendered in the background."""

    def __init__(self, model, cache_dir, layers: dict, *, size: int = 48, steps: int = 48, batch: int = 16,
                 preset: str = DEFAULT_PRESET, atlas=None):
        self.model, self.layers = model, layers
        self.cache_dir = Path(cache_dir)
        self.size, self.steps, self.batch, self.preset = size, steps, batch, preset
        self.atlas = atlas
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._wanted: str | None = None  # the layer the page looks at (newest request wins)
        self._current: str | None = None
        self._failed: dict[str, str] = {}
        self._stop = False
        self._thread: threading.Thread | None = None
        self._copy = None

    # ----------------------------------------------------------------- files

    def folder(self, layer: str) -> Path:
        return self.cache_dir / _slug(self.model.name) / "patterns" / _slug(layer) / f"{self.size}px-{self.steps}st"

    def _atlas_file(self, layer: str, unit: int) -> Path | None:
        if self.atlas is None:
            return None
        try:
            rec = self.atlas.unit(layer, unit)
        except Exception:  # noqa: BLE001 - a store that cannot answer is treated as not covering the unit
            return None
        return rec.file if rec is not None and rec.file.exists() else None

    def tile_file(self, layer: str, unit: int) -> Path | None:
        """The unit's picture if there is one: the atlas store's, else the cache's."""
        f = self._atlas_file(layer, unit)
        if f is not None:
            return f
        f = self.folder(layer) / f"{unit}.png"
        return f if f.exists() else None

    def missing(self, layer: str) -> list[int]:
        n = self.layers[layer].channels or 0
        return [u for u in range(n) if self.tile_file(layer, u) is None]

    # ----------------------------------------------------------------- page API

    def status(self, layer: str, *, start: bool = True) -> dict:
        """How far the layer's grid is; asks for the missing units to be rendered when ``start``."""
        n = self.layers[layer].channels or 0
        missing = self.missing(layer)
        from_atlas = self.atlas is not None and any(self._atlas_file(layer, u) for u in range(min(n, 1)))
        out = {"layer": layer, "total": n, "done": n - len(missing), "size": self.size, "steps": self.steps,
               "source": "atlas" if from_atlas else "rendered", "geometry": self.geometry(layer).as_dict()}
        if not missing:
            return {**out, "status": "ready"}
        if layer == "input":
            return {**out, "status": "unavailable", "message": "the input layer has no preferred images"}
        with self._lock:
            if layer in self._failed:
                return {**out, "status": "failed", "message": self._failed[layer]}
            if start:
                self._wanted = layer
                self._ensure_thread()
                self._wake.notify_all()
            busy = self._current == layer
        return {**out, "status": "rendering" if busy else "queued"}

    def geometry(self, layer: str) -> fr.GridGeometry:
        n = self.layers[layer].channels or 0
        cols, rows = fr.grid_shape(n)
        s, pad = self.size, 1
        return fr.GridGeometry(n, cols, rows, s, s, pad, cols * (s + pad) + pad, rows * (s + pad) + pad)

    def picture(self, layer: str) -> bytes:
        """The layer's pattern grid as PNG: every ready tile in place, the others dark."""
        geo = self.geometry(layer)
        canvas = np.full((geo.height, geo.width, 3), 40, np.uint8)
        s, pad = self.size, geo.pad
        for u in range(geo.channels):
            f = self.tile_file(layer, u)
            r, c = divmod(u, geo.cols)
            y, x = pad + r * (s + pad), pad + c * (s + pad)
            if f is None:
                canvas[y : y + s, x : x + s] = 16
                continue
            try:
                with Image.open(f) as im:
                    tile = im.convert("RGB").resize((s, s), Image.BILINEAR)
            except OSError:
                continue
            canvas[y : y + s, x : x + s] = np.asarray(tile)
        buf = io.BytesIO()
        Image.fromarray(canvas).save(buf, "PNG", compress_level=1)
        return buf.getvalue()

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._wanted = None
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ----------------------------------------------------------------- worker

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="neuronscope-patterns", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._wanted is None and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                layer = self._current = self._wanted
            try:
                todo = self.missing(layer)
                if not todo:
                    with self._lock:
                        if self._wanted == layer:
                            self._wanted = None
                    continue
                self._render(layer, todo[: self.batch])  # one batch, then look again at what is wanted
            except _Cancelled:
                pass
            except Exception as e:  # noqa: BLE001 - report in the page, keep the worker alive
                log.exception("pattern render of %s failed", layer)
                with self._lock:
                    self._failed[layer] = f"render failed: {type(e).__name__}: {e}"
                    if self._wanted == layer:
                        self._wanted = None
            finally:
                with self._lock:
                    self._current = None

    def _render(self, layer: str, units: list[int]) -> None:
        if self._copy is None:
            self._copy = copy.deepcopy(self.model)  # never the live view's hooks or swapped rectifiers

        def callback(step, images, values):
            if self._stop:
                raise _Cancelled
            return None

        targets = [O.channel(layer, u) if layer != "logits" else O.class_logit(u) for u in units]
        with torch.inference_mode(False):
            res = render(self._copy, targets, size=self.size, steps=self.steps,
                               preset=preset_for(self._copy, [layer], self.preset), seed=0,
                               progress=False, callback=callback)
        folder = self.folder(layer)
        for u, img in zip(units, res.images):
            atomic_write_bytes(folder / f"{u}.png", png_bytes(img))
