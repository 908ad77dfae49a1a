"""A warning for image batches outside [0, 1], the range every neuronscope model takes.

The model adapter normalizes [0, 1] RGB itself (``preprocess="imagenet"`` etc.),
so 0-255 pixel values, or a batch already normalized by the user, give wrong
predictions without any error. :func:`check_input_range` warns once per call
site (Python's default warning filter) with what was seen and what to do. It
looks only at batches that do not require gradients (a render's own images are
in [0, 1] by construction, and checking them every step would cost time).
"""

from __future__ import annotations

import os
import sys
import warnings

import torch

_INTERNAL = (os.path.dirname(torch.__file__) + os.sep, os.path.dirname(os.path.abspath(__file__)) + os.sep)

TOLERANCE = 1e-3  # interpolation and JPEG round-off can overshoot [0, 1] by a hair


class InputRangeWarning(UserWarning):
    """An image batch given to a model has values outside [0, 1]."""


def _caller_level() -> int:
    """The stack level of the first frame outside torch and neuronscope (the user's line)."""
    level, f = 1, sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_INTERNAL):
        f, level = f.f_back, level + 1
    return level


def check_input_range(x: torch.Tensor, model_name: str = "the model") -> bool:
    """Warn if ``x`` has values outside [0, 1]; returns whether it is in range."""
    if x.requires_grad or x.numel() == 0 or not x.is_floating_point():
        return True
    lo, hi = torch.aminmax(x.detach())
    lo, hi = float(lo), float(hi)
    if lo >= -TOLERANCE and hi <= 1 + TOLERANCE:
        return True
    if hi > 1.5 and lo >= -TOLERANCE:
        hint = "it looks like 0-255 pixel values: divide by 255 (neuronscope.images.load_batch gives [0, 1])"
    else:
        hint = ("it looks normalized already: pass the [0, 1] image and let the model's preprocessing "
                "(load_model(..., preprocess=...)) normalize it")
    warnings.warn(
        f"input values range from {lo:.3g} to {hi:.3g}, but {model_name} takes RGB batches in [0, 1]; {hint}. "
        "Predictions on such a batch are wrong.",
        InputRangeWarning,
        stacklevel=_caller_level(),
    )
    return False


__all__ = ["InputRangeWarning", "check_input_range"]
