"""The PPGN sampler (Nguyen et al. 2017; docs/design.md 5.3) -- and the engine DGN-AM uses.

Each step, per batch row::

    h <- h + eps1 * (R(h) - h) + lr_t * eps2 * dcond + noise      (update="scaled")
    h <- decay * clip(h)

* R is the prior's denoiser: ``dae`` (PPGN-h: a DAE on codes), ``cycle``
  (joint PPGN-h: R = E o G, the generator's own encoder round trip) or
  ``none`` (DGN-AM: only the L2 decay acts as a prior) or ``gauss``
  (R(h) = the mean code mu: the drift of a Gaussian code prior, for
  generators without a DAE or an encoder, e.g. BigGAN or the Caffe fc6 one).
* dcond = d log p(y | G(h)) / dh (exact log-softmax by default; ``compat``
  gives the released (1 - p_y) gradient) or, for DGN-AM, d a / dh.
* ``update`` says how the terms are scaled, since the papers' epsilons were
  tuned for Caffe-space fc6 codes and do not transfer:

  - ``scaled`` [ns, default]: dcond is normalized per row to mean |.| = 1 and
    multiplied by the mean per-unit std of real codes, so ``eps2 * lr`` is the
    mean step in units of a code std; eps1 is the fraction of the way to R(h)
    taken per step; the noise is N(0, (eps3 * sigma_j)^2) per unit.
  - ``released``: d = eps1 (R(h) - h) + eps2 dcond + N(0, eps3^2), then
    h += lr * d / mean|d| (the released sampler.py).
  - ``raw``: the paper's formula as written, h += eps1 (R(h)-h) + eps2 dcond
    + N(0, eps3^2) (lr multiplies the first two terms).

``reset_every k`` restarts every row from a fresh random code every k steps
with eps1 drawn log-uniformly from ``reset_eps1`` (the released chains), which
gives many diverse samples per class from one chain. Frames are kept every
``save_every`` steps after ``burn_in``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from ..errors import NeuronscopeError
from ..units import parse_units
from .base import Generator
from .conditions import Condition

PRIORS = ("dae", "cycle", "none", "gauss")
#: the default ``refine`` of :func:`sample` and ``neuronscope sample``: chosen with benchmarks/generator_priors.py on
#: 8 held-out classes (docs/generators.md): joint PPGN-h's samples, Lite2 top-1 0.05 -> 0.98 with their diversity
#: kept (Lite1 0.31 -> 0.30). 64, not dgn's 128: a target has n samples to refine. ``refine=0``: PPGN's own samples.
SAMPLE_REFINE = 64
UPDATES = ("scaled", "released", "raw")


@dataclass
class SamplerConfig:
    """One chain's settings (see the module doc)."""

    eps1: float = 0.0
    eps2: float = 1.0
    eps3: float = 0.0
    prior: str = "none"
    steps: int = 200
    lr: float = 1.0
    lr_end: float | None = None  # linear schedule lr -> lr_end; None keeps lr constant
    decay: float = 1.0
    update: str = "scaled"
    compat: bool = False
    condition: str = "logprob"  # logprob (PPGN) or activation (DGN-AM)
    reset_every: int | None = None
    reset_eps1: tuple[float, float] = (0.003, 0.03)
    save_every: int = 5
    burn_in: int = 0
    init: str = "stats"  # stats: N(mu, sigma^2) clipped; normal: N(0, 1) clipped
    clip: bool = True


