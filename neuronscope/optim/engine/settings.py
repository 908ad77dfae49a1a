"""The one argument that chooses how a render computes: :class:`Engine`.

``render(..., engine=...)`` takes an :class:`Engine`, or a name: ``"plain"``
(the model as given), ``"fast"`` (always the faster copy, mixed precision) or a
precision (``"mixed"``, ``"float32"``, ``"bfloat16"``, ``"auto"``: the faster
copy when it repays, in that precision). ``Engine.parse(None)`` is ``Engine()``; a render
given no engine uses ``Engine(precision=<its preset's precision>)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ...errors import NeuronscopeError
from ...models import Model
from .fast_copy import dtype_name, resolve_precision, use_fast
from .stages import PRECISIONS, Stage, arithmetic, check_precision, plan_stages, precision_plan

#: engine names besides the precisions
NAMES = ("plain", "fast")


@dataclass(frozen=True)
class Engine:
    """``fast``: optimize through a faster copy of the model (BatchNorm folded into
    convolutions, input-gradient-only convolutions, fused activations, channels-last
    on CPU; the same function up to float rounding, see
    :mod:`neuronscope.optim.engine.fast_copy`); ``None`` does so on CPU for renders big
    enough to repay building the copy. ``precision`` of that copy: ``mixed`` (on a
    device with native bfloat16, the first steps in bfloat16 and the last quarter in
    float32, see :mod:`neuronscope.optim.engine.stages`; float32 elsewhere),
    ``float32``, ``bfloat16`` (fastest; its input gradient is only ~0.92
    cosine-similar to float32's), or ``auto`` (bfloat16 where native, else float32).
    """

    fast: bool | None = None
    precision: str = "mixed"

    def __post_init__(self):
        check_precision(self.precision)

    def prior_dtype(self, device) -> torch.dtype:
        """What the learned image prior's denoiser computes in: float32 for the ``plain`` and
        ``float32`` engines, else bfloat16 where the device has it natively."""
        if self.fast is False or self.precision == "float32":
            return torch.float32
        return resolve_precision("auto", device)

    def resolved(self, device, *, batch: int, size: int, steps: int) -> "Engine":
        """This engine with ``fast`` decided (``fast=None``) as a render of ``batch`` rows of ``size`` px
        and ``steps`` steps on ``device`` decides it."""
        if self.fast is not None:
            return self
        return replace(self, fast=use_fast(device, batch, size, steps))

    def arithmetic(self, device, *, batch: int, size: int, steps: int) -> str:
        """What a render of that shape computes in, labelled as :func:`~.stages.arithmetic` labels the stages
        :func:`plan_network` plans for it (``float32``, ``bfloat16``, ``mixed (bfloat16 steps, float32 tail)``),
        without building them. The model as given (``fast=False``) is taken to be float32."""
        if not self.resolved(device, batch=batch, size=size, steps=steps).fast:
            return arithmetic(["float32"])
        return arithmetic([dtype_name(resolve_precision(p, device)) for _, p in precision_plan(device, self.precision, steps)])

    @classmethod
    def parse(cls, value: "Engine | str | None") -> "Engine":
        if value is None:
            return cls()
        if isinstance(value, Engine):
            return value
        if value == "plain":
            return cls(fast=False)
        if value == "fast":
            return cls(fast=True)
        if value in PRECISIONS:
            return cls(precision=value)
        raise NeuronscopeError(f"unknown engine {value!r}; valid: {', '.join((*NAMES, *PRECISIONS))}")


def plan_network(model: Model, layers: list[str], engine: Engine, *, batch: int, size: int, steps: int,
                 split_rows: bool = False) -> list[Stage]:
    """The network stages of a render (``split_rows``: allow the threaded row split, which gives threads
    started while it runs one intra-op thread; only when the caller opted in to process tuning)."""
    fast = engine.resolved(model.device, batch=batch, size=size, steps=steps).fast
    return plan_stages(model, layers, fast=fast, precision=engine.precision, steps=steps, batch=batch,
                       split_rows=split_rows)
