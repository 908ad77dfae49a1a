"""The model work for one frame: forward, layer grid, unit view, backprop, top-5.

A :class:`FrameProcessor` is used from one worker thread at a time (the server
serializes all model work). Per frame it hooks only the layer on screen and the
logits, and it keeps the last forward result so that picking another unit or
display setting for the same frame costs no new forward pass.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from ..attribution import backward_view as attribution_backward_view
from ..errors import NeuronscopeError, closest
from ..models import Model
from ..taps import LayerInfo, describe_layers, tap
from . import frames as fr
from .backward import layer_diffs
from .layer_menu import curated_layers, first_layer

log = logging.getLogger("neuronscope.viewer")

BACKPROP_MODES = ("off", "gradient", "deconv", "guided")
BACKPROP_FILTERS = ("raw", "gray", "norm", "normblur")  # neuronscope.attribution.FILTERS
FITS = ("crop", "stretch")
BOOSTS = (0.0, 0.3, 0.5, 0.8, 1.0)
SCALES = fr.SCALES  # channel (default), robust, layer
BP_CONTRASTS = ("robust", "max")  # back pane: clip at the 99.5th percentile, or the 2015 toolbox's plain max
GAMMAS = (1.0, 0.7, 0.5, 0.3)


def viewable_layers(model: Model) -> list[LayerInfo]:
    """Layers whose one-image output is a (C, H, W) map set or a (C,) vector."""
    return [l for l in describe_layers(model) if l.shape is not None and len(l.shape) in (1, 3)]


def default_layer(layers: list[LayerInfo], input_size: int = 224) -> str:
    """The layer shown first: a rectified block output about input/8 wide (Lite0: ``blocks.4.dw_act``)."""
    return first_layer(layers, curated_layers(layers), input_size)


@dataclass
class ViewState:
    """What the user looks at; every field checked by :meth:`updated`."""

    layer: str
    unit: int | None = None
    backprop: str = "off"
    bp_filter: str = "raw"
    fit: str = "crop"
    boost: float = 0.0
    gamma: float = 1.0
    scale: str = "channel"
    bp_contrast: str = "robust"
    show_back: bool = False  # the grid shows backward diffs instead of activations
    bp_frozen: list | None = None  # [layer, unit]: backprop from this unit whatever is selected
    fmt: str = "jpeg"
    quality: int = 85

    def updated(self, changes: dict, layers: dict[str, LayerInfo]) -> "ViewState":
        """A new state with ``changes`` applied; a NeuronscopeError names a bad field."""
        if not isinstance(changes, dict):
            raise NeuronscopeError("a state message must be a JSON object")
        known = {f for f in self.__dataclass_fields__}
        unknown = [k for k in changes if k not in known and k != "type"]
        if unknown:
            raise NeuronscopeError(f"unknown state field(s) {unknown}; valid: {', '.join(sorted(known))}")
        new = replace(self)
        if "layer" in changes:
            layer = changes["layer"]
            if not isinstance(layer, str) or layer not in layers:
                hint = closest(str(layer), list(layers))
                raise NeuronscopeError(f"no viewable layer {layer!r}" + (f"; closest: {', '.join(hint)}" if hint else ""))
            if layer != new.layer:
                new.layer = layer
                new.unit = None if "unit" not in changes else new.unit
        if "unit" in changes:
            unit = changes["unit"]
            channels = layers[new.layer].channels or 0
            if unit is not None and (not isinstance(unit, int) or isinstance(unit, bool) or not 0 <= unit < channels):
                raise NeuronscopeError(f"unit {unit!r} is not in layer {new.layer} (valid: 0..{channels - 1} or null)")
            new.unit = unit
        choices = {
            "backprop": BACKPROP_MODES,
            "bp_filter": BACKPROP_FILTERS,
            "fit": FITS,
            "scale": SCALES,
            "bp_contrast": BP_CONTRASTS,
            "fmt": tuple(fr.FORMATS),
        }
        for key, valid in choices.items():
            if key in changes:
                if changes[key] not in valid:
                    raise NeuronscopeError(f"{key} {changes[key]!r} is not valid; valid: {', '.join(valid)}")
                setattr(new, key, changes[key])
        for key, valid in (("boost", BOOSTS), ("gamma", GAMMAS)):
            if key in changes:
                v = changes[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) not in valid:
                    raise NeuronscopeError(f"{key} {v!r} is not valid; valid: {', '.join(map(str, valid))}")
                setattr(new, key, float(v))
        if "show_back" in changes:
            if not isinstance(changes["show_back"], bool):
                raise NeuronscopeError(f"show_back {changes['show_back']!r} is not valid; valid: true, false")
            new.show_back = changes["show_back"]
        if "bp_frozen" in changes:
            fz = changes["bp_frozen"]
            if fz is not None:
                ok = isinstance(fz, list) and len(fz) == 2 and isinstance(fz[0], str) and fz[0] in layers
                ok = ok and isinstance(fz[1], int) and not isinstance(fz[1], bool)
                if not ok or not 0 <= fz[1] < (layers[fz[0]].channels or 0):
                    raise NeuronscopeError(f"bp_frozen {fz!r} is not valid; valid: null or [layer, unit] of a listed layer")
                fz = [fz[0], fz[1]]
            new.bp_frozen = fz
        if "quality" in changes:
            q = changes["quality"]
            if isinstance(q, bool) or not isinstance(q, int) or not 10 <= q <= 100:
                raise NeuronscopeError(f"quality {q!r} is not valid; valid: an integer 10..100")
            new.quality = q
        return new


@dataclass
class Frame:
    """A decoded frame: the source picture and the square model input made from it."""

    seq: int
    source: Image.Image
    fit: str
    x: torch.Tensor  # (1, 3, S, S) in [0, 1]
    token: int = 0  # changes whenever x changes; keys the forward cache


@dataclass
class Result:
    """What goes back to the page for one frame: a JSON header and encoded pictures."""

    header: dict
    blobs: list[tuple[str, bytes, str]] = field(default_factory=list)  # (name, data, mime)


def clip_signal(grad: torch.Tensor, q: float = 0.995) -> torch.Tensor:
    """(3, H, W) signal with each pixel's colour vector shortened to the ``q`` quantile of pixel norms.

    Guided backprop concentrates on a few pixels; scaled by its plain maximum
    (the 2015 toolbox) almost everything is mid-gray. Clipping the top half
    percent keeps the same picture, signs and filters, but visible.
    """
    norm = grad.norm(dim=0, keepdim=True)
    cap = torch.quantile(norm.flatten(), q).clamp_min(1e-30)
    return grad * (cap / norm.clamp_min(cap))


def backprop_picture(grad: torch.Tensor, filter: str, contrast: str = "robust") -> np.ndarray:
    """A (3, H, W) input-space signal as an (H, W, 3) uint8 picture (toolbox back-pane filters).

    ``contrast``: ``robust`` clips the brightest 0.5 % of pixels first
    (:func:`clip_signal`), ``max`` is the 2015 toolbox's plain normalisation.
    """
    from ..attribution import render_view

    if contrast == "robust":
        grad = clip_signal(grad)
    return fr.to_uint8(render_view(grad[None], filter)[0])


def backprop_source(state: "ViewState") -> tuple[str, int] | None:
    """The unit backprop starts from: the frozen one, else the selected one."""
    if state.bp_frozen is not None:
        return state.bp_frozen[0], state.bp_frozen[1]
    if state.unit is not None:
        return state.layer, state.unit
    return None


class FrameProcessor:
    """Runs the model on frames and draws every pane's picture."""

    def __init__(
        self,
        model: Model,
        layers: list[LayerInfo] | None = None,
        *,
        max_grid_side: int = 1024,
        backward_view: Callable | None | str = "auto",
    ):
        self.model = model
        self.layers = {l.name: l for l in (layers if layers is not None else viewable_layers(model))}
        self.size = model.input_size
        self.max_grid_side = max_grid_side
        self._backward = attribution_backward_view if backward_view == "auto" else backward_view
        self._tokens = itertools.count(1)  # thread-safe: frames are decoded off the model thread
        self._forward_cache: tuple | None = None  # (token, layer, act, logits)
        self._backprop_cache: tuple | None = None  # ((token, layer, unit, mode), grad)
        self._refit_cache: tuple | None = None  # ((token, fit), refitted frame)
        self._diff_cache: tuple | None = None  # ((token, src, mode, layer), diffs)

    @property
    def backprop_available(self) -> bool:
        return self._backward is not None

    # ----------------------------------------------------------------- frames

    def decode(self, seq: int, data: bytes, *, name: str, fit: str, max_bytes: int) -> Frame:
        img = fr.decode_frame(data, name=name, max_bytes=max_bytes)
        return self.make_frame(seq, img, fit)

    def make_frame(self, seq: int, img: Image.Image, fit: str) -> Frame:
        # Keep at most twice the input size of a big upload: enough to re-fit, small to hold.
        short = min(img.size)
        if short > 2 * self.size:
            k = 2 * self.size / short
            img = img.resize((max(1, round(img.width * k)), max(1, round(img.height * k))), Image.BILINEAR)
        x = fr.image_to_tensor(fr.fit_square(img, self.size, fit))
        return Frame(seq, img, fit, x, next(self._tokens))

    def refit(self, frame: Frame, fit: str) -> Frame:
        """The same frame brought to the model input with another fit mode (memoized)."""
        if frame.fit == fit:
            return frame
        c = self._refit_cache
        if c is None or c[0] != (frame.token, fit):
            c = self._refit_cache = ((frame.token, fit), self.make_frame(frame.seq, frame.source, fit))
        return c[1]

    # ----------------------------------------------------------------- model work

    def forward(self, frame: Frame, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's activation (one image) and the logits, from cache when possible."""
        c = self._forward_cache
        if c is not None and c[0] == frame.token and c[1] == layer:
            return c[2], c[3]
        with torch.inference_mode(), tap(self.model, [layer, "logits"]) as taps:
            logits = taps.run(frame.x.to(self.model.device))
            act = taps[layer][0].float().cpu()
        logits = logits[0].float().cpu()
        self._forward_cache = (frame.token, layer, act, logits)
        return act, logits

    def diffs(self, frame: Frame, src: tuple[str, int], mode: str, layer: str) -> torch.Tensor | None:
        """Backward diffs at ``layer`` from the backprop unit ``src`` (cached per frame)."""
        c = self._diff_cache
        key = (frame.token, src, mode, layer)
        if c is not None and c[0] == key:
            return c[1]
        d = layer_diffs(self.model, frame.x.to(self.model.device), src[0], src[1], mode, layer)
        self._diff_cache = (key, d)
        return d

    def backprop(self, frame: Frame, layer: str, unit: int, mode: str) -> torch.Tensor:
        c = self._backprop_cache
        key = (frame.token, layer, unit, mode)
        if c is not None and c[0] == key:
            return c[1]
        x = frame.x.to(self.model.device)
        grad = self._backward(self.model, x, layer, unit, mode)[0].detach().float().cpu()
        self._backprop_cache = (key, grad)
        return grad

    def top_classes(self, logits: torch.Tensor, k: int = 5) -> list[dict]:
        probs = logits.softmax(-1)
        p, idx = probs.topk(min(k, probs.numel()))
        return [{"index": int(i), "label": self.model.label(int(i)), "p": round(float(q), 5)} for q, i in zip(p, idx)]

    # ----------------------------------------------------------------- one frame

    def process(self, frame: Frame, state: ViewState) -> Result:
        """Every pane's picture for ``frame`` as the user is looking at it."""
        t0 = time.perf_counter()
        times: dict[str, float] = {}
        frame = self.refit(frame, state.fit)
        act, logits = self.forward(frame, state.layer)
        t1 = time.perf_counter()
        times["forward_ms"] = (t1 - t0) * 1000
        src = backprop_source(state)
        grid_kind, grid_note, pic = "activations", None, None
        if state.show_back:
            pic, geo, grid_note = self._diff_grid(frame, state, src)
            if pic is not None:
                grid_kind = "diffs"
        if pic is None:
            pic, geo, _ = fr.layer_grid(
                act, boost=state.boost, gamma=state.gamma, max_side=self.max_grid_side, scale=state.scale
            )
        blobs = []
        data, mime = fr.encode(pic, state.fmt, state.quality)
        blobs.append(("grid", data, mime))
        data, mime = fr.encode(fr.to_uint8(frame.x[0]), "jpeg", 90)
        blobs.append(("input", data, mime))
        t2 = time.perf_counter()
        times["grid_ms"] = (t2 - t1) * 1000
        maps = fr.as_maps(act)
        header: dict[str, Any] = {
            "type": "result",
            "seq": frame.seq,
            "layer": state.layer,
            "shape": list(act.shape),
            "grid": geo.as_dict(),
            "grid_kind": grid_kind,
            "grid_note": grid_note,
            "scale": state.scale,
            "range": [float(maps.min()), float(maps.max())],
            "top5": self.top_classes(logits),
            "unit": None,
            "backprop": {"mode": state.backprop, "status": "off"},
        }
        if state.unit is not None and state.unit < maps.shape[0]:
            u = state.unit
            m = maps[u]
            flat = int(m.flatten().argmax())
            header["unit"] = {
                "index": u,
                "label": self.model.label(u) if state.layer == "logits" else None,
                "max": float(m.max()),
                "mean": float(m.mean()),
                "argmax": [flat // m.shape[-1], flat % m.shape[-1]],
            }
            # Where the unit fires: its positive part on the layer's scale (0 .. layer max).
            firing = m.clamp(min=0) / maps.max().clamp_min(1e-12)
            data, mime = fr.encode(fr.unit_overlay(frame.x[0], firing), "jpeg", 88)
            blobs.append(("unit", data, mime))
        if src is not None:
            header["backprop"] = self._backprop_pane(frame, state, src, blobs)
        elif state.backprop != "off":
            header["backprop"] = {"mode": state.backprop, "status": "idle", "message": "select a unit to see its backprop view"}
        t3 = time.perf_counter()
        times["unit_ms"] = (t3 - t2) * 1000
        times["total_ms"] = (t3 - t0) * 1000
        header["timing"] = {k: round(v, 2) for k, v in times.items()}
        return Result(header, blobs)

    def _diff_grid(self, frame: Frame, state: ViewState, src) -> tuple:
        """The layer grid of backward diffs, or (None, None, why not)."""
        if state.backprop == "off":
            return None, None, "backprop is off: press b to choose gradient, deconv or guided"
        if src is None:
            return None, None, "select (or freeze, d) a unit to backprop from"
        if self._backward is None:
            return None, None, "backprop is turned off in this viewer"
        if state.layer == "input":
            return None, None, "the input's diffs are the backprop pane"
        try:
            d = self.diffs(frame, src, state.backprop, state.layer)
        except NeuronscopeError as e:
            return None, None, str(e)
        if d is None:
            return None, None, (
                f"{state.layer} comes after the backprop unit {src[0]}:{src[1]}: diffs show in the layers before it"
            )
        pic, geo, _ = fr.layer_grid(
            d, boost=state.boost, gamma=state.gamma, max_side=self.max_grid_side, scale=state.scale, signed=True
        )
        return pic, geo, None

    def _backprop_pane(self, frame: Frame, state: ViewState, src: tuple[str, int], blobs: list) -> dict:
        mode = state.backprop
        if mode == "off":
            return {"mode": mode, "status": "off"}
        if self._backward is None:
            return {
                "mode": mode,
                "status": "unavailable",
                "message": "backprop unavailable: this viewer was started without a backward view",
            }
        try:
            grad = self.backprop(frame, src[0], src[1], mode)
        except NeuronscopeError as e:
            return {"mode": mode, "status": "error", "message": str(e)}
        except Exception as e:  # noqa: BLE001 - a failing backward pass must not stop the live view
            log.exception("backprop failed")
            return {"mode": mode, "status": "error", "message": f"backprop failed: {type(e).__name__}: {e}"}
        data, mime = fr.encode(backprop_picture(grad, state.bp_filter, state.bp_contrast), "jpeg", 90)
        blobs.append(("backprop", data, mime))
        return {
            "mode": mode,
            "status": "ok",
            "filter": state.bp_filter,
            "contrast": state.bp_contrast,
            "absmax": float(grad.abs().max()),
            "source": f"{src[0]}:{src[1]}",
            "label": self.model.label(src[1]) if src[0] == "logits" else None,
            "frozen": state.bp_frozen is not None,
        }


def layer_table(layers: list[LayerInfo]) -> list[dict]:
    """The layer list as sent to the page; ``curated`` marks the short list shown by default."""
    short = set(curated_layers(layers))
    return [
        {"name": l.name, "kind": l.kind, "shape": list(l.shape), "channels": l.channels, "curated": l.name in short}
        for l in layers
    ]


__all__ = [
    "BACKPROP_MODES",
    "backprop_source",
    "clip_signal",
    "Frame",
    "FrameProcessor",
    "Result",
    "ViewState",
    "default_layer",
    "layer_table",
    "viewable_layers",
]
