"""Stretching an image's contrast and colourfulness to photo statistics (facets/colour.py)."""

from __future__ import annotations

import pytest
import torch

from neuronscope.facets.colour import PHOTO_COLOURFULNESS, PHOTO_CONTRAST, to_photo_statistics
from neuronscope.priors.metrics import colourfulness, contrast


def _pale(seed: int = 0) -> torch.Tensor:
    """Two smooth, washed-out colour images (a mean image's kind): a grey-beige base with faint structure."""
    g = torch.Generator().manual_seed(seed)
    up = lambda t: torch.nn.functional.interpolate(t, size=(48, 48), mode="bicubic", align_corners=False)
    lum, col = up(torch.rand(2, 1, 6, 6, generator=g)), up(torch.rand(2, 3, 6, 6, generator=g))
    return (0.65 + 0.2 * (lum - 0.5) + 0.06 * (col - 0.5)).clamp(0, 1)


def test_a_pale_image_gets_the_photos_contrast_and_colourfulness_and_keeps_its_layout():
    x = _pale()
    assert (contrast(x) < 0.4 * PHOTO_CONTRAST).all() and (colourfulness(x) < 0.6 * PHOTO_COLOURFULNESS).all()
    y = to_photo_statistics(x)
    assert torch.allclose(contrast(y), torch.full((2,), PHOTO_CONTRAST), rtol=0.03)
    assert torch.allclose(colourfulness(y), torch.full((2,), PHOTO_COLOURFULNESS), rtol=0.03)
    assert y.min() >= 0 and y.max() <= 1
    # the same picture, stronger: each row's luminance pattern is a positive multiple of the original's
    lum = lambda t: (0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]).flatten(1)
    a, b = lum(x) - lum(x).mean(1, keepdim=True), lum(y) - lum(y).mean(1, keepdim=True)
    assert (torch.nn.functional.cosine_similarity(a, b, dim=1) > 0.99).all()
    assert torch.allclose(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.02)  # the mean colour stays


def test_strength_goes_part_of_the_way_and_a_vivid_image_is_toned_down():
    x = _pale(1)
    half = to_photo_statistics(x, strength=0.5)
    assert (contrast(x) < contrast(half)).all() and (contrast(half) < 0.9 * PHOTO_CONTRAST).all()
    assert torch.equal(to_photo_statistics(x, strength=0.0), x)
    vivid = (0.5 + 6.0 * (_pale(2) - 0.65)).clamp(0, 1)
    assert (contrast(vivid) > PHOTO_CONTRAST).all()
    assert torch.allclose(contrast(to_photo_statistics(vivid)), torch.full((2,), PHOTO_CONTRAST), rtol=0.03)
    flat = torch.full((1, 3, 8, 8), 0.4)  # nothing to stretch: stays flat, no NaN
    assert torch.allclose(to_photo_statistics(flat), flat, atol=1e-5)
    with pytest.raises(ValueError, match="strength"):
        to_photo_statistics(x, strength=2.0)
