"""High-level features to cluster example images by (the paper used CaffeNet fc7).

The default is the model's pooled penultimate features: the input of its last
``nn.Linear`` (1,280-d for EfficientNet-Lite0). A named layer can be used
instead; 4-D maps are averaged over positions and token layouts over tokens.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import NeuronscopeError
from ..models.adapter import Model
from ..taps import tap


def last_linear(model: Model) -> tuple[str, nn.Linear]:
    """The name and module of the network's last ``nn.Linear`` (its classifier)."""
    found = [(n, m) for n, m in model.net.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise NeuronscopeError(
            f"model {model.name!r} has no nn.Linear classifier to take penultimate features from; "
            "give an embedding layer (e.g. --embed-layer NAME)"
        )
    return found[-1]


def _pool(a: torch.Tensor) -> torch.Tensor:
    if a.dim() == 4:
        return a.mean(dim=(2, 3))
    if a.dim() == 3:
        return a.mean(dim=1)
    return a.flatten(1)


def embed(model: Model, images: torch.Tensor, layer: str | None = None, *, batch_size: int = 16) -> np.ndarray:
    """(N, D) features of [0, 1] (or uint8) images, as float32."""
    feats = []
    if images.dtype == torch.uint8:
        to_float = lambda t: t.float() / 255.0  # noqa: E731
    else:
        to_float = lambda t: t.float()  # noqa: E731
    if layer is None:
        _, fc = last_linear(model)
        captured = []
        handle = fc.register_forward_pre_hook(lambda m, args: captured.append(args[0].detach().float().cpu()))
        try:
            with torch.inference_mode():
                for i in range(0, len(images), batch_size):
                    captured.clear()
                    model(to_float(images[i : i + batch_size]).to(model.device))
                    feats.append(_pool(captured[-1]))
        finally:
            handle.remove()
    else:
        with torch.inference_mode(), tap(model, [layer], stop_early=True) as taps:
            for i in range(0, len(images), batch_size):
                taps.run(to_float(images[i : i + batch_size]).to(model.device))
                feats.append(_pool(taps[layer].float().cpu()))
    return torch.cat(feats).numpy().astype(np.float32) if feats else np.zeros((0, 0), np.float32)


def embed_address(model: Model, layer: str | None = None) -> str:
    """The layer address whose (position-averaged) output is :func:`embed`'s feature space.

    ``layer`` itself when given; otherwise the module whose output is the input of the
    last ``nn.Linear`` (for Lite0 the pooled 1,280-d features: ``dropout``, an identity
    in evaluation), found by running one image and comparing tensors; for a transformer
    whose head reads the class token ``x[:, 0]`` of a token layer, that layer's ``[cls]``.
    """
    if layer is not None:
        return layer
    fc_name, fc = last_linear(model)
    outputs: list[tuple[str, torch.Tensor]] = []
    fc_in: list[torch.Tensor] = []
    handles = [fc.register_forward_pre_hook(lambda m, args: fc_in.append(args[0].detach()))]

    def record(name):
        def hook(module, args, out):
            if isinstance(out, torch.Tensor) and not fc_in:
                outputs.append((name, out.detach()))
        return hook

    for name, module in model.net.named_modules():
        if name and module is not fc:
            handles.append(module.register_forward_hook(record(name)))
    try:
        with torch.inference_mode():
            model(torch.full((1, 3, model.input_size, model.input_size), 0.5, device=model.device))
    finally:
        for h in handles:
            h.remove()
    if fc_in:
        want = fc_in[0].flatten(1)
        for name, out in reversed(outputs):
            if out.flatten(1).shape == want.shape and torch.equal(out.flatten(1), want):
                return name
        # in the order modules finish: the innermost of modules that pass the same tokens on (encoder.ln
        # before encoder)
        for name, out in outputs:
            if out.dim() == 3 and out.shape[-1] == want.shape[-1] and torch.equal(out[:, 0], want):
                return f"{name}[cls]"
    raise NeuronscopeError(
        f"cannot find the layer that feeds {fc_name!r} in {model.name!r}; give an embedding layer (--embed-layer NAME)"
    )
