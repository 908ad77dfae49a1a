"""Bringing an image's contrast and colourfulness to photo statistics, keeping its structure.

A facet's mean image averages 15 different views, so it is a grey, low-contrast
version of its cluster (on Lite0 and the offline photos: luminance standard
deviation 0.03-0.15 and colourfulness 9-48, against the photos' medians of 0.20
and 32). :func:`to_photo_statistics` stretches each row's deviations from its mean
in an opponent colour space (luminance, red-green, yellow-blue; the axes of
Hasler & Suesstrunk's colourfulness, :mod:`neuronscope.priors.metrics`): the
luminance deviations to a target standard deviation, both colour axes by one
common factor to a target colourfulness. The mean colour, the layout and the hue
of every pixel's deviation stay; only their amplitude changes.
"""

from __future__ import annotations

import torch

from ..priors.metrics import from_opponent, to_opponent

# Medians over the 525 offline photos (resized to 160 px) of neuronscope.priors.metrics.contrast
# and .colourfulness: 0.204 and 31.9.
PHOTO_CONTRAST = 0.204
PHOTO_COLOURFULNESS = 31.9
MAX_GAIN = 8.0  # a nearly flat image is not stretched into amplified noise beyond this

def _stats(x: torch.Tensor):
    """Opponent means and deviations, luminance std, chroma std and the mean-chroma term (0-255 scale) per row."""
    o = to_opponent(x)
    mean = o.mean(dim=(-1, -2), keepdim=True)
    dev = o - mean
    std = dev.std(dim=(-1, -2))  # (B, 3)
    chroma_std = 255.0 * (std[:, 1] ** 2 + std[:, 2] ** 2).sqrt()
    chroma_mean = 0.3 * 255.0 * (mean[:, 1, 0, 0] ** 2 + mean[:, 2, 0, 0] ** 2).sqrt()
    return mean, dev, std[:, 0], chroma_std, chroma_mean


def to_photo_statistics(images: torch.Tensor, *, contrast: float = PHOTO_CONTRAST,
                        colourfulness: float = PHOTO_COLOURFULNESS, strength: float = 1.0,
                        max_gain: float = MAX_GAIN, rounds: int = 3) -> torch.Tensor:
    """(B, 3, H, W) images in [0, 1] with each row's luminance standard deviation moved to
    ``contrast`` and its colourfulness (0-255 scale) to ``colourfulness``.

    ``strength`` in [0, 1] goes that share of the way in log-gain (1: all the way, 0:
    unchanged); the gains are bounded to [1 / max_gain, max_gain]. Clipping to [0, 1] removes
    a little of the stretch, so the stretch toward the same per-row targets is repeated
    ``rounds`` times on the clipped result."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    x = images.float().clamp(0, 1)
    if strength == 0.0:
        return x.clone()
    _, _, lum, cstd, cmean = _stats(x)
    # per-row targets: the luminance std and the colour deviations' share of the colourfulness
    g_lum = (contrast / lum.clamp_min(1e-6)).clamp(1 / max_gain, max_gain) ** strength
    g_col = ((colourfulness - cmean).clamp_min(0.0) / cstd.clamp_min(1e-6)).clamp(1 / max_gain, max_gain) ** strength
    t_lum, t_col = lum * g_lum, cstd * g_col
    for _ in range(max(1, rounds)):
        mean, dev, lum, cstd, _ = _stats(x)
        gains = torch.stack([t_lum / lum.clamp_min(1e-6), *(2 * [t_col / cstd.clamp_min(1e-6)])], dim=1)
        y = from_opponent(mean + dev * gains.clamp(1 / max_gain, max_gain)[:, :, None, None]).clamp(0, 1)
        if torch.allclose(y, x, atol=1e-4):
            return y
        x = y
    return x
