"""The small networks: generator, discriminator and code denoising autoencoder.

Sized for a 2-core CPU: the generator has ~2 M parameters, the
DAE ~1 M. Each net keeps the keyword arguments it was built with in
``.config`` so that a saved file rebuilds it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class UpStage(nn.Sequential):
    """Nearest x2, then ``convs`` x [3x3 conv, BN, LeakyReLU 0.2]."""

    def __init__(self, cin: int, cout: int, convs: int = 1):
        layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")]
        for i in range(convs):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), _act()]
        super().__init__(*layers)


class ConvGenerator(nn.Module):
    """Flat code (B, C*g*g) -> tanh image (B, 3, S, S), S = 4 * 2**stages.

    The code is viewed as a (C, g, g) map (g = 1 for a pooled vector). A 1x1
    conv reduces it to ``base`` channels; a 1x1 code is lifted to 4x4 by a
    linear layer, a g x g code is resized to 4x4. Then up-stages double the
    resolution with the given widths, and a 3x3 conv gives RGB.
    """

    def __init__(
        self,
        code_channels: int = 1280,
        grid: int = 2,
        image_size: int = 64,
        base: int = 256,
        widths: tuple[int, ...] = (256, 128, 64, 32, 32),
        double_convs: int = 2,
    ):
        super().__init__()
        stages = int(round(math.log2(image_size / 4)))
        if 4 * 2**stages != image_size or stages < 1:
            raise ValueError(f"image_size must be 4 * 2**k (8, 16, 32, 64, 128, ...), got {image_size}")
        widths = tuple(widths)
        if len(widths) < stages:
            widths = widths + (widths[-1],) * (stages - len(widths))
        widths = widths[:stages]
        self.config = dict(
            code_channels=code_channels, grid=grid, image_size=image_size, base=base, widths=list(widths), double_convs=double_convs
        )
        self.code_channels, self.grid, self.base = code_channels, max(1, grid), base
        g = self.grid
        self.reduce = nn.Sequential(nn.Conv2d(code_channels, base, 1), _act())
        if g == 1:
            self.lift = nn.Sequential(nn.Linear(base, base * 16), _act())
        else:
            self.lift = nn.Sequential(nn.Conv2d(base, base, 3, padding=1), _act())
        chans = [base] + list(widths)
        self.ups = nn.Sequential(
            *[UpStage(chans[i], chans[i + 1], 2 if i < double_convs else 1) for i in range(stages)]
        )
        self.to_rgb = nn.Conv2d(chans[-1], 3, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, g = h.shape[0], self.grid
        x = self.reduce(h.view(B, self.code_channels, g, g))
        if g == 1:
            x = self.lift(x.flatten(1)).view(B, self.base, 4, 4)
        else:
            x = self.lift(F.interpolate(x, size=(4, 4), mode="nearest"))
        return torch.tanh(self.to_rgb(self.ups(x)))


class Discriminator(nn.Module):
    """Stride-2 spectral-norm convs on the image, with a projection on the code h."""

    def __init__(self, code_dim: int, image_size: int = 64, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        layers, cin = [], 3
        for w in widths:
            layers += [spectral_norm(nn.Conv2d(cin, w, 4, 2, 1)), _act()]
            cin = w
        self.features = nn.Sequential(*layers)
        self.out = spectral_norm(nn.Linear(cin, 1))
        self.embed = spectral_norm(nn.Linear(code_dim, cin))

    def forward(self, x01: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        phi = self.features(x01 * 2 - 1).sum((2, 3))
        return self.out(phi).squeeze(1) + (self.embed(h) * phi).sum(1)


class CodeDAE(nn.Module):
    """Denoising autoencoder on flat codes viewed as (C, g, g) maps: R(h) ~ clean h.

    1x1 conv C -> hidden, a 3x3 mixing conv across the grid, 1x1 conv back to C,
    as a residual on the input (R(h) = h + f(h)).
    """

    def __init__(self, code_channels: int = 1280, grid: int = 2, hidden: int = 256):
        super().__init__()
        self.config = dict(code_channels=code_channels, grid=grid, hidden=hidden)
        self.code_channels, self.grid = code_channels, max(1, grid)
        self.f = nn.Sequential(
            nn.Conv2d(code_channels, hidden, 1), _act(),
            nn.Conv2d(hidden, hidden, 3, padding=1), _act(),
            nn.Conv2d(hidden, code_channels, 1),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, g = h.shape[0], self.grid
        x = h.view(B, self.code_channels, g, g)
        return (x + self.f(x)).flatten(1)


def build_generator_net(kind: str = "conv", **config) -> nn.Module:
    """Rebuild a saved generator network from its config: ``kind`` conv (the nets here), caffe
    (a converted Caffe generator) or biggan (a BigGAN adapter)."""
    if kind == "caffe":
        from .caffe_net import build_caffe_net

        return build_caffe_net(**config)
    if kind == "biggan":
        from .biggan import build_biggan_net

        return build_biggan_net(**config)
    if kind != "conv":
        raise ValueError(f"unknown generator net kind {kind!r}")
    return ConvGenerator(**config)


def build_dae(**config) -> CodeDAE:
    return CodeDAE(**config)


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
