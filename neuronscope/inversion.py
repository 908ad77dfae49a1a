"""Network inversion (Mahendran & Vedaldi 2015): an image from a layer's code of a photo.

For a photo x0 and a layer Φ, find

    x* = argmin_x  ‖Φ(x) − Φ(x0)‖² / ‖Φ(x0)‖²
                   + [ (λ_α/2)·Σ u^α + (λ_V/2)·Σ_ij ((u_{i,j+1}−u_ij)² + (u_{i+1,j}−u_ij)²)^{β/2} ] / σ²

with the released settings of aravindhm/deep-goggle (docs/design.md 5.6): α = 6,
λ_α = 8e-10, β = 2, and λ_V = 1 / 10 / 100 by depth. The regularizers are
computed, as in the paper, in "Caffe units": u = 255·(x − ImageNet mean), so
λ_α and λ_V keep their published values whatever the model's own
preprocessing is. σ is the paper's average image norm (27098 for a 227×227×3
image, i.e. 68.9 per value), scaled to the image size. Differences use
replicate borders (the last row/column has zero difference) and are summed
over channels.

λ_V by depth. The paper used λ_V = 1 for MatConvNet AlexNet layers 1–6 (conv1
to relu2, output stride ≤ 8), 10 for layers 7–12 (norm2 to relu4, stride 16)
and 100 for layers 13–20 (conv5 to fc8, stride 16–32 and the fully connected
layers). We map by the layer's output stride: stride ≤ 8 → 1, ≤ 16 → 10,
otherwise (and for layers without a spatial map) → 100. On EfficientNet-Lite0
this is stem, blocks.0–4 → 1; blocks.5–10 → 10; blocks.11–15, head, pool, fc
→ 100, which also splits Lite0's 20 top-level layers at exactly the paper's
layer indices (6 / 6 / 8).

[ns] The image is kept in [0, 1] (projected after every step), because
neuronscope images live there; the paper's α-norm, which only discourages
large values, is kept as well. Several layers are inverted at once, one batch
row per layer (rows never mix). Optimizer: Adam (default; reaches the paper's
reconstructions in a few hundred steps) or the paper's SGD with momentum 0.9
and its ×1 / ×0.1 / ×0.01 learning-rate schedule, momentum reset at each change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .errors import NeuronscopeError
from .taps import module_names, resolve, tap

ALPHA = 6.0
BETA = 2.0
LAMBDA_ALPHA = 8e-10
PAPER_SIGMA = 27098.11571533  # experiments/x0_sigma.mat: norm of a 227x227x3 Caffe-space image
PAPER_VALUES = 227 * 227 * 3
CAFFE_MEAN = (0.485, 0.456, 0.406)
OPTIMIZERS = ("adam", "sgd")


def tv_lambda_for_stride(stride: float | None) -> float:
    """The paper's λ_V for a layer with this output stride (None = no spatial map)."""
    if stride is None or stride > 16:
        return 100.0
    return 1.0 if stride <= 8 else 10.0


def sigma_for(height: int, width: int) -> float:
    """The paper's average image norm in Caffe units, for an image of this size."""
    return PAPER_SIGMA * math.sqrt(3 * height * width / PAPER_VALUES)


def layer_order(model, layers: Sequence[str]) -> list[str]:
    """Layers sorted shallow to deep (module definition order, a container after its submodules;
    input first, logits last)."""
    names = module_names(model)
    rank: dict[str, int] = {}
    for i, n in enumerate(names):  # a container's output comes after its last submodule's
        parts = n.split(".")
        for j in range(1, len(parts) + 1):
            rank[".".join(parts[:j])] = i

    def key(name: str) -> float:
        path = resolve(model, name).path
        if path == "input":
            return -1
        if path == "logits":
            return len(names) + 1
        return rank[path]

    return sorted(dict.fromkeys(layers), key=key)


