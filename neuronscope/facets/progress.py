"""One progress bar with an overall ETA for a facet run's phases.

A facet run has phases of very different cost: collecting example views (one
forward per view), the MFV schedule (forward + backward per iteration and
facet), the preset renders. :class:`Overall` shows them as **one** bar whose
length is the whole run in estimated work units, so tqdm's rate and remaining
time are for the whole run, not for the phase at hand. Each phase reports its
own steps through :meth:`Overall.phase`; a step is worth ``weight`` units.
Totals that only become known later (the number of facets) are set with
:meth:`Overall.plan` before the phase starts.

Phases take ``progress``: ``True``/``False`` for a bar of their own (or none),
or an :class:`Overall` to feed; :func:`phase_bar` hides the difference.
"""

from __future__ import annotations

# Relative cost of one step of each phase, in forwards of one view at the model's input size: what
# makes the one bar's ETA hold across phases. Measured on Lite0 at 224 px, one thread (CPU seconds):
# a view 0.043 (decode, crop, forward), an MFV iteration per facet 0.19 (forward + backward and 100
# split-Bregman TV iterations), a render step per row 0.062 with lucid, 0.112 with the natural prior.
VIEW_WEIGHT = 1.0
MFV_WEIGHT = 4.5  # per MFV iteration and facet (the schedule's octaves are at the model's size or below)
RENDER_WEIGHT = 1.5  # per render step and row at the model's input size
PRIOR_WEIGHT = 1.1  # added per step that runs the learned prior's denoising step


def render_weight(size: int, input_size: int, prior: float = 0.0) -> float:
    """One render step of one row at ``size`` px: forward + backward, plus the prior's step on the
    share ``prior`` of the steps (1 / the preset's ``every``; 0 without a prior), scaled by area."""
    return (RENDER_WEIGHT + PRIOR_WEIGHT * float(prior)) * (size / max(1, input_size)) ** 2


class _Phase:
    """The tqdm-like handle a phase updates (update, set_postfix_str, close)."""

    def __init__(self, overall: "Overall", name: str, total: int, weight: float):
        self.overall, self.name, self.total, self.weight = overall, name, max(1, total), weight
        self.n = 0
        overall._enter(name, self.total * weight)

    def update(self, n: int = 1) -> None:
        n = min(n, self.total - self.n)  # a phase that runs longer than planned does not overrun the bar
        if n > 0:
            self.n += n
            self.overall._advance(n * self.weight)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.overall._status(f"{self.name}: {text}")

    def close(self) -> None:
        self.overall._finish(self.name, (self.total - self.n) * self.weight)


class Overall:
    """One bar over planned phases: ``plan(name, units)`` then ``phase(name, steps, weight)``."""

    def __init__(self, desc: str, enabled: bool = True):
        self.desc, self.enabled = desc, enabled
        self.planned: dict[str, float] = {}
        self.done = 0.0
        self._bar = None

    def plan(self, name: str, units: float) -> None:
        """Reserve ``units`` of work for phase ``name`` (re-planning replaces the estimate)."""
        self.planned[name] = float(units)
        self._retotal()

    def phase(self, name: str, total: int, weight: float = 1.0) -> _Phase:
        return _Phase(self, name, total, weight)

    # -- internals
    def _ensure(self):
        if self._bar is None and self.enabled:
            from tqdm.auto import tqdm

            # smoothing 0: the rate is the whole run's average so far, not the last few updates' (phases
            # update in bursts of different sizes, and the recent rate made the ETA swing 3x)
            self._bar = tqdm(total=round(sum(self.planned.values())), desc=self.desc, unit="u", dynamic_ncols=True,
                             smoothing=0,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, ETA {remaining} {postfix}")
        return self._bar

    def _retotal(self) -> None:
        bar = self._ensure()
        if bar is not None:
            bar.total = max(round(sum(self.planned.values())), round(self.done))
            bar.refresh()

    def _enter(self, name: str, units: float) -> None:
        if name not in self.planned:
            self.planned[name] = units
        else:
            self.planned[name] = max(self.planned[name], units)
        self._retotal()
        self._status(name)

    def _advance(self, units: float) -> None:
        before = round(self.done)
        self.done += units
        bar = self._ensure()
        if bar is not None and round(self.done) > before:
            bar.update(round(self.done) - before)

    def _finish(self, name: str, unused: float) -> None:
        if unused > 0 and name in self.planned:  # a phase that ended early gives its remaining units back
            self.planned[name] -= unused
            self._retotal()

    def _status(self, text: str) -> None:
        bar = self._ensure()
        if bar is not None:
            bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def phase_bar(progress, total: int, desc: str, *, weight: float = 1.0, **tqdm_args):
    """A phase's progress handle: part of an :class:`Overall`, its own tqdm bar, or a silent one."""
    if isinstance(progress, Overall):
        return progress.phase(desc, total, weight)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, dynamic_ncols=True, **tqdm_args)
