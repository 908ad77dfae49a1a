"""PPGN-x's prior term as a step on the image, taken outside the optimizer.

After each optimizer step the render calls the prior: the current image x (of
the rows not frozen) moves toward the denoiser's output,

    x <- x + weight * (D(x, sigma_t) - x),

then each row gets back its colour statistics from before the step (``keep_contrast``):
its mean and standard deviation in an opponent colour space (luminance, red-green,
yellow-blue). The prior thus acts on local structure only. Left free, a denoiser also
removes contrast and colour a little at every call, and over hundreds of steps the
renders turned grey and flat (Lite0 class renders: luminance std 0.14 and
colourfulness 17 against the photos' 0.21 and 32); restoring them kept 0.17 and 26
at the same weight. Without ``keep_contrast`` only each row's mean colour is kept.

and the parameterization is set to produce the new image (``ImageParam.assign``:
exact for pixel and FFT images, phase-only for MACO). This is PPGN's
``eps1 (R(x) - x)`` term (a regularization-by-denoising step); fed through Adam
into a sigmoid-squashed FFT image instead, the same gradient drove renders to
saturated flat colour, because Adam rescales it to a full-size step per
coordinate whatever the weight.

The noise level follows a geometric schedule from ``sigma[0]`` to ``sigma[1]`` over
the render (coarse structure first, fine detail last), and the step can be taken
every ``every`` steps and stopped after a share ``until`` of the render.

The render ends on a prior step at noise level ``final_sigma`` (after its last
optimizer step; None: no such step; a row frozen earlier, or a render a callback
stops early, keeps its image as it was). Without it the image kept the finest-scale
noise of the optimizer steps since the last prior step: on the 31 held-out classes
of the naturalness benchmark, one last step at 0.05 lowered the KID to the photos
(Lite2 features) from 135 to 112 and raised Lite2's mean target probability from
0.74 to 0.82, the HF ratio going from 1.08 to 0.85 (photos: 1).

The denoiser runs in the precision the render's engine chooses (``start(..., dtype)``):
in bfloat16 and channels-last it costs about a third of float32 on a CPU with native
bf16; only its noise estimate is rounded, the image itself stays float32.
"""

from __future__ import annotations

import copy
import inspect
import math

import torch

from ..errors import NeuronscopeError
from ..optim.engine.fast_copy import resolve_precision
from .denoiser import Denoiser, load_denoiser
from .metrics import from_opponent, to_opponent


def _number(value) -> float:
    """``value`` as a float; NaN (which fails every range check) for anything that is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class DenoisingPrior:
    def __init__(self, denoiser: Denoiser | str | None = None, *, weight: float = 0.8,
                 sigma: tuple[float, float] = (0.05, 0.02), every: int = 4, until: float = 1.0,
                 keep_contrast: bool = True, contrast_floor: float | None = None,
                 final_sigma: float | None = 0.05):
        if not 0.0 < _number(weight) <= 1.0:
            raise ValueError(f"prior weight must be in (0, 1], got {weight!r}")
        try:
            sigma, every = tuple(float(s) for s in sigma), int(every)
        except (TypeError, ValueError):
            raise ValueError(f"prior sigma must be two numbers and every an integer, got {sigma!r}, {every!r}") from None
        if len(sigma) != 2 or not all(math.isfinite(s) and s > 0 for s in sigma):
            raise ValueError(f"prior sigma must be two positive noise levels (start, end), got {sigma!r}")
        if every < 1:
            raise ValueError(f"prior every must be at least 1, got {every}")
        if final_sigma is not None and not 0.0 < _number(final_sigma) < math.inf:
            raise ValueError(f"prior final_sigma must be a positive noise level or None, got {final_sigma!r}")
        self.final_sigma = None if final_sigma is None else float(final_sigma)
        self._denoiser = denoiser
        self.weight, self.sigma, self.every, self.until = float(weight), sigma, every, float(until)
        self.keep_contrast = bool(keep_contrast)
        if contrast_floor is not None and not (0.0 < contrast_floor < 0.5):
            raise ValueError(f"contrast_floor must be a luminance standard deviation in (0, 0.5), got {contrast_floor}")
        self.contrast_floor = None if contrast_floor is None else float(contrast_floor)
        self.steps = 1
        self._net: Denoiser | None = None
        self._dtype = torch.float32

    def describe(self) -> dict:
        return {"weight": self.weight, "sigma": list(self.sigma), "every": self.every, "until": self.until,
                "keep_contrast": self.keep_contrast, "contrast_floor": self.contrast_floor,
                "final_sigma": self.final_sigma}

    def start(self, steps: int, device, dtype: torch.dtype | None = None) -> "DenoisingPrior":
        """Bind to a render of ``steps`` steps on ``device``, the denoiser computing in ``dtype``
        (None: bfloat16 where the device has native bf16 arithmetic, else float32). Loads the
        denoiser once; a denoiser passed in by the caller is copied, never changed."""
        if dtype is None:
            dtype = resolve_precision("auto", device)
        self.steps = max(1, int(steps))
        if self._net is None:
            net = self._denoiser
            net = load_denoiser(net) if net is None or isinstance(net, str) else copy.deepcopy(net)
            self._net = net.eval().requires_grad_(False)
        self._dtype = dtype
        fmt = torch.channels_last if dtype != torch.float32 else torch.contiguous_format
        self._net = self._net.to(device=device, dtype=dtype, memory_format=fmt)
        return self

    def _final(self, step: int) -> bool:
        return self.final_sigma is not None and step == self.steps - 1

    def sigma_at(self, step: int) -> float:
        if self._final(step):
            return self.final_sigma
        s0, s1 = self.sigma
        f = min(1.0, step / max(1, self.steps - 1))
        return s0 * (s1 / s0) ** f

    def active(self, step: int) -> bool:
        return self._final(step) or (step % self.every == 0 and step < self.until * self.steps)

    @torch.no_grad()
    def apply(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """x moved toward the denoiser's output; each row keeps its colour statistics (see the module)."""
        xd = x.to(self._dtype)
        if self._dtype != torch.float32:
            xd = xd.contiguous(memory_format=torch.channels_last)
        y = x + self.weight * ((x - self._net.noise(xd, self.sigma_at(step)).float()).clamp(0, 1) - x)
        if self.keep_contrast:
            return restore_contrast(x, y, self.contrast_floor).clamp(0, 1)
        # the denoiser's residual carries a slight colour bias (about -0.003 on blue per call at sigma 0.2),
        # which, summed over hundreds of steps, tinted every render yellow-green: keep each row's mean colour
        return y - y.mean(dim=(-1, -2), keepdim=True) + x.mean(dim=(-1, -2), keepdim=True)

    @torch.no_grad()
    def __call__(self, param, step: int, frozen: torch.Tensor | None = None) -> None:
        if self._net is None:
            self.start(self.steps, next(param.parameters()).device)
        if not self.active(step):
            return
        param.assign(self.apply(param().detach(), step), None if frozen is None else ~frozen)


