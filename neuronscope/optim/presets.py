"""Named render settings: Lucid's default, the four sets of Yosinski et al. 2015, MACO, and a floor.

A preset fixes the parameterization, the transforms, the optimizer and the step
budget; ``render(..., preset=NAME)`` uses it and any keyword overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from ..errors import NeuronscopeError
from .regularizers import DeepVisConfig
from .transforms import Compose, identity, lucid_standard


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    param: str = "fft"
    param_kw: dict = field(default_factory=dict)
    transforms: Callable[[], Compose] = lucid_standard
    optimizer: str = "adam"  # adam | deepvis
    lr: float = 0.05
    steps: int = 512
    redirect_steps: int = 16  # ReLU gradient redirection while step <= this (-1: off)
    keep: str = "last"  # last | best image per row
    deepvis: DeepVisConfig | None = None
    prior: dict | None = None  # DenoisingPrior settings: the learned natural-image prior's step, or None
    precision: str = "mixed"  # the engine's precision when the caller names no engine (Engine(precision=...))

    def with_(self, **kw) -> "Preset":
        return replace(self, **kw)


PRESETS: dict[str, Preset] = {}


def _add(p: Preset) -> None:
    PRESETS[p.name] = p


_add(Preset("lucid", "FFT + decorrelated colour + sigmoid, Lucid's standard transforms, Adam 0.05, "
            "ReLU redirection for 17 steps (Olah et al. 2017)"))
#: the learned natural-image prior's step in the ``natural`` preset (see neuronscope.priors.step; the same as
#: ``DenoisingPrior()``'s defaults): weight 0.8 every 4th step, sigma 0.05 -> 0.02, and a last step at 0.05 after
#: the last Adam step (which removes the finest-scale noise the Adam steps leave). Chosen on the 31 held-out
#: classes of benchmarks/naturalness.py (never the 16 of benchmarks/classes.py) among the settings that
#: docs/prior.md lists, by HF ratio in the photos' band, Lite2 top-1 and KID; every 4th step costs a quarter of
#: the denoising of every step
NATURAL_PRIOR = {"weight": 0.8, "sigma": (0.05, 0.02), "every": 4, "final_sigma": 0.05}
#: 256 steps, not lucid's 512: with the prior, 256 steps already reach the figures of docs/prior.md.
#: precision "auto" (bfloat16 throughout where the CPU has it natively), not "mixed" (the last quarter in float32,
#: whose steps cost twice a bfloat16 step here): on the 31 held-out classes with two seeds each the float32 tail
#: made no difference beyond the noise (docs/render-speed.md gives the table)
_add(Preset("natural", "lucid plus the learned natural-image prior (PPGN-x): after each Adam step the image moves "
            "toward a denoiser's output (every 4th step), which removes the high-frequency texture no photo has",
            prior=NATURAL_PRIOR, steps=256, precision="auto"))
_add(Preset("maco", "MACO: fixed natural-image magnitude spectrum from real photos, optimized phase, "
            "standard transforms (Fel et al. 2023)", param="maco", lr=0.05, redirect_steps=16))
_add(Preset("pixel", "floor B0: raw pixels, no transforms, Adam 0.05", param="pixel", transforms=identity,
            redirect_steps=-1))

# Yosinski et al. 2015, Table 1, with the regularizers exactly as in the paper. Step sizes
# were tied to CaffeNet's gradient scale [ns]:
# - sets 2 and 3 (constant lr 100) use a constant step calibrated on the first gradient of
#   each row (the progress rule's eta at step 0);
# - sets 1 and 4 (progress rule) drop the lr cap of 100 (it capped every step on Lite0's
#   gradient scale) and aim at a gain of 10 logits per step instead of 2: with 50 % norm or
#   90 % contribution clipping after every step, a gain of 2 stalled near logit 8 on Lite0
#   (measured: jellyfish at 64 px, 100-200 steps), below a real photo's logit.
_DEEPVIS = {
    1: (DeepVisConfig(decay=0.0, blur_sigma=0.5, blur_every=4, norm_pct=50, lr_policy="progress", lr=1e8,
                      desired_progress=10.0), 500),
    2: (DeepVisConfig(decay=0.3, norm_pct=20, lr_policy="calibrated", lr=1e8, desired_progress=2.0), 750),
    3: (DeepVisConfig(decay=0.0001, blur_sigma=1.0, blur_every=4, lr_policy="calibrated", lr=1e8), 1000),
    4: (DeepVisConfig(decay=0.0, blur_sigma=0.5, blur_every=4, contrib_pct=90, lr_policy="progress", lr=1e8,
                      desired_progress=10.0), 1000),
}
for _i, (_cfg, _steps) in _DEEPVIS.items():
    _add(Preset(f"deepvis-{_i}", f"Yosinski et al. 2015 Table 1 set {_i}: regularized gradient ascent in "
                "0-255 mean-subtracted pixel space", param="caffe", transforms=identity, optimizer="deepvis",
                steps=_steps, redirect_steps=-1, keep="best", deepvis=_cfg))

DEFAULT_PRESET = "natural"


def get_preset(name: str | Preset) -> Preset:
    if isinstance(name, Preset):
        return name
    if name not in PRESETS:
        raise NeuronscopeError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]
