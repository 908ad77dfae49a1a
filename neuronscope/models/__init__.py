"""Models: the adapter, the embedded EfficientNet-Lite family and the registry."""

from .adapter import Model, ModelInfo, Normalize
from .registry import DEFAULT_MODEL, available_models, default_device, imagenet_labels, load_model, resolve_device

__all__ = [
    "DEFAULT_MODEL", "Model", "ModelInfo", "Normalize", "available_models",
    "default_device", "imagenet_labels", "load_model", "resolve_device",
]