# Presets: the published variants, with epsilons re-expressed in the ``scaled`` update and
# tuned on the shipped Lite0 generator (4 classes): a 10 % pull toward R(h) per step or a
# step of 0.6 sigma drowned the class gradient; 1 % and 0.2 sigma reached p > 0.9 on 3 of 4.
PRESETS: dict[str, SamplerConfig] = {
    "dgn-am": SamplerConfig(eps1=0.0, eps2=1.0, eps3=0.0, prior="none", decay=0.99, lr=0.3, lr_end=1e-10,
                            condition="activation", steps=200),
    "ppgn-h": SamplerConfig(eps1=0.01, eps2=1.0, eps3=0.03, prior="dae", lr=0.2, steps=200, burn_in=40),
    "joint-ppgn-h": SamplerConfig(eps1=0.01, eps2=1.0, eps3=0.03, prior="cycle", lr=0.2, steps=200, burn_in=40),
    "noiseless-joint-ppgn-h": SamplerConfig(eps1=0.01, eps2=1.0, eps3=0.0, prior="cycle", lr=0.2, steps=200, burn_in=40),
    # Generators that bring neither a code DAE nor their encoder (BigGAN, the Caffe fc6 generator
    # steering another classifier): PPGN's update with a pull toward the mean code as the prior.
    "ppgn-gauss": SamplerConfig(eps1=0.01, eps2=1.0, eps3=0.03, prior="gauss", lr=0.2, steps=200, burn_in=40),
}


def preset(name: str, **overrides) -> SamplerConfig:
    """A preset by name, with field overrides (``preset("ppgn-h", steps=100)``)."""
    key = name.strip().lower().replace("_", "-")
    if key not in PRESETS:
        raise NeuronscopeError(f"unknown sampler variant {name!r}; valid: {', '.join(PRESETS)}")
    bad = [k for k in overrides if not hasattr(PRESETS[key], k)]
    if bad:
        raise NeuronscopeError(f"unknown sampler settings {bad}; valid: {', '.join(SamplerConfig.__dataclass_fields__)}")
    return replace(PRESETS[key], **{k: v for k, v in overrides.items() if v is not None})


def no_encoder_variants(generator: Generator) -> list[str]:
    """The presets that run without the generator's encoder (``ppgn-h`` only if it has a code DAE)."""
    return [k for k, v in PRESETS.items() if v.prior != "cycle" and (v.prior != "dae" or generator.dae is not None)]


def variant_for(generator: Generator, model, variant: str, encoder=None) -> str:
    """``variant``, or when it needs an encoder this generator cannot use with ``model``, the PPGN
    variant that does not: ``ppgn-h`` with the generator's DAE, else ``ppgn-gauss``."""
    cfg = preset(variant)
    if cfg.prior != "cycle" or generator.can_encode(encoder or model):
        return variant
    return "ppgn-h" if generator.dae is not None else "ppgn-gauss"


