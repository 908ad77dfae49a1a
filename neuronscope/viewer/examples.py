"""The selected unit's top-9 dataset images and max patches, from the top-k store.

All knowledge of the store's API sits in :func:`open_examples_store` and
:func:`store_examples`; the rest of the viewer only sees :class:`Example`
lists. Without a store the pane says how to make one.
"""

from __future__ import annotations

import importlib
import io
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import NeuronscopeError

log = logging.getLogger("neuronscope.viewer")

NO_STORE = "no dataset examples — run `neuronscope topk MODEL IMAGES` and start serve with --images or --store"


@dataclass
class Example:
    """One of a unit's top images: the image, its max patch (if known) and the activation."""

    score: float
    image: Image.Image
    patch: Image.Image | None = None
    caption: str = ""


def open_examples_store(model, *, store: str | Path | object | None = None, images: str | Path | None = None):
    """The top-k store for ``model``, or None when there is none (the pane then says so).

    ``store`` may be an already opened store object or a path; ``images`` is the
    image folder the store was computed over.
    """
    if store is None and images is None:
        return None
    if store is not None and not isinstance(store, (str, Path)):
        return store
    try:
        mod = importlib.import_module("neuronscope.data.store")
    except ImportError:
        log.warning("top-k store module not available; dataset examples are off")
        return None
    opener = getattr(mod, "open_store", None) or getattr(mod, "TopKStore", None)
    if opener is None:
        return None
    try:
        return opener(store if store is not None else images)
    except NeuronscopeError as e:
        log.warning("no usable top-k store: %s", e)
        return None


def store_examples(store, model, layer: str, unit: int, k: int = 9) -> list[Example] | str:
    """The unit's best ``k`` images from the store, or a message saying why there are none.

    This is the one place that speaks the store's API.
    """
    if store is None:
        return NO_STORE
    try:
        items = store.examples(layer, unit, k=k)
    except NeuronscopeError as e:
        return str(e)
    except (AttributeError, KeyError, LookupError) as e:
        return f"no dataset examples for {layer}:{unit} in the store ({e}) — run `neuronscope topk` for this layer"
    out = []
    for it in items[:k]:
        out.append(Example(float(it.score), it.image, getattr(it, "patch", None), getattr(it, "caption", "")))
    return out


class ExamplesPane:
    """Lazy, size-capped cache of the examples pane per unit."""

    def __init__(self, model, store, *, k: int = 9, capacity: int = 64):
        self.model, self.store, self.k, self.capacity = model, store, k, capacity
        self._cache: OrderedDict[tuple[str, int], list[Example] | str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, layer: str, unit: int) -> list[Example] | str:
        key = (layer, unit)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = store_examples(self.store, self.model, layer, unit, self.k)
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return value

    def describe(self, layer: str, unit: int) -> dict:
        value = self.get(layer, unit)
        if isinstance(value, str):
            return {"status": "none", "message": value, "items": []}
        return {
            "status": "ok",
            "items": [
                {"rank": r, "score": round(e.score, 4), "caption": e.caption, "patch": e.patch is not None}
                for r, e in enumerate(value)
            ],
        }

    def picture(self, layer: str, unit: int, rank: int, kind: str) -> bytes | None:
        value = self.get(layer, unit)
        if isinstance(value, str) or not 0 <= rank < len(value):
            return None
        img = value[rank].patch if kind == "patch" else value[rank].image
        if img is None:
            return None
        img = img.convert("RGB")
        img.thumbnail((256, 256))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=88)
        return buf.getvalue()
