"""The generator that ships with neuronscope for EfficientNet-Lite0.

``load_shipped()`` returns it from package data (``weights/lite0_head2_64.pt``,
fp16, a few MB); ``weights/lite0_head2_64.json`` records the training command,
the photo manifest hash and list, and the held-out reconstruction numbers.
``load_generator(spec)`` accepts ``shipped`` (or a model name with a shipped
generator), the path of a generator saved by ``Generator.save``, or a folder
holding one as ``generator.pt`` (``convert-generator`` and ``train-generator``). A generator
trained for one classifier is refused for another, except converted ones
(``meta["any_classifier"]``: the Caffe generators and BigGAN), which DGN-AM and
PPGN can steer with any classifier.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import NeuronscopeError
from .base import Generator

WEIGHTS = Path(__file__).with_name("weights")
SHIPPED = {"efficientnet_lite0": "lite0_head2_64"}


def shipped_path(model_name: str = "efficientnet_lite0") -> Path:
    if model_name not in SHIPPED:
        raise NeuronscopeError(
            f"no generator ships for {model_name!r} (shipped: {', '.join(SHIPPED)}); "
            f"train one with `neuronscope train-generator {model_name} --images DIR` and pass --generator PATH"
        )
    p = WEIGHTS / f"{SHIPPED[model_name]}.pt"
    if not p.is_file():
        raise NeuronscopeError(f"the shipped generator file {p} is missing from this installation")
    return p


def shipped_info(model_name: str = "efficientnet_lite0") -> dict:
    """The JSON record next to the shipped weights (command, data manifest, evaluation)."""
    p = shipped_path(model_name).with_suffix(".json")
    return json.loads(p.read_text()) if p.is_file() else {}


def load_shipped(model_name: str = "efficientnet_lite0", *, device=None) -> Generator:
    """The shipped generator for ``model_name`` (EfficientNet-Lite0)."""
    return Generator.load(shipped_path(model_name), device=device)


def load_generator(spec: str | None, model_name: str, *, device=None) -> Generator:
    """``spec`` = None/'shipped' (the shipped generator for ``model_name``), a .pt path or a folder holding
    ``generator.pt``."""
    if spec in (None, "", "shipped"):
        g = load_shipped(model_name, device=device)
    else:
        g = Generator.load(spec, device=device)
    if g.spec.model != model_name and not g.meta.get("any_classifier"):
        raise NeuronscopeError(
            f"generator was trained for {g.spec.model!r}, not {model_name!r}; "
            f"train one with `neuronscope train-generator {model_name} --images DIR`"
        )
    return g
