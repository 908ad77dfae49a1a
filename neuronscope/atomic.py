"""Writing files atomically, and never writing a NaN.

Readers see the old file or the whole new one, never half. Every writer here
refuses values that are not finite numbers (a NaN image is silently black, a
NaN in JSON is not JSON): the error names the file, the value, and the step
that produced it, as declared with :func:`producing` (the command line declares
the verb and the options it was given).
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .errors import NeuronscopeError

_STEP: contextvars.ContextVar[str | None] = contextvars.ContextVar("neuronscope_producing", default=None)


@contextlib.contextmanager
def producing(step: str) -> Iterator[None]:
    """Name the step whose results are written inside this block (for the NaN message)."""
    token = _STEP.set(step)
    try:
        yield
    finally:
        _STEP.reset(token)


class NotFiniteError(NeuronscopeError):
    """A result to be written holds NaN or an infinity."""


def _blame() -> str:
    step = _STEP.get()
    return f"; it was produced by {step}" if step else ""


def not_finite(what: str) -> NotFiniteError:
    return NotFiniteError(
        f"{what} is not a finite number (NaN or infinite), so nothing was written{_blame()}. "
        "Valid results are finite: lower the step size or weights, or use fewer steps"
    )


def check_finite_tensor(x: torch.Tensor, what: str) -> None:
    """Raise :class:`NotFiniteError` if the floating-point tensor ``x`` holds NaN or inf."""
    if isinstance(x, torch.Tensor) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise not_finite(what)


def first_not_finite(obj: Any, where: str = "") -> str | None:
    """The JSON path (e.g. ``units[3].activation``) of the first NaN or infinity in ``obj``, or None."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return None
    if isinstance(obj, (float, np.floating)):
        return None if math.isfinite(float(obj)) else (where or "the value")
    if isinstance(obj, torch.Tensor):
        return None if not obj.is_floating_point() or bool(torch.isfinite(obj).all()) else (where or "the value")
    if isinstance(obj, np.ndarray):
        return None if obj.dtype.kind != "f" or bool(np.isfinite(obj).all()) else (where or "the value")
    if isinstance(obj, dict):
        for k, v in obj.items():
            hit = first_not_finite(v, f"{where}.{k}" if where else str(k))
            if hit:
                return hit
        return None
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            hit = first_not_finite(v, f"{where}[{i}]")
            if hit:
                return hit
    return None


def dumps_finite(obj: Any, what: str = "a JSON record", **kw) -> str:
    """``json.dumps`` that refuses NaN and infinities (naming where they are) instead of writing them."""
    hit = first_not_finite(obj)
    if hit:
        raise not_finite(f"{hit} in {what}")
    kw.setdefault("default", str)
    return json.dumps(obj, allow_nan=False, **kw)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write a file so that readers see the old file or the whole new one, never half."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkstemp: its files are private (0600) and os.replace would keep that
    # mode, so outputs are created like any new file (0666 less the umask)
    while True:
        tmp = p.parent / f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, dumps_finite(obj, str(path), indent=2) + "\n")


def png_bytes(img, fmt: str = "PNG", **kw) -> bytes:
    """An image (PIL, or a tensor in [0, 1] checked to be finite) encoded as PNG (or ``fmt``)."""
    if isinstance(img, torch.Tensor):
        from .images import tensor_to_pil

        img = tensor_to_pil(img)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def save_png(img, path: str | os.PathLike) -> Path:
    if isinstance(img, torch.Tensor):
        check_finite_tensor(img, f"the image for {path}")
    return atomic_write_bytes(path, png_bytes(img))