def as_prior(spec, defaults: dict | None = None) -> DenoisingPrior | None:
    """The ``prior`` argument of a render or a generator verb as a :class:`DenoisingPrior`, or None.

    ``spec``: None or False (none), True (``defaults``), a dict of DenoisingPrior settings (laid
    over ``defaults``) or a DenoisingPrior. Anything else, or settings the prior refuses, raises
    NeuronscopeError naming what is valid.
    """
    if spec is None or spec is False:
        return None
    if isinstance(spec, DenoisingPrior):
        return spec
    if spec is True:
        spec = {}
    if not isinstance(spec, dict):
        raise NeuronscopeError(f"prior must be a DenoisingPrior, a dict of its settings, True or False, got {spec!r}")
    settings = {**(defaults or {}), **spec}
    valid = tuple(k for k in inspect.signature(DenoisingPrior.__init__).parameters if k != "self")
    bad = sorted(k for k in settings if k not in valid)
    if bad:
        raise NeuronscopeError(f"unknown prior settings {bad}; valid: {', '.join(valid)}")
    try:
        return DenoisingPrior(**settings)
    except ValueError as e:
        raise NeuronscopeError(f"{e}; valid: a weight in (0, 1], sigma two positive noise levels, every at least 1, "
                               "contrast_floor in (0, 0.5), final_sigma a positive noise level or None") from None


#: at most this factor of luminance contrast gained per prior step toward ``contrast_floor``
FLOOR_RATE = 1.05


def restore_contrast(before: torch.Tensor, after: torch.Tensor, floor: float | None = None) -> torch.Tensor:
    """``after`` with each row's per-axis mean and standard deviation in opponent colour space set
    back to ``before``'s (both (B, 3, H, W)). ``floor``: a row whose luminance standard deviation is
    below it gets up to :data:`FLOOR_RATE` times more, never past the floor."""
    a, b = to_opponent(before), to_opponent(after)
    ma, mb = a.mean(dim=(-1, -2), keepdim=True), b.mean(dim=(-1, -2), keepdim=True)
    sa, sb = a.std(dim=(-1, -2), keepdim=True), b.std(dim=(-1, -2), keepdim=True)
    if floor is not None:
        lum = sa[:, :1]
        sa = torch.cat([torch.maximum(lum, torch.minimum(lum * FLOOR_RATE, torch.full_like(lum, floor))), sa[:, 1:]], 1)
    b = ma + (b - mb) * (sa / sb.clamp_min(1e-6))
    return from_opponent(b)
