"""The learned natural-image prior (:mod:`neuronscope.priors`, PPGN-x's) in the generator verbs.

In DGN-AM, PPGN and inpainting the image is G(h), not a free parameter, so the
prior's post-step ``x <- x + w (D(x, sigma) - x)`` (docs/prior.md) cannot be taken
on the image. It enters in one of two ways:

* :class:`RedTerm` -- regularization by denoising *through the generator*: each
  active step adds the code-space direction J_G^T r, with r = P(x) - x the
  denoising prior's step on x = G(h) (its colour statistics kept), to the code
  update. This is PPGN-x's ``eps1 (R(x) - x)`` term pushed into the code by
  backpropagation. In the ``scaled`` update it is normalized per row like the
  condition's gradient and takes ``weight`` times the condition's step.
* :func:`refine` -- a hybrid: a short pixel-space render with the ``natural``
  preset (lucid + the prior's post-step) started from G(h) upsampled to the
  model's size. The generator gives the layout, the render adds the detail and
  the sharpness the generator cannot draw; the result is no longer an image G
  can produce.

:func:`image_prior` (:func:`neuronscope.priors.as_prior`) reads the ``prior``
argument of the generator verbs as :func:`~neuronscope.optim.render` reads its own:
a :class:`~neuronscope.priors.DenoisingPrior`, a dict of its settings, True, or
None/False for none.
"""

from __future__ import annotations

import torch

from ..errors import NeuronscopeError
from ..priors.step import as_prior as image_prior  # noqa: F401  (the verbs read ``prior`` as render does)

#: the RED term's defaults: the code step toward the denoised image is this share of the condition's
#: step, every step, at the natural preset's noise levels
RED_DEFAULTS = {"weight": 0.5, "sigma": (0.05, 0.02), "every": 1}


class RedTerm:
    """Regularization by denoising through a generator (see the module doc).

    ``direction(x, step)`` is r = P(x) - x for the images x = G(h) (None on the steps the
    prior skips); the chain backpropagates it into the code. ``weight`` is the prior's step
    relative to the condition's in the ``scaled`` update.
    """

    def __init__(self, prior, steps: int, device):
        self.prior = prior.start(steps, device, torch.float32)
        self.weight = float(prior.weight)

    @torch.no_grad()
    def direction(self, x: torch.Tensor, step: int) -> torch.Tensor | None:
        if not self.prior.active(step):
            return None
        x = x.detach().float().clamp(0, 1)
        return self.prior.apply(x, step) - x


#: the hybrid refinement's length for ``refine=True``: natural-preset steps at the model's size
REFINE_STEPS = 128


def refine_size(model, units, condition_size: int) -> int:
    """The size the refinement renders at: the model's own, unless a unit names a position
    (``LAYER:C@X,Y``), whose grid depends on the size: then the size the chain used."""
    if any(u.position is not None for u in units):
        return condition_size
    return int(model.input_size)


def refine(model, units, images: torch.Tensor, *, steps: int = REFINE_STEPS, size: int, prior=None,
           seed: int = 0, progress: bool = False):
    """A ``natural``-preset render of each row's unit from ``images`` (G(h), any size), ``steps`` steps
    at ``size`` px. ``prior``: None keeps the preset's denoising prior; a DenoisingPrior, a dict or
    False as :func:`~neuronscope.optim.render`. Returns the RenderResult (images at ``size``)."""
    from ..optim import render

    if int(steps) < 1:
        raise NeuronscopeError(f"refine steps must be at least 1 (0 or False: no refinement), got {steps}")
    if len(units) != images.shape[0]:
        raise NeuronscopeError(f"{len(units)} targets for {images.shape[0]} images")
    init = torch.nn.functional.interpolate(images.detach().float().clamp(0, 1).cpu(), size=(size, size),
                                           mode="bilinear", align_corners=False)
    # keep the start away from 0 and 1, where the sigmoid parameterization's inverse is unbounded
    init = init.clamp(0.02, 0.98)
    kw = {} if prior is None else {"prior": prior}
    return render(model, [u.objective() for u in units], preset="natural", init=init, steps=int(steps), size=size,
                  seed=seed, progress=progress, description="refining", **kw)


def refine_steps(value, default: int = REFINE_STEPS) -> int:
    """The ``refine`` argument as a number of steps: False/None/0 -> 0, True -> ``default``."""
    if value is None or value is False:
        return 0
    if value is True:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise NeuronscopeError(f"refine must be a number of steps >= 0 (0 or False: none; True: {default}), got {value!r}")
    return value


def refined(res, model, rows, steps: int, size: int, prior=None, seed: int = 0, progress: bool = False):
    """The chain result ``res`` with its images replaced by their natural-preset refinement, G's own
    images kept in ``generated`` (``size``: the size the chain's condition used)."""
    from dataclasses import replace

    out = refine(model, rows, res.images, steps=steps, size=refine_size(model, rows, size), prior=prior, seed=seed,
                 progress=progress)
    return replace(res, images=out.images, values=out.values, generated=res.images)