def total_variation(u: torch.Tensor, beta: float = BETA) -> torch.Tensor:
    """Σ ((u_{i,j+1}−u_ij)² + (u_{i+1,j}−u_ij)²)^{β/2} per row, replicate borders, summed over channels."""
    dx = torch.zeros_like(u)
    dy = torch.zeros_like(u)
    dx[..., :, :-1] = u[..., :, 1:] - u[..., :, :-1]
    dy[..., :-1, :] = u[..., 1:, :] - u[..., :-1, :]
    sq = dx * dx + dy * dy
    v = sq if beta == 2 else (sq + 1e-8) ** (beta / 2)
    return v.flatten(1).sum(1)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per row of two (B, ...) tensors."""
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


@dataclass
class InversionResult:
    """Reconstructions, one per layer, shallow to deep."""

    original: torch.Tensor  # (3, H, W) in [0, 1]
    layers: list[str]
    images: torch.Tensor  # (L, 3, H, W) in [0, 1]
    correlation: list[float]  # Pearson r with the original, after the model's preprocessing
    feature_error: list[float]  # ‖Φ(x*) − Φ0‖² / ‖Φ0‖²
    lambda_tv: list[float]
    strides: list[float | None]
    settings: dict = field(default_factory=dict)
    trace: list[list[float]] = field(default_factory=list)  # per step: total objective per row

    def manifest(self) -> dict:
        return {
            "method": "Mahendran & Vedaldi 2015 inversion",
            "settings": self.settings,
            "layers": [
                {
                    "layer": layer,
                    "correlation": round(r, 4),
                    "feature_error": round(e, 5),
                    "lambda_tv": lam,
                    "stride": s,
                }
                for layer, r, e, lam, s in zip(self.layers, self.correlation, self.feature_error, self.lambda_tv, self.strides)
            ],
        }


def _as_image(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise NeuronscopeError(f"expected an image tensor (3, H, W) in [0, 1], got {type(image).__name__}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise NeuronscopeError(f"expected one image of shape (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
    return image.detach().float()


def _stride(input_hw: tuple[int, int], feat: torch.Tensor) -> float | None:
    if feat.dim() != 4:
        return None
    return input_hw[0] / feat.shape[-2]


def invert(
    model,
    image: torch.Tensor,
    layers: Sequence[str],
    *,
    steps: int = 300,
    optimizer: str = "adam",
    lr: float | None = None,
    lambda_tv: float | Sequence[float] | None = None,
    lambda_alpha: float = LAMBDA_ALPHA,
    alpha: float = ALPHA,
    beta: float = BETA,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> InversionResult:
    """Reconstruct ``image`` (3, H, W in [0, 1]) from each of ``layers`` at once.

    ``lambda_tv``: None for the paper's depth mapping (module docstring), one
    number for all layers, or one per layer (in the order given). ``lr``: step
    size; default 0.05 per step in [0, 1] units for Adam (decayed ×0.1 over the
    last half), or the paper's 0.004 (with its schedule) for ``"sgd"``.
    """
    if optimizer not in OPTIMIZERS:
        raise NeuronscopeError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if not isinstance(steps, int) or steps < 1:
        raise NeuronscopeError(f"steps must be a positive integer, got {steps!r}")
    layers = list(layers)
    if not layers:
        raise NeuronscopeError("give at least one layer to invert, e.g. stem blocks.4 blocks.10 head")
    for name in layers:
        if resolve(model, name).path == "input":
            raise NeuronscopeError("layer 'input' is the image itself; choose a network layer")
    order = layer_order(model, layers)
    if isinstance(lambda_tv, (list, tuple)):
        if len(lambda_tv) != len(layers):
            raise NeuronscopeError(f"lambda_tv has {len(lambda_tv)} values for {len(layers)} layers")
        given = dict(zip(layers, lambda_tv))
        lambda_tv = [float(given[name]) for name in order]
    layers = order
    dev = model.device
    if device is not None and torch.device(device).type != dev.type:
        raise NeuronscopeError(f"the model is on {dev}, not {device}; move it first with model.to({str(device)!r})")
    x0 = _as_image(image).to(dev)
    H, W = x0.shape[-2:]
    L = len(layers)

    with torch.inference_mode(False):
        with torch.no_grad(), tap(model, layers, stop_early=True) as taps:
            taps.run(x0.unsqueeze(0))
            targets = [taps[name].detach().clone() for name in layers]
        strides = [_stride((H, W), t) for t in targets]
        if lambda_tv is None:
            lam_v = [tv_lambda_for_stride(s) for s in strides]
        elif isinstance(lambda_tv, (int, float)):
            lam_v = [float(lambda_tv)] * L
        else:
            lam_v = list(lambda_tv)
        lam_v_t = torch.tensor(lam_v, device=dev)
        norms = torch.stack([t.pow(2).sum() for t in targets]).clamp_min(1e-12)
        sigma = sigma_for(H, W)
        mean = torch.tensor(CAFFE_MEAN, device=dev).view(1, 3, 1, 1)

        # The paper starts from noise of norm σ (in Caffe units) around the mean.
        gen = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn((L, 3, H, W), generator=gen).to(dev)
        noise = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * sigma / 255.0
        x = (mean + noise).clamp(0, 1).requires_grad_(True)

        def objective(x: torch.Tensor, taps) -> tuple[torch.Tensor, torch.Tensor]:
            taps.run(x)
            feat = torch.stack(
                [(taps[name][r] - targets[r][0]).pow(2).sum() for r, name in enumerate(layers)]
            ) / norms
            u = 255.0 * (x - mean)
            u_alpha = u.pow(alpha) if float(alpha).is_integer() and int(alpha) % 2 == 0 else u.abs().pow(alpha)
            reg = (lambda_alpha / 2 * u_alpha.flatten(1).sum(1) + lam_v_t / 2 * total_variation(u, beta)) / sigma**2
            return feat + reg, feat

        if optimizer == "adam":
            base = 0.05 if lr is None else lr
            opt = torch.optim.Adam([x], lr=base)
            schedule = [base if t < steps // 2 else base * 0.1 ** ((t - steps // 2) / max(1, steps - steps // 2)) for t in range(steps)]
        else:
            # The paper's schedule (100 / 200 / 100 of 400 steps) stretched to `steps`.
            base = 0.004 if lr is None else lr
            opt = None
            velocity = torch.zeros_like(x)
            q1, q3 = steps // 4, steps - steps // 4
            schedule = [base if t < q1 else base * 0.1 if t < q3 else base * 0.01 for t in range(steps)]

        trace: list[list[float]] = []
        bar = tqdm(range(steps), desc=f"inverting {L} layer{'s' * (L > 1)}", disable=not progress, leave=False)
        with tap(model, layers, stop_early=True) as taps, torch.enable_grad():
            prev = None
            for t in bar:
                total, feat = objective(x, taps)
                trace.append(total.detach().cpu().tolist())
                if opt is not None:
                    for group in opt.param_groups:
                        group["lr"] = schedule[t]
                    opt.zero_grad(set_to_none=True)
                    total.sum().backward()
                    opt.step()
                else:
                    # SGD in Caffe units on σ²·objective, as invert_nn.m does; x = mean + u/255.
                    (grad,) = torch.autograd.grad((total * sigma**2).sum(), x)
                    grad_u = grad / 255.0
                    if schedule[t] != prev:
                        velocity.zero_()
                        prev = schedule[t]
                    velocity.mul_(0.9).sub_(schedule[t] * grad_u)
                    with torch.no_grad():
                        x.add_(velocity / 255.0)
                with torch.no_grad():
                    x.clamp_(0, 1)
                bar.set_postfix(feat=f"{feat.mean().item():.3g}")
            with torch.no_grad():
                total, feat = objective(x, taps)
        images = x.detach()
        with torch.no_grad():
            corr = pearson(model.preprocess(images), model.preprocess(x0.unsqueeze(0)).expand_as(images))

    settings = {
        "steps": steps,
        "optimizer": optimizer,
        "lr": base,
        "alpha": alpha,
        "beta": beta,
        "lambda_alpha": lambda_alpha,
        "sigma": sigma,
        "size": [int(H), int(W)],
        "seed": seed,
        "space": "regularizers in Caffe units u = 255*(x - ImageNet mean); x projected to [0,1]",
    }
    return InversionResult(
        original=x0.cpu(),
        layers=layers,
        images=images.cpu(),
        correlation=[float(c) for c in corr],
        feature_error=[float(e) for e in feat.detach().cpu()],
        lambda_tv=lam_v,
        strides=strides,
        settings=settings,
        trace=trace,
    )
