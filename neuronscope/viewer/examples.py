"""The selected unit's top-9 dataset images and max patches, from the top-k store.

Opening the store is :func:`open_examples_store`; a unit's images come from
the store's ``examples(layer, unit, k)`` in :func:`store_examples`; the rest
of the viewer only sees :class:`Example` lists. Without a store the pane says how to make one.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import NeuronscopeError

log = logging.getLogger("neuronscope.viewer")

NO_STORE = "no dataset examples — run `neuronscope topk MODEL --images DIR --layers LAYER` and start serve with --store"


@dataclass
class Example:
    """One of a unit's top images: the image, its max patch (if known) and the activation."""

    score: float
    image: Image.Image
    patch: Image.Image | None = None
    caption: str = ""


def default_store_path(model_name: str) -> Path:
    """Where ``neuronscope topk MODEL --images DIR`` puts its store when no --store is given."""
    return Path(f"topk-{Path(str(model_name)).name.replace(':', '_')}") / "store"


def open_examples_store(model, *, store: str | Path | object | None = None, images: str | Path | None = None):
    """The top-k store for ``model``, or None when there is none (the pane then says so).

    ``store`` may be an open store object or a store folder; with only
    ``images`` (the folder ``neuronscope topk`` scanned) the default store
    folder of ``neuronscope topk`` is tried. A store made for another model or
    another folder is not used (a warning says why).
    """
    if store is None and images is None:
        return None
    if store is not None and not isinstance(store, (str, Path)):
        return store
    from ..data.store import Store

    path = Path(store) if store is not None else default_store_path(model.name)
    if not Store.exists(path):
        log.warning("no top-k store at %s; run `neuronscope topk %s --images DIR` for dataset examples", path, model.name)
        return None
    try:
        opened = Store.open(path)
    except NeuronscopeError as e:
        log.warning("top-k store not usable: %s", e)
        return None
    meta = opened.meta
    if meta.get("model") not in (None, model.name):
        log.warning("top-k store %s was made for model %s, not %s; dataset examples are off", path, meta["model"], model.name)
        opened.close()
        return None
    if images is not None and meta.get("image_folder") and Path(meta["image_folder"]) != Path(images).resolve():
        log.warning("top-k store %s covers %s, not %s; showing its images anyway", path, meta["image_folder"], images)
    return opened


def store_examples(store, model, layer: str, unit: int, k: int = 9) -> list[Example] | str:
    """The unit's best ``k`` images from the store (its ``examples(layer, unit, k)``), or why there are none."""
    if store is None:
        return NO_STORE
    try:
        have = store.layers()
        if layer not in have:
            return (
                f"the top-k store has no layer {layer} (it has: {', '.join(have) or 'none'}) — run "
                f"`neuronscope topk {model.name} --images DIR --layers {layer} --store {store.path}`"
            )
        out = [Example(float(e.value), e.image, e.patch, e.caption) for e in store.examples(layer, unit, k)]
        return out or f"no top-k entries for {layer}:{unit} yet"
    except NeuronscopeError as e:
        return str(e)
    except (OSError, LookupError) as e:
        return f"dataset examples for {layer}:{unit} could not be read ({type(e).__name__}: {e})"


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
