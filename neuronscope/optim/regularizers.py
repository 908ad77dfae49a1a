"""Post-step image operators of Yosinski et al. 2015: x <- r(x + eta * grad), and their optimizer.

All operators work per batch row: step sizes, percentiles and blurs of one row
never depend on another row. Images here are 0-255 mean-subtracted RGB, as in
the paper's Caffe space (docs/design.md sections 2 and 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .engine.adam import zero_grads
from .transforms import gaussian_blur


@dataclass(frozen=True)
class DeepVisConfig:
    """One row of the paper's Table 1 plus the step-size rule."""

    decay: float = 0.0
    blur_sigma: float = 0.0
    blur_every: int = 0
    norm_pct: float = 0.0  # small-norm clipping percentile (0 = off)
    contrib_pct: float = 0.0  # small-contribution clipping percentile (0 = off)
    lr_policy: str = "progress"  # constant | progress | calibrated
    lr: float = 100.0  # constant step, or the cap (max_lr) of the progress rule
    desired_progress: float = 2.0


def row_quantile(values: torch.Tensor, pct: float) -> torch.Tensor:
    """The ``pct`` percentile of each row of (B, ...), shape (B, 1, ...) for broadcasting."""
    flat = values.flatten(1)
    k = max(1, min(flat.shape[1], int(round(pct / 100.0 * flat.shape[1]))))
    q = flat.kthvalue(k, dim=1).values
    return q.view(-1, *([1] * (values.dim() - 1)))


def step_size(grad: torch.Tensor, cfg: DeepVisConfig) -> torch.Tensor:
    """Per-row eta: constant, or min(max_lr, desired / ||g||^2) so each step aims at a fixed gain.

    'calibrated' uses the progress rule's eta of the first step as a constant for
    the whole run (the render loop freezes it): a constant step on the model's own
    gradient scale, which is what lr 100 was for CaffeNet.
    """
    if cfg.lr_policy == "constant":
        return torch.full((grad.shape[0],), cfg.lr, device=grad.device, dtype=grad.dtype)
    sq = grad.flatten(1).pow(2).sum(1)
    return torch.minimum(torch.full_like(sq, cfg.lr), cfg.desired_progress / sq.clamp(min=1e-20))


def decay(x: torch.Tensor, amount: float) -> torch.Tensor:
    return x * (1.0 - amount) if amount else x


def clip_small_norm(x: torch.Tensor, pct: float) -> torch.Tensor:
    """Zero pixels whose norm over channels is below the row's ``pct`` percentile."""
    if not pct:
        return x
    norms = x.norm(dim=1, keepdim=True)
    return x * (norms >= row_quantile(norms, pct))


def clip_small_contribution(x: torch.Tensor, grad: torch.Tensor, pct: float) -> torch.Tensor:
    """Zero pixels whose first-order contribution |sum_ch x * (-g)| is below the percentile."""
    if not pct:
        return x
    contrib = (x * -grad).sum(1, keepdim=True).abs()
    return x * (contrib >= row_quantile(contrib, pct))


def deepvis_update(x: torch.Tensor, grad: torch.Tensor, step: int, cfg: DeepVisConfig, mean: torch.Tensor,
                   eta: torch.Tensor | None = None) -> torch.Tensor:
    """One regularized ascent step on 0-255 mean-subtracted pixels, per row (``eta`` overrides the rule)."""
    eta = (step_size(grad, cfg) if eta is None else eta).view(-1, 1, 1, 1)
    x = x + eta * grad
    x = decay(x, cfg.decay)
    if cfg.blur_every and step % cfg.blur_every == 0 and cfg.blur_sigma > 0:
        x = gaussian_blur(x, cfg.blur_sigma)
    x = clip_small_norm(x, cfg.norm_pct)
    x = clip_small_contribution(x, grad, cfg.contrib_pct)
    # keep x + mean a valid 0-255 image
    return torch.maximum(torch.minimum(x, 255.0 - mean), -mean)


class DeepVisAscent:
    """:func:`deepvis_update` as an optimizer with the render Adam's interface (``step()``, ``zero_grad()``).

    ``pixels``: the 0-255 mean-subtracted (B, 3, H, W) pixels (a ``RawCaffeParam``'s),
    ``mean``: the RGB mean they are relative to. Each ``step()`` reads the gradient
    of the loss the render minimizes (``-V``), so the ascent direction is ``-grad``,
    and counts its own steps (the blur schedule). With the ``calibrated`` policy the
    step size of the first step is kept for the whole run. The paper's loop does not
    update after its last forward pass (:attr:`updates_after_last_step`).
    """

    updates_after_last_step = False

    def __init__(self, pixels: torch.Tensor, cfg: DeepVisConfig, mean: torch.Tensor):
        self.params = [pixels]
        self.cfg = cfg
        self.mean = mean.to(pixels.device).view(1, 3, 1, 1)
        self.eta0: torch.Tensor | None = None
        self._steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        zero_grads(self.params, set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        (x,) = self.params
        g = x.grad.clone()
        if self.cfg.lr_policy == "calibrated" and self.eta0 is None:
            self.eta0 = step_size(-g, self.cfg)
        x.copy_(deepvis_update(x, -g, self._steps, self.cfg, self.mean, self.eta0))
        self._steps += 1
