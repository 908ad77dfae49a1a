"""Classification of images: the model's top-k labels with probabilities."""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import torch

from .errors import NeuronscopeError
from .images import center_crop_resize, load_image, pil_to_tensor
from .models import Model


def top_k(model: Model, x: torch.Tensor, k: int = 5) -> list[list[tuple[int, str, float]]]:
    """Top-k (index, label, probability) for each row of a [0, 1] batch."""
    with torch.inference_mode():
        probs = model(x.to(model.device)).softmax(-1)
    p, idx = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [[(int(i), model.label(int(i)), float(q)) for q, i in zip(pr, ix)] for pr, ix in zip(p, idx)]


def classify_paths(model: Model, paths: Sequence[str | os.PathLike], top: int = 5) -> Iterator[tuple[str, object]]:
    """For each path, its top-k list or the NeuronscopeError that explains why not."""
    for path in paths:
        try:
            img = load_image(path)
        except NeuronscopeError as e:
            yield str(path), e
            continue
        x = pil_to_tensor(center_crop_resize(img, model.input_size, model.info.eval_resize))[None]
        yield str(path), top_k(model, x, top)[0]