@dataclass
class ChainResult:
    """What a chain returns: last images and codes per row, plus saved frames."""

    images: torch.Tensor  # (B, 3, S, S) last images in [0, 1]
    codes: torch.Tensor  # (B, D) last codes
    values: torch.Tensor  # (B,) condition value of the last images
    trace: np.ndarray  # (steps, B) condition value per step
    frames: list[tuple[int, torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (step, images uint8, values)
    best_images: torch.Tensor | None = None  # (B, 3, S, S) the highest-valued image seen per row
    best_values: torch.Tensor | None = None
    generated: torch.Tensor | None = None  # G's images when ``images`` were refined in pixel space (a hybrid)

    def samples(self, row: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All saved frames of one row: images (F, 3, S, S) in [0, 1] and their values (F,)."""
        if not self.frames:
            return self.images[row : row + 1], self.values[row : row + 1]
        ims = torch.stack([f[1][row] for f in self.frames]).float() / 255
        vals = torch.stack([f[2][row] for f in self.frames])
        return ims, vals


def _row_mean_abs(t: torch.Tensor) -> torch.Tensor:
    return t.abs().mean(1, keepdim=True).clamp(min=1e-12)


def run_chain(
    generator: Generator,
    model,
    condition: Condition | Callable[[torch.Tensor], torch.Tensor] | None,
    cfg: SamplerConfig,
    *,
    batch: int | None = None,
    init: torch.Tensor | None = None,
    seed: int = 0,
    encoder=None,
    composite: Callable[[torch.Tensor], torch.Tensor] | None = None,
    extra: Callable[[torch.Tensor], torch.Tensor] | None = None,
    extra_weight: float = 0.0,
    image_prior=None,
    progress: bool = True,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> ChainResult:
    """Run ``cfg.steps`` sampler steps on ``batch`` rows (see the module doc).

    ``condition`` maps [0, 1] images to a value per row (None: prior only).
    ``composite`` maps G(h) to the image the condition and prior see (inpainting);
    ``extra`` is another per-row objective on G(h) added with ``extra_weight``,
    normalized like the condition (inpainting's context match).
    ``image_prior``: the learned natural-image prior as a regularization-by-denoising
    term through G (:mod:`neuronscope.generators.image_prior`; a DenoisingPrior, a
    dict of its settings, or None/False): on the image the condition sees, its step
    r = P(x) - x is backpropagated into the code, J_G^T r, and in the ``scaled``
    update added with ``weight`` times the condition's step.
    """
    from tqdm.auto import tqdm

    if cfg.prior not in PRIORS:
        raise NeuronscopeError(f"unknown prior {cfg.prior!r}; valid: {', '.join(PRIORS)}")
    if cfg.update not in UPDATES:
        raise NeuronscopeError(f"unknown update {cfg.update!r}; valid: {', '.join(UPDATES)}")
    if cfg.steps < 1:
        raise NeuronscopeError(f"steps must be >= 1, got {cfg.steps}")
    device = generator.device
    if init is not None:
        h = init.detach().to(device).float().clone()
    else:
        if batch is None:
            batch = len(condition.targets) if isinstance(condition, Condition) else 1
        h = generator.random_codes(batch, seed=seed, kind=cfg.init)
    B = h.shape[0]
    if cfg.prior == "cycle":
        encoder = encoder or model
        if not generator.can_encode(encoder):
            raise NeuronscopeError(
                f"prior 'cycle' needs the generator's encoder {generator.spec.model!r}; pass encoder=load_model(...), "
                f"or use a variant whose prior needs no encoder: {', '.join(no_encoder_variants(generator))}"
            )
    from .image_prior import RedTerm, image_prior as read_prior

    red_prior = read_prior(image_prior)
    red = RedTerm(red_prior, cfg.steps, device) if red_prior is not None else None
    gen = torch.Generator().manual_seed(seed + 7919)
    sigma = generator.code_std.clamp(min=0)
    sigma_bar = float(sigma.mean()) or 1.0
    eps1 = torch.full((B, 1), float(cfg.eps1), device=device)
    trace = np.zeros((cfg.steps, B), dtype=np.float32)
    frames: list = []
    best_v = torch.full((B,), -float("inf"))
    best_x = None
    composite = composite or (lambda x: x)

    def prior_term(h, x_seen):
        if cfg.prior == "dae":
            with torch.no_grad():
                return generator.denoise(h) - h
        if cfg.prior == "cycle":
            return generator.encode(encoder, x_seen.detach()) - h
        if cfg.prior == "gauss":
            return generator.code_mean - h
        return torch.zeros_like(h)

    bar = tqdm(range(cfg.steps), desc=f"sampling ({cfg.prior})", disable=not progress, unit="step")
    for i in bar:
        lr = cfg.lr if cfg.lr_end is None else cfg.lr + (cfg.lr_end - cfg.lr) * i / max(1, cfg.steps)
        if cfg.reset_every and i > 0 and i % cfg.reset_every == 0:
            h = generator.random_codes(B, seed=seed + 104729 * i, kind=cfg.init)
            lo, hi = (math.log(v) for v in cfg.reset_eps1)
            eps1 = torch.exp(lo + (hi - lo) * torch.rand((B, 1), generator=gen)).to(device)
        hv = h.detach().requires_grad_(True)
        x = generator(hv)
        seen = composite(x)
        r = red.direction(seen, i) if red is not None else None
        if condition is not None and cfg.eps2 != 0:
            v = condition(seen)
            g = torch.autograd.grad(v.sum(), hv, retain_graph=extra is not None or r is not None)[0]
        else:
            v = torch.zeros(B, device=device)
            g = torch.zeros_like(h)
        if extra is not None and extra_weight:
            e = extra(x)
            ge = torch.autograd.grad(e.sum(), hv, retain_graph=r is not None)[0]
        else:
            ge = None
        gr = torch.autograd.grad((seen * r).sum(), hv)[0] if r is not None else None
        with torch.no_grad():
            trace[i] = v.detach().cpu().numpy()
            vc = v.detach().cpu()
            better = vc > best_v
            if better.any():
                xs = seen.detach().cpu()
                best_x = xs.clone() if best_x is None else torch.where(better[:, None, None, None], xs, best_x)
                best_v = torch.where(better, vc, best_v)
            p = prior_term(h, seen) if cfg.eps1 != 0 or cfg.reset_every else torch.zeros_like(h)
            if cfg.update == "scaled":
                d = cfg.eps2 * sigma_bar * g / _row_mean_abs(g) if cfg.eps2 != 0 else torch.zeros_like(h)
                if ge is not None:
                    d = d + extra_weight * sigma_bar * ge / _row_mean_abs(ge)
                if gr is not None:
                    d = d + red.weight * sigma_bar * gr / _row_mean_abs(gr)
                h = h + eps1 * p + lr * d
                if cfg.eps3:
                    h = h + cfg.eps3 * sigma * torch.randn(h.shape, generator=gen).to(device)
            elif cfg.update == "released":
                d = eps1 * p + cfg.eps2 * g
                if ge is not None:
                    d = d + extra_weight * ge
                if gr is not None:
                    d = d + gr
                if cfg.eps3:
                    d = d + cfg.eps3 * torch.randn(h.shape, generator=gen).to(device)
                h = h + lr * d / _row_mean_abs(d)
            else:  # raw
                d = eps1 * p + cfg.eps2 * g + (extra_weight * ge if ge is not None else 0) + (gr if gr is not None else 0)
                h = h + lr * d
                if cfg.eps3:
                    h = h + cfg.eps3 * torch.randn(h.shape, generator=gen).to(device)
            if cfg.clip:
                h = generator.clip(h)
            h = h * cfg.decay
            if cfg.save_every and i >= cfg.burn_in and (i + 1) % cfg.save_every == 0:
                frames.append((i + 1, (seen.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8), vc.clone()))
            if callback is not None:
                callback(i, seen.detach(), vc)
        if progress:
            bar.set_postfix(value=f"{float(vc.mean()):.3f}")
    with torch.no_grad():
        x = composite(generator(h))
        v = condition(x) if condition is not None else torch.zeros(B)
    return ChainResult(x.cpu(), h.cpu(), v.detach().cpu(), trace, frames, best_x, best_v)


def sample(
    generator: Generator,
    model,
    targets,
    *,
    n: int = 8,
    variant: str = "joint-ppgn-h",
    size: int | None = None,
    seed: int = 0,
    progress: bool = True,
    encoder=None,
    prior=None,
    refine: int | bool = SAMPLE_REFINE,
    refine_prior=None,
    **overrides,
) -> tuple[ChainResult, list]:
    """``n`` chains per target, all targets in one batch (rows = targets x n).

    Returns the chain result and the list of row targets. Each chain's saved
    frames are further samples (``result.samples(row)``). ``prior``: the
    natural-image prior's RED term through G (see :func:`run_chain`); ``refine``:
    steps of the hybrid pixel-space refinement of each chain's last image (0/False:
    none; :mod:`neuronscope.generators.image_prior`), with ``refine_prior`` as
    render's ``prior``; the saved frames stay G's.
    """
    from .image_prior import RED_DEFAULTS, image_prior, refine_steps, refined

    red = image_prior(prior, RED_DEFAULTS)
    refine = refine_steps(refine)
    size = size or min(model.input_size, 2 * generator.image_size)
    tlist = parse_units(model, targets if isinstance(targets, (list, tuple)) else [targets], size=size)
    cfg = preset(variant, **overrides)
    rows = [t for t in tlist for _ in range(n)]
    cond = Condition(model, rows, size=size, kind=cfg.condition, compat=cfg.compat)
    res = run_chain(generator, model, cond, cfg, batch=len(rows), seed=seed, encoder=encoder, image_prior=red,
                    progress=progress)
    if refine:
        res = refined(res, model, rows, refine, size, refine_prior, seed, progress)
    return res, rows
