"""The multifaceted-visualization render schedules (Nguyen, Yosinski, Clune 2016).

Both released scripts (Evolving-AI-Lab/mfv ``act_max.tvd.center.py`` and
``act_max.tvd.mean.py``) run octaves of the same step (docs/facets.md), here on
[0, 1] images instead of Caffe's 0-255 mean-subtracted BGR:

1. if the canvas is larger than the network input w, crop a w x w window at
   an offset drawn per axis from N((W-w)/2, sigma*(W-w)), clipped (the centre bias);
2. forward/backward the unit (for a class: log-probability in ``prob``
   octaves, logit otherwise; a hidden unit is always its own value);
3. zero the gradient outside a margin m (scaled from the paper's 227 px to w);
4. step: crop += (eta/255) * g / mean|g| (per row), clip to [0, 1];
5. TV-denoise the crop (split-Bregman, 100 iterations, eps 1e-3) on the crop
   scaled to 0-255 with the paper's weight omega (larger = weaker smoothing);
   the solver's absolute stopping rule makes [0, 1] with 255*omega drift in colour;
6. write the crop back. An octave may first zoom the canvas (bicubic).

eta and omega ramp linearly from their start to their end value over each
octave (the intended ramp; the released code's TV ramp had a precedence slip).
The output is the whole final canvas. Rows are independent: each has its own
crop offsets, gradient normalization and denoising.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..optim.engine.process import process_tuning_wanted, tuned_process
from ..errors import NeuronscopeError
from ..models.adapter import Model
from ..taps import tap
from ..units import Unit
from .colour import to_photo_statistics
from .progress import MFV_WEIGHT, Overall, phase_bar


@dataclass(frozen=True)
class Octave:
    iters: int
    rescale: float | None  # zoom of the canvas at the octave's start
    sigma: float  # spread of the crop offset, in units of (W - w)
    margin: int  # gradient margin in the paper's 227-px frame
    lr: tuple[float, float]  # step size start, end (0-255 units)
    tv: tuple[float, float]  # TV weight omega start, end (0-255 images; larger = weaker)
    log_prob: bool = False  # class units: ascend log p (the 'prob' octaves) instead of the logit


# Centre-biased regularization, from grey; 530 iterations, canvas 227 -> 326.
CENTER_BIASED = (
    Octave(190, None, 0.3, 0, (11, 11), (0.001, 0.05), log_prob=True),
    Octave(150, 1.2, 0.3, 0, (6, 6), (0.01, 0.08), log_prob=True),
    Octave(150, 1.2, 0.3, 0, (1, 1), (0.01, 2.0)),
    Octave(30, 1.0, 0.1, 50, (3, 3), (0.1, 2.0)),
    Octave(10, None, 0.3, 0, (6, 3), (0.01, 2.0)),
)
# From a facet's mean image; 370 iterations, canvas 227 -> 272.
MEAN_INIT = (
    Octave(190, None, 0.3, 0, (1, 2), (0.4, 0.4)),
    Octave(150, 1.2, 0.3, 0, (1, 1), (0.01, 2.0)),
    Octave(20, 1.0, 0.2, 50, (2, 2), (0.1, 2.0)),
    Octave(10, None, 0.3, 0, (2, 2), (0.4, 2.0)),
)
SCHEDULES = {"mean": MEAN_INIT, "center": CENTER_BIASED}
COLOURS = (None, "photo")


@dataclass
class MFVResult:
    images: torch.Tensor  # (B, 3, W, W) final canvases in [0, 1]
    values: np.ndarray  # (B,) the unit on each canvas through the evaluation transform (eval_view)
    init_values: np.ndarray  # (B,) the unit on the starting images
    trace: np.ndarray  # (iterations, B) the unit on the crop at each iteration
    meta: dict = field(default_factory=dict)


def _denoise(crop: torch.Tensor, omega: float) -> torch.Tensor:
    """Split-Bregman TV denoising of a [0, 1] crop *on the 0-255 scale*, as the paper ran it.

    The solver's stopping rule (eps = 1e-3) is absolute, so running it on [0, 1] values
    with weight 255*omega is not equivalent: measured with scikit-image 0.26, each call
    then darkens the green and blue channels by ~0.0025, and 370 calls turn any image
    into a red field. On the 0-255 scale the drift is ~1000x smaller.
    """
    from skimage.restoration import denoise_tv_bregman

    a = crop.detach().permute(1, 2, 0).cpu().numpy().astype(np.float64) * 255.0
    out = denoise_tv_bregman(a, weight=omega, max_num_iter=100, eps=1e-3, isotropic=True, channel_axis=-1)
    return (torch.from_numpy(out / 255.0).float().permute(2, 0, 1)).clamp(0, 1)


_POOL: dict[int, ThreadPoolExecutor] = {}  # worker count -> a pool kept for the process (idle threads cost nothing)


def _denoise_rows(crops: torch.Tensor, omega: float) -> torch.Tensor:
    """:func:`_denoise` every row, on as many threads as torch uses: the rows are independent and
    scikit-image's solver releases the GIL, so on 2 cores the schedule's largest cost (100 solver
    iterations per row and step) takes half the wall time; the result is the same as row by row."""
    workers = min(len(crops), max(1, torch.get_num_threads()))
    if workers < 2:
        return torch.stack([_denoise(c, omega) for c in crops])
    if workers not in _POOL:
        _POOL[workers] = ThreadPoolExecutor(workers, thread_name_prefix="mfv-denoise")
    return torch.stack(list(_POOL[workers].map(lambda c: _denoise(c, omega), crops)))


def _ramp(a: float, b: float, i: int, n: int) -> float:
    return a + (b - a) * (i / n if n > 0 else 0.0)


def render_mfv(
    model: Model,
    unit: Unit,
    init: torch.Tensor | None = None,
    *,
    batch: int | None = None,
    schedule: str = "mean",
    size: int | None = None,
    iter_scale: float = 1.0,
    seed: int = 1,
    denoise: bool = True,
    targets=None,
    refine_budget: int | None = None,
    progress: bool = True,
    prior=None,
    colour: str | None = None,
    colour_every: int = 4,
    tune_process: bool | None = None,
) -> MFVResult:
    """Render one image per row of ``init`` (or ``batch`` grey starts) with an MFV schedule.

    ``size`` is the network input w (default the model's); ``init`` is resized
    to it. ``iter_scale`` scales every octave's iterations (at least 1 each),
    for previews and tests.

    ``targets`` (one value per row, e.g. the best real image of each facet's cluster)
    turns on the target-driven final refinement (:func:`_refine`): rows still below their
    target after the schedule repeat its last octave, at most ``refine_budget`` extra
    iterations per row (default: as many as the schedule ran). ``meta['refine_iterations']``
    records what each row ran; a row may still end below its target when the budget runs out.

    ``prior`` (a :class:`~neuronscope.priors.DenoisingPrior`, or None as in the paper) adds the
    learned natural-image prior's step to every iteration, after the gradient step and before
    the schedule's TV denoising: the crop moves toward the denoiser's output.
    ``colour="photo"`` (for starts from images; ignored for grey starts, which have no colour to
    keep) stretches every row of ``init`` to the offline photos' contrast and colourfulness in
    opponent colour space (:func:`~neuronscope.facets.colour.to_photo_statistics`: the mean image's
    layout and mean colour stay, its deviations grow), and every ``colour_every`` iterations, after
    the TV denoising, sets the crop back to those statistics (0: the start only). ``None``: the
    schedule as published, whose grey mean-image start stays pale (docs/facets.md).
    ``tune_process``: keep freed memory in the process while the schedule runs (a glibc
    setting, restored after); ``None`` follows the process default (off in a library, on
    under the command line; :mod:`neuronscope.optim.engine.process`).
    """
    from tqdm.auto import tqdm

    if schedule not in SCHEDULES:
        raise NeuronscopeError(f"unknown MFV schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    octaves = SCHEDULES[schedule]
    w = int(size or model.input_size)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    if init is None:
        if schedule == "mean":
            raise NeuronscopeError("the 'mean' schedule starts from mean images: give init (B, 3, H, W)")
        b = batch or 1
        canvas = (175.0 + 8.0 * torch.randn(b, 3, w, w, generator=gen)) / 255.0
    else:
        init = torch.as_tensor(init).float()
        if init.dim() != 4 or init.shape[1] != 3:
            raise NeuronscopeError(f"init must be (B, 3, H, W) images in [0, 1], got {tuple(init.shape)}")
        canvas = F.interpolate(init, size=(w, w), mode="bicubic", align_corners=False, antialias=True) if init.shape[-1] != w else init.clone()
    canvas = canvas.clamp(0, 1)
    if colour not in COLOURS:
        raise NeuronscopeError(f"unknown MFV colour {colour!r}; valid: {', '.join(map(str, COLOURS))}")
    if int(colour_every) != colour_every or colour_every < 0:
        raise NeuronscopeError(f"colour_every must be a whole number of iterations >= 0 (0: the start only), got {colour_every}")
    if init is None:
        colour = None  # a grey start has no colours to keep; stretching it would amplify its noise
    if colour == "photo":
        canvas = to_photo_statistics(canvas)
    b = canvas.shape[0]
    dev = model.device
    init_values = measure(model, unit, canvas, size=w)

    total = sum(max(1, round(o.iters * iter_scale)) for o in octaves)
    if prior is not None:
        prior.start(total, dev)
    trace = np.zeros((total, b), dtype=np.float32)
    bar = phase_bar(progress, total, f"mfv {unit.label}", weight=MFV_WEIGHT * b, unit="it", leave=False)
    step = 0
    rows = np.arange(b)
    # the schedule allocates and frees the same activation buffers every iteration: keep them when allowed (see optim.engine.process)
    with tuned_process(process_tuning_wanted(tune_process)):
        try:
            with tap(model, [unit.layer], stop_early=True) as taps:
                for octave in octaves:
                    if octave.rescale and octave.rescale != 1.0:
                        new = int(round(canvas.shape[-1] * octave.rescale))
                        canvas = F.interpolate(canvas, size=(new, new), mode="bicubic", align_corners=False).clamp(0, 1)
                    n = max(1, round(octave.iters * iter_scale))
                    for v in _octave(model, unit, taps, canvas, rows, octave, n, w, rng, dev, denoise, prior, step,
                                     colour, colour_every):
                        trace[step] = v
                        step += 1
                        bar.update(1)
        finally:
            bar.close()
        values = measure(model, unit, canvas, size=w)
        extra = np.zeros(b, dtype=int)
        if targets is not None:
            values, extra = _refine(model, unit, canvas, values, np.asarray(targets, dtype=np.float64).reshape(-1),
                                    octaves[-1], max(1, round(octaves[-1].iters * iter_scale)),
                                    total if refine_budget is None else int(refine_budget), w, rng, dev, denoise,
                                    prior, total - 1, progress=progress if isinstance(progress, Overall) else False,
                                    colour=colour, colour_every=colour_every)
    meta = {"schedule": schedule, "iterations": total, "colour": colour, "colour_every": colour_every if colour else None,
            "iter_scale": iter_scale, "input": w,
            "canvas": int(canvas.shape[-1]), "seed": seed, "refine_iterations": extra.tolist(),
            "prior": prior.describe() if prior is not None else None,
            "refine_budget": None if targets is None else (total if refine_budget is None else int(refine_budget))}
    return MFVResult(canvas, values, init_values, trace, meta)


def _octave(model, unit, taps, canvas, rows, octave, n, w, rng, dev, denoise, prior=None, step0=0, colour=None,
            colour_every=4):
    """Run ``n`` iterations of ``octave`` on the canvas rows ``rows`` (in place); yields the unit per iteration."""
    W = canvas.shape[-1]
    b = len(rows)
    margin = int(round(octave.margin * w / 227))
    for i in range(n):
        if W > w:
            off = rng.normal((W - w) / 2, octave.sigma * (W - w), size=(b, 2))
            off = np.clip(off, 0, W - w).astype(int)  # truncation, as in the scripts
        else:
            off = np.zeros((b, 2), dtype=int)
        crops = torch.stack([canvas[r, :, off[j, 1] : off[j, 1] + w, off[j, 0] : off[j, 0] + w] for j, r in enumerate(rows)])
        x = crops.to(dev).requires_grad_(True)
        with torch.enable_grad():
            taps.run(x)
            v = unit.value(taps.values, log_prob=octave.log_prob and unit.is_class)
            (g,) = torch.autograd.grad(v.sum(), x)
        g = g.detach().cpu()
        if margin > 0:
            keep = torch.zeros(1, 1, w, w)
            keep[..., margin : w - margin, margin : w - margin] = 1
            g = g * keep
        g = g / (g.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-12)
        lr = _ramp(*octave.lr, i, n) / 255.0
        crops = (crops + lr * g).clamp(0, 1)
        k = min(step0 + i, prior.steps - 1) if prior is not None else 0  # refinement repeats the last step's
        if prior is not None and prior.active(k):
            crops = prior.apply(crops.to(dev), k).cpu().clamp(0, 1)
        omega = _ramp(*octave.tv, i, n)
        if denoise:
            crops = _denoise_rows(crops, omega)
        if colour == "photo" and colour_every > 0 and (step0 + i) % colour_every == 0:
            crops = to_photo_statistics(crops)
        for j, r in enumerate(rows):
            canvas[r, :, off[j, 1] : off[j, 1] + w, off[j, 0] : off[j, 0] + w] = crops[j]
        yield v.detach().float().cpu().numpy()


def _refine(model, unit, canvas, values, targets, octave, n, budget, w, rng, dev, denoise, prior=None, last_step=0,
            progress=False, colour=None, colour_every=4):
    """Target-driven final refinement: repeat the last octave (its n iterations, same settings)
    on the rows whose measured value is still below their target, re-measuring after each
    repetition, until every row reaches its target or a row has run ``budget`` extra iterations.
    Returns the final values and the extra iterations each row ran."""
    if targets.shape != values.shape:
        raise NeuronscopeError(f"targets must give one value per row ({len(values)}), got shape {targets.shape}")
    extra = np.zeros(len(values), dtype=int)
    values = values.copy()
    while True:
        rows = np.nonzero((values < targets) & (extra + n <= budget))[0]
        if len(rows) == 0:
            return values, extra
        bar = phase_bar(progress, n, f"refine +{extra.max() + n}", weight=MFV_WEIGHT * len(rows), leave=False)
        try:
            with tap(model, [unit.layer], stop_early=True) as taps:
                for _ in _octave(model, unit, taps, canvas, rows, octave, n, w, rng, dev, denoise, prior, last_step,
                                 colour, colour_every):
                    bar.update(1)
        finally:
            bar.close()
        extra[rows] += n
        values[rows] = measure(model, unit, canvas[torch.as_tensor(rows)], size=w)


def eval_view(model: Model, images: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Images of any size as the model's evaluation transform shows them: already ``size`` px
    images are kept; others are resized to size / crop fraction (0.875) and centre-cropped,
    exactly as ``neuronscope classify`` treats a user's image."""
    s = int(size or model.input_size)
    x = images.float()
    if x.shape[-1] == s and x.shape[-2] == s:
        return x
    big = int(round(s / model.info.eval_resize))
    x = F.interpolate(x, size=(big, big), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    o = (big - s) // 2
    return x[..., o : o + s, o : o + s]


def measure(model: Model, unit: Unit, images: torch.Tensor, *, size: int | None = None, batch_size: int = 16) -> np.ndarray:
    """The unit on images seen through the evaluation transform (:func:`eval_view`), without gradients."""
    from .examples import unit_values

    return unit_values(model, unit, eval_view(model, images, size), batch_size=batch_size)
