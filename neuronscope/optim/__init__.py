"""Activation maximization: objectives, parameterizations, transforms, regularizers, the render loop."""

from . import objectives
from .objectives import Objective
from .presets import PRESETS, get_preset
from .render import RenderResult, evaluate, render

__all__ = ["Objective", "PRESETS", "RenderResult", "evaluate", "get_preset", "objectives", "render"]
