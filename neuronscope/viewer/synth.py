"""The selected unit's synthetic preferred image, rendered in the background.

Renders go through the activation-maximization API (``neuronscope.optim.render``)
on a private copy of the model (its hooks never touch the live view's model), in
one daemon thread, one unit at a time. Only the newest request waits: when the
user walks through units with the arrow keys, the units passed over are not
rendered. Finished images are cached as PNG files under ``cache_dir``, named by
model, layer, unit and render settings, so a unit is rendered once per cache.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import re
import threading
from pathlib import Path

from ..images import atomic_write_bytes, png_bytes
from ..optim import objectives as O
from ..optim.presets import DEFAULT_PRESET
from ..optim.render import render

log = logging.getLogger("neuronscope.viewer")


class _Cancelled(Exception):
    pass


def preset_for(model, layers, preset):
    """``preset``, without ReLU gradient redirection when a target layer is itself a rectifier module.

    The render loop swaps ReLU modules for redirecting ones during its first
    steps, and a hook on a swapped-out module never fires, so a target such as
    ``blocks.4.dw_act`` would find no activation. Optimizing such a unit
    without redirection keeps the rest of the preset.
    """
    import dataclasses

    import torch.nn as nn

    from ..optim.presets import get_preset

    p = get_preset(preset)
    if p.redirect_steps < 0:
        return p
    modules = dict(getattr(model, "net", model).named_modules())
    if any(isinstance(modules.get(l), (nn.ReLU, nn.ReLU6)) for l in layers):
        return dataclasses.replace(p, redirect_steps=-1)
    return p


def _slug(text: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"
    return f"{safe[:60]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


class SynthRenderer:
    """On-demand, cached, cancellable renders of single units."""

    def __init__(
        self,
        model,
        cache_dir: str | Path,
        *,
        size: int = 128,
        steps: int = 128,
        preset: str = DEFAULT_PRESET,
        threads: int | None = None,
    ):
        self.model = model
        self.cache_dir = Path(cache_dir)
        self.size, self.steps, self.preset = size, steps, preset
        self.threads = threads
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: tuple[str, int] | None = None
        self._current: tuple[str, int] | None = None
        self._progress: float = 0.0
        self._failed: dict[tuple[str, int], str] = {}
        self._stop = False
        self._thread: threading.Thread | None = None
        # The renderer hooks its own copy, made now, before any backprop view can
        # have swapped the live model's rectifiers.
        self._copy = copy.deepcopy(model)

    # ----------------------------------------------------------------- public

    def path(self, layer: str, unit: int) -> Path:
        name = f"{_slug(layer)}_u{unit}_{self.size}px_{self.steps}st_{_slug(self.preset)}.png"
        return self.cache_dir / _slug(self.model.name) / name

    def status(self, layer: str, unit: int, *, start: bool = True) -> dict:
        """The unit's render state; queues a render when none exists yet and ``start``."""
        key = (layer, unit)
        if self.path(layer, unit).exists():
            return {"status": "ready"}
        with self._lock:
            if key in self._failed:
                return {"status": "failed", "message": self._failed[key]}
            if key == self._current:
                return {"status": "rendering", "progress": round(self._progress, 3)}
            if not start:
                return {"status": "missing"}
            self._pending = key
            self._ensure_thread()
            self._wake.notify_all()
            return {"status": "queued"}

    def close(self) -> None:
        """Stop the worker; a render in progress ends at its next step."""
        with self._lock:
            self._stop = True
            self._pending = None
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ----------------------------------------------------------------- worker

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="neuronscope-synth", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        while True:
            with self._lock:
                while self._pending is None and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                key, self._pending = self._pending, None
                self._current, self._progress = key, 0.0
            try:
                if not self.path(*key).exists():
                    self._render(*key)
            except _Cancelled:
                pass
            except Exception as e:  # noqa: BLE001 - report in the page, keep the worker alive
                log.exception("synthetic render of %s:%s failed", *key)
                with self._lock:
                    self._failed[key] = f"render failed: {type(e).__name__}: {e}"
            finally:
                with self._lock:
                    self._current = None

    def _render(self, layer: str, unit: int) -> None:
        def callback(step, images, values):
            self._progress = (step + 1) / self.steps
            if self._stop:
                raise _Cancelled
            return None

        res = render(
            self._copy,
            [O.channel(layer, unit)],
            size=self.size,
            steps=self.steps,
            preset=preset_for(self._copy, [layer], self.preset),
            seed=0,
            progress=False,
            callback=callback,
        )
        atomic_write_bytes(self.path(layer, unit), png_bytes(res.images[0]))
