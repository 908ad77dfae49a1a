"""DGN-AM (Nguyen et al. 2016; docs/design.md 5.3): activation maximization in a generator's code space.

Per iteration i of n, per batch row: x = G(h); d = dA/dh (the unit's activation
through the classifier and G); h += eta_i * sigma_bar * d / mean|d|; clip each
unit to the real-code box [lo_j, hi_j] (for a ReLU6 code [0, min(6, mu_j +
3 sigma_j)]); h *= 0.99. eta_i falls linearly from ``lr`` to ``lr_end``
(the paper's 8 -> 1e-10 schedule, with the step measured in units of the mean
per-unit std sigma_bar of real codes because our code's scale differs from
fc6's). The paper reports the **last** image; ``best_images`` holds the
highest-activation one for comparison.

The learned natural-image prior (:mod:`neuronscope.generators.image_prior`) can join in two ways:
``prior`` adds its regularization-by-denoising term to the code update, and ``refine`` runs a
short ``natural``-preset pixel render from the generator's last images at the model's size
(a hybrid: the returned images are the refined ones, ``result.generated`` holds G's).
"""

from __future__ import annotations

from ..units import parse_units
from .base import Generator
from .conditions import Condition
from .ppgn import ChainResult, preset, run_chain

#: the default ``refine`` of :func:`dgn_am` and ``neuronscope dgn``: chosen with benchmarks/generator_priors.py on 8
#: held-out classes (docs/generators.md): Lite2 top-1 rose from 1/8 (the shipped generator's own images) to 8/8 at
#: 32, 64 and 128 steps; 128 had the highest judge probability and HF ratio. ``refine=0`` is the paper's DGN-AM.
DGN_REFINE = 128


def dgn_am(
    generator: Generator,
    model,
    targets,
    *,
    steps: int = 200,
    lr: float = 0.3,
    lr_end: float = 1e-10,
    decay: float = 0.99,
    size: int | None = None,
    init=None,
    n: int = 1,
    seed: int = 0,
    prior=None,
    refine: int | bool = DGN_REFINE,
    refine_prior=None,
    progress: bool = True,
    callback=None,
) -> tuple[ChainResult, list]:
    """Maximize each target (``class:NAME``, ``LAYER:C``, ...) through ``generator``.

    All targets (times ``n`` restarts each) run as rows of one batch; rows never
    mix. ``init`` optionally gives starting codes (B, D), e.g. encoded photos.
    ``prior``: the natural-image prior's RED term through G (a DenoisingPrior, a dict of its
    settings, True for :data:`~neuronscope.generators.image_prior.RED_DEFAULTS`, or None/False).
    ``refine``: steps of the hybrid pixel-space refinement (0/False: none; True:
    :data:`~neuronscope.generators.image_prior.REFINE_STEPS`), with ``refine_prior`` as
    render's ``prior`` (None: the natural preset's).
    Returns the chain result (``images`` = last images) and the row targets.
    """
    from .image_prior import RED_DEFAULTS, REFINE_STEPS, image_prior, refine_steps, refined

    red = image_prior(prior, RED_DEFAULTS)
    refine = refine_steps(refine, REFINE_STEPS)
    size = size or min(model.input_size, 2 * generator.image_size)
    tlist = parse_units(model, targets if isinstance(targets, (list, tuple)) else [targets], size=size)
    rows = [t for t in tlist for _ in range(n)]
    cfg = preset("dgn-am", steps=steps, lr=lr, lr_end=lr_end, decay=decay, save_every=0)
    cond = Condition(model, rows, size=size, kind="activation")
    res = run_chain(generator, model, cond, cfg, batch=len(rows), init=init, seed=seed, image_prior=red,
                    progress=progress, callback=callback)
    if refine:
        res = refined(res, model, rows, refine, size, refine_prior, seed, progress)
    return res, rows

