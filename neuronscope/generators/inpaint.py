"""Inpainting with a generator prior (PPGN script 7; docs/design.md 5.3).

Given an image x and a mask M (1 = hole to fill):

* the context is c = x outside the hole, and the mean context colour inside it;
  the chains start from h0 = E(c) (for a generator without its encoder at hand,
  the code that best reproduces the context, found by gradient descent) (every row a separate chain, rows after the
  first with a little noise on h0 for diversity);
* each step the generated image is composited, x~ = G(h) * M + c * (1 - M);
  the condition (optional: any target, e.g. ``class:ostrich``) and the prior
  see x~, and the context term ``context_weight`` * J_G^T [(c - G(h)) * (1 - M)]
  pulls G(h) toward the known pixels;
* the output is the composite, so the unmasked region is the input exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import NeuronscopeError
from ..units import parse_unit
from .base import Generator
from .conditions import Condition
from .ppgn import ChainResult, preset, run_chain


@dataclass
class InpaintResult:
    composites: torch.Tensor  # (B, 3, S, S) x~ : input outside the hole, generated inside
    generated: torch.Tensor  # (B, 3, S, S) raw G(h)
    context: torch.Tensor  # (1, 3, S, S) the context image c
    mask: torch.Tensor  # (1, 1, S, S) 1 = hole
    context_error_start: torch.Tensor  # (B,) MSE of G(h0) vs c outside the hole
    context_error_end: torch.Tensor  # (B,) same at the end
    chain: ChainResult


def parse_mask(spec: str, size: int) -> torch.Tensor:
    """A (1, 1, size, size) hole mask from ``box:X0,Y0,X1,Y1`` (fractions 0-1 of the square
    image) or from a mask image file (white = hole)."""
    s = spec.strip()
    if s.startswith("box:"):
        try:
            x0, y0, x1, y1 = (float(v) for v in s[4:].split(","))
        except ValueError:
            raise NeuronscopeError(f"cannot read mask {spec!r}; expected box:X0,Y0,X1,Y1 with fractions, e.g. box:0.3,0.3,0.7,0.7") from None
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise NeuronscopeError(f"mask box {spec!r} must satisfy 0 <= X0 < X1 <= 1 and 0 <= Y0 < Y1 <= 1")
        m = torch.zeros(1, 1, size, size)
        m[..., round(y0 * size) : max(round(y1 * size), round(y0 * size) + 1), round(x0 * size) : max(round(x1 * size), round(x0 * size) + 1)] = 1
        return m
    from ..images import load_image

    img = load_image(s).convert("L").resize((size, size), Image.NEAREST)
    m = (torch.from_numpy(__import__("numpy").asarray(img).copy()).float() / 255 > 0.5).float()[None, None]
    if m.sum() == 0:
        raise NeuronscopeError(f"mask image {s} has no white (hole) pixels")
    return m


def fit_code(generator: Generator, target: torch.Tensor, weight: torch.Tensor, *, steps: int = 40, seed: int = 0) -> torch.Tensor:
    """A code whose image matches ``target`` where ``weight`` is 1: E(x) by optimization, for
    generators whose encoder is not at hand. Adam from the mean code, clipped to the box each step."""
    h = generator.clip(generator.code_mean[None].clone()).requires_grad_(True)
    opt = torch.optim.Adam([h], lr=0.1 * float(generator.code_std.mean().clamp(min=1e-6)))
    for _ in range(steps):
        loss = (((generator(h) - target) * weight) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            h.copy_(generator.clip(h))
    return h.detach()


def inpaint(
    generator: Generator,
    model,
    image: torch.Tensor,
    mask: torch.Tensor,
    *,
    target: str | None = None,
    n: int = 4,
    variant: str = "noiseless-joint-ppgn-h",
    steps: int = 60,
    context_weight: float = 1.0,
    size: int | None = None,
    seed: int = 0,
    encoder=None,
    prior=None,
    progress: bool = True,
    **overrides,
) -> InpaintResult:
    """Fill the hole of ``image`` ((3, S, S) or (1, 3, S, S) in [0, 1], S = G's size) ``n`` ways.

    ``prior``: the natural-image prior's regularization-by-denoising term through G on the
    composite (a DenoisingPrior, a dict of its settings, True or None/False; see
    :mod:`neuronscope.generators.image_prior`). A pixel-space refinement does not apply here:
    it would change the known pixels.
    """
    from .image_prior import RED_DEFAULTS, image_prior

    red = image_prior(prior, RED_DEFAULTS)
    S = generator.image_size
    x = image[None] if image.dim() == 3 else image
    if x.shape[0] != 1 or x.shape[1] != 3:
        raise NeuronscopeError(f"inpaint takes one RGB image, got shape {tuple(image.shape)}")
    if x.shape[-2:] != (S, S):
        x = F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False, antialias=True)
    m = mask.float()
    while m.dim() < 4:
        m = m[None]
    if m.shape[-2:] != (S, S):
        m = (F.interpolate(m, size=(S, S), mode="nearest") > 0.5).float()
    if m.sum() == 0 or (1 - m).sum() == 0:
        raise NeuronscopeError("the mask must mark some pixels as hole (1) and leave some context (0)")
    device = generator.device
    x, m = x.to(device), m.to(device)
    keep = 1 - m
    fill = (x * keep).sum((2, 3), keepdim=True) / keep.sum()
    c = x * keep + fill * m
    encoder = encoder or model
    if generator.can_encode(encoder):
        h0 = generator.encode(encoder, c).repeat(n, 1)
    else:  # no encoder for this generator's code (BigGAN, a Caffe generator with another classifier)
        h0 = fit_code(generator, c, keep, seed=seed).repeat(n, 1)
    g = torch.Generator().manual_seed(seed)
    if n > 1:
        h0[1:] = h0[1:] + 0.3 * generator.code_std * torch.randn(h0[1:].shape, generator=g).to(device)
    h0 = generator.clip(h0)

    def composite(xg):
        return xg * m + c * keep

    def context(xg):  # -1/2 ||(c - G(h)) (1 - M)||^2 per row; its gradient is J^T[(c - x) (1 - M)]
        return -0.5 * (((c - xg) * keep) ** 2).flatten(1).sum(1)

    overrides.setdefault("steps", steps)
    cfg = preset(variant, **overrides)
    cond = None
    if target is not None:
        size = size or min(model.input_size, 2 * S)
        cond = Condition(model, [parse_unit(model, target, size=size)], size=size, kind=cfg.condition, compat=cfg.compat)
    else:
        cfg.eps2 = 0.0
    if cond is None:
        cfg.eps2 = 0.0

    def ctx_err(h):
        with torch.no_grad():
            return (((generator(h) - c) * keep) ** 2).flatten(1).sum(1).cpu() / float(keep.sum() * 3)

    start = ctx_err(h0)
    res = run_chain(
        generator, model, cond, cfg, init=h0, seed=seed, encoder=encoder, composite=composite,
        extra=context, extra_weight=context_weight, image_prior=red, progress=progress,
    )
    with torch.no_grad():
        gen_img = generator(res.codes.to(device)).cpu()
    return InpaintResult(res.images, gen_img, c.cpu(), m.cpu(), start, ctx_err(res.codes.to(device)), res)
