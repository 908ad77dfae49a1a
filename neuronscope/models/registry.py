"""``load_model``: one entry point for embedded, torchvision, timm and user models."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import NeuronscopeError, closest
from ..layouts import check_names, make_spec
from .adapter import Model, ModelInfo
from .efficientnet_lite import CONFIGS, build_efficientnet_lite

DEFAULT_MODEL = "efficientnet_lite0"
_LABELS_FILE = Path(__file__).with_name("imagenet_classes.txt")


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, offline (line i = class i)."""
    return _LABELS_FILE.read_text().splitlines()


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise NeuronscopeError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NeuronscopeError(f"device {device!r} asked for, but CUDA is not available here; use cpu")
    return dev


def _embedded(name: str) -> Model:
    cfg = CONFIGS[name]
    net = build_efficientnet_lite(name)
    info = ModelInfo(name=name, input_size=cfg.input_size, labels=imagenet_labels(), source="embedded")
    return Model(net, "minus_one_one", info)


def _onnx(path: str, preprocess, input_size: int | None, labels: list[str] | None, name: str | None) -> Model:
    """An ONNX file through onnx2torch; size and classes from the graph unless given."""
    from .onnx_import import convert_onnx

    net, declared_size, classes = convert_onnx(path)
    if labels is None and classes == 1000:
        labels = imagenet_labels()
    size = input_size or declared_size or 224
    info = ModelInfo(name=name or f"onnx:{path}", input_size=size, labels=labels, source="onnx",
                     fixed_size=declared_size is not None)  # a graph traced at one size runs at that size
    return Model(net, "imagenet" if preprocess is None else preprocess, info)


def available_models() -> list[str]:
    return list(CONFIGS)


def load_model(
    model: str | nn.Module | Model = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    preprocess: str | nn.Module | Callable | None = None,
    input_size: int | None = None,
    labels: list[str] | None = None,
    output: int | str | None = None,
    name: str | None = None,
    token_grid: tuple[int, int] | None = None,
    prefix_tokens: int | Sequence[str] | None = None,
    layouts: dict[str, str] | None = None,
    fixed_size: bool | None = None,
) -> Model:
    """Load a model by name, or wrap a user ``nn.Module``.

    Names: ``efficientnet_lite0|1|2`` (embedded weights), ``torchvision:NAME``
    or ``torchvision:NAME.WEIGHTS`` and ``timm:NAME`` (optional extras; the input
    size, normalization, crop fraction and class names come from the weights'
    own preset; torchvision and timm download the weights once into their caches:
    :mod:`.from_torchvision`, :mod:`.from_timm`), ``onnx:PATH`` (an ONNX file, through the optional onnx2torch;
    ``preprocess`` defaults to ImageNet normalization, size and labels come from
    the graph unless given), or ``package.module:factory``. A user module needs its
    ``preprocess`` declared: ``"imagenet"``, ``"minus_one_one"``, ``"none"``, an
    ``nn.Module`` or a callable on [0, 1] batches.

    ``token_grid``, ``prefix_tokens`` and ``layouts`` declare how token and
    channels-last outputs map to channels and space when that cannot be
    inferred (see :mod:`neuronscope.layouts`), e.g. ``token_grid=(14, 14),
    prefix_tokens=1`` for a ViT-B/16 at 224 px. ``fixed_size=True`` says the
    network only runs at ``input_size`` (fixed position embeddings): images of
    other sizes (renders' jittered and scaled crops, top-k at ``--size``) are
    resized to it; torchvision and timm models with position embeddings get it
    by default.
    """
    dev = resolve_device(device)
    spec = make_spec(token_grid, prefix_tokens, layouts)
    m = _load(model, dev, preprocess, input_size, labels, output, name)
    if fixed_size is not None:
        m.info.fixed_size = bool(fixed_size)
    if spec is not None:
        check_names(spec, [n for n, _ in m.net.named_modules() if n])
        m.info.extra["layout"] = spec
        m.__dict__.pop("_neuronscope_probe", None)
    return m


def _load(model, dev, preprocess, input_size, labels, output, name) -> Model:
    if isinstance(model, Model):
        return model.to(dev)
    if isinstance(model, nn.Module):
        if preprocess is None:
            raise NeuronscopeError(
                "a user nn.Module needs its preprocessing declared: preprocess='imagenet', "
                "'minus_one_one', 'none', an nn.Module or a callable"
            )
        info = ModelInfo(name=name or type(model).__name__, input_size=input_size or 224, labels=labels)
        return Model(model, preprocess, info, output=output).to(dev)
    if not isinstance(model, str):
        raise NeuronscopeError(f"load_model expects a name or an nn.Module, got {type(model).__name__}")
    key = model.strip()
    if key.replace("-", "_") in CONFIGS:
        m = _embedded(key.replace("-", "_"))
    elif key.startswith("torchvision:"):
        from .from_torchvision import load_torchvision

        m = load_torchvision(key.split(":", 1)[1])
    elif key.startswith("timm:"):
        from .from_timm import load_timm

        m = load_timm(key.split(":", 1)[1])
    elif key.startswith("onnx:"):
        m = _onnx(key.split(":", 1)[1], preprocess, input_size, labels, name)
    elif ":" in key:
        from ..model_import import import_factory

        m = import_factory(key, preprocess=preprocess, input_size=input_size if input_size != 224 else None,
                           labels=labels, output=output)
    else:
        hits = closest(key, CONFIGS)
        raise NeuronscopeError(
            f"unknown model {model!r}; embedded models: {', '.join(CONFIGS)}"
            + (f" (did you mean {hits[0]}?)" if hits else "")
            + "; also torchvision:NAME, timm:NAME, onnx:PATH or package.module:factory"
        )
    if output is not None:
        m.output = output
    return m.to(dev)
