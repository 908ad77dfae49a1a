"""Gradient overrides at the rectifiers: one rule table, one way of swapping modules, one lock.

Several tools send a signal backward through a network with the ordinary
gradient everywhere except at the rectifiers (``nn.ReLU``, ``nn.ReLU6``), where
each has its own rule. ``R_out`` arrives from above, ``z`` is the rectifier's
forward input and ``upper`` its upper bound (6 for ReLU6, none for ReLU):

========  ===========================================  ==========================
rule      ReLU                                         ReLU6
========  ===========================================  ==========================
gradient  R_in = R_out·[z>0]   (Simonyan et al. 2014)  R_in = R_out·[0<z<6]
deconv    R_in = max(R_out, 0) (Zeiler & Fergus 2014)  R_in = max(R_out, 0)
guided    R_in = R_out·[z>0]·[R_out>0] (Springenberg)  R_in = R_out·[0<z<6]·[R_out>0]
redirect  the gradient rule; a batch row whose gradient is zero everywhere gets R_out
          through unmasked instead, except where it pushes z further out of range
          (Lucid's redirected ReLU gradient, used by the first render steps)
========  ==================================================================================

DeconvNet at the ReLU6 upper bound: the deconvnet's backward ReLU rectifies the
*backward signal* and ignores the forward input, so it has no forward mask to
carry the upper bound; clamping the signal at 6 would compare a gradient with
an activation. ``max(R_out, 0)`` keeps the view positively homogeneous in the
signal (doubling it doubles the result) like every other rule.

Every rule is also right when given the rectifier's *output* ``clamp(z, 0, upper)``
instead of ``z``: both are strictly inside (0, upper) at the same places, and
``z <= 0`` / ``z >= upper`` exactly where the output sits at 0 / upper. So a
convolution with the activation fused in, which keeps only its output
(:class:`~neuronscope.optim.engine.fast_conv.FastConv2d`), applies the same rule
through its ``grad_rule`` attribute.

:func:`rectifier_rules` swaps every ``nn.ReLU``/``nn.ReLU6`` module of a network
for one running a rule (and sets ``grad_rule`` on fused convolutions), and puts
the originals back when the block exits, whatever happens. A network that calls
``F.relu`` functionally cannot be intercepted: then nothing is swapped and a
warning says so. All swaps in the process take one lock for the whole block, so
two threads never see each other's rules (a second thread's swap waits).
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from .models.activations import unchanged_message

#: the clamp activations the rules cover (and the fast copy fuses) -> their upper bound (None: unbounded)
ACTIVATIONS = {"relu": None, "relu6": 6.0}

# Swapping modules edits a network for the duration of a block; one lock for every swap in the
# process, held for the block, so that two threads (e.g. the browser toolbox) never interleave.
_SWAP_LOCK = threading.RLock()


def activation_kind(m: nn.Module) -> str | None:
    """``"relu6"``, ``"relu"`` (keys of :data:`ACTIVATIONS`) or None for any other module."""
    if isinstance(m, nn.ReLU6):
        return "relu6"
    if isinstance(m, nn.ReLU):
        return "relu"
    return None


def _gradient(r: torch.Tensor, z: torch.Tensor, upper: float | None) -> torch.Tensor:
    open_ = z > 0
    if upper is not None:
        open_ = open_ & (z < upper)
    return r * open_


def _deconv(r: torch.Tensor, z: torch.Tensor, upper: float | None) -> torch.Tensor:
    return r.clamp(min=0.0)


def _guided(r: torch.Tensor, z: torch.Tensor, upper: float | None) -> torch.Tensor:
    open_ = z > 0
    if upper is not None:
        open_ = open_ & (z < upper)
    return r * (open_ & (r > 0))


def _masked(g: torch.Tensor, a: torch.Tensor, upper: float | None) -> torch.Tensor:
    """The ordinary ReLU/ReLU6 gradient, by the fused kernels autograd itself uses."""
    if upper is None:
        return torch.ops.aten.threshold_backward(g, a, 0.0)
    return torch.ops.aten.hardtanh_backward(g, a, 0.0, upper)


def _redirect(g: torch.Tensor, a: torch.Tensor, upper: float | None) -> torch.Tensor:
    masked = _masked(g, a, upper)
    # rows with no gradient at all. amax and amin over each row are the cheapest test
    # measured (a flattening copy of a channels-last tensor or a norm costs several times more)
    dims = tuple(range(1, g.dim()))
    dead = (masked.amax(dim=dims) == 0) & (masked.amin(dim=dims) == 0)
    if not bool(dead.any()):
        return masked
    rows = dead.nonzero().flatten()
    # gradient descent moves z by -g: block moves that go further out of range
    gz, az = g[rows], a[rows]
    outward = (az <= 0) & (gz > 0)
    if upper is not None:
        outward |= (az >= upper) & (gz < 0)
    masked[rows] = gz.masked_fill(outward, 0.0)
    return masked


#: rule name -> backward ``(R_out, z or clamp(z), upper) -> R_in`` (the module docstring's table)
RULES: dict[str, Callable[[torch.Tensor, torch.Tensor, float | None], torch.Tensor]] = {
    "gradient": _gradient,
    "deconv": _deconv,
    "guided": _guided,
    "redirect": _redirect,
}


def activation_grad(g: torch.Tensor, a: torch.Tensor, upper: float | None, rule: str | None = None) -> torch.Tensor:
    """The gradient through ``clamp(z, 0, upper)`` (``upper=None``: ReLU) under ``rule`` (None: the ordinary one).

    ``a`` may be the input ``z`` or the output ``clamp(z)`` (module docstring).
    """
    return _masked(g, a, upper) if rule is None else RULES[rule](g, a, upper)


class _Rectify(torch.autograd.Function):
    """Forward: clamp(z, 0, upper). Backward: the rule's."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, rule: str, upper: float | None) -> torch.Tensor:
        ctx.save_for_backward(z)
        ctx.rule, ctx.upper = rule, upper
        return z.clamp(min=0.0) if upper is None else z.clamp(0.0, upper)

    @staticmethod
    def backward(ctx, r: torch.Tensor):
        (z,) = ctx.saved_tensors
        return RULES[ctx.rule](r, z, ctx.upper), None, None


def rectify(z: torch.Tensor, rule: str, upper: float | None = None) -> torch.Tensor:
    """``clamp(z, 0, upper)`` whose backward follows ``rule``."""
    return _Rectify.apply(z, rule, upper)


_HOOK_TABLES = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
                "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks")


class RuleRectifier(nn.Module):
    """Stand-in for an ``nn.ReLU``/``nn.ReLU6`` whose backward follows one rule."""

    def __init__(self, original: nn.Module, rule: str):
        super().__init__()
        self.rule = rule
        self.upper = ACTIVATIONS[activation_kind(original)]
        # kept outside _modules so that named_modules() is unchanged in shape
        self.__dict__["original"] = original
        # the same hook tables as the original (shared, not copied): a tap on this layer, whether attached
        # before the swap or during it, fires on the stand-in, and removing its handle removes it from both
        for table in _HOOK_TABLES:
            if hasattr(original, table):
                self.__dict__[table] = getattr(original, table)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _Rectify.apply(z, self.rule, self.upper)

    def extra_repr(self) -> str:
        return f"rule={self.rule}, upper={self.upper}"


@contextmanager
def rectifier_rules(model: nn.Module, rule: str, *, warn_other_activations: bool = True) -> Iterator[int]:
    """Within the block, the rectifiers of ``model.net`` (or ``model``) follow ``rule`` backward.

    Swaps each ``nn.ReLU``/``nn.ReLU6`` module for a :class:`RuleRectifier` and
    sets ``grad_rule`` on convolutions with a fused activation. Yields how many
    were changed; everything is put back when the block exits, also on an
    exception. Warns when nothing could be changed, and (unless
    ``warn_other_activations=False``) when other activations keep their gradient.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rectifier rule {rule!r}; valid: {', '.join(RULES)}")
    root = getattr(model, "net", model)
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    fused: list[nn.Module] = []
    with _SWAP_LOCK:
        try:
            for parent in list(root.modules()):
                for name, child in list(parent._modules.items()):
                    if activation_kind(child) is not None:
                        parent._modules[name] = RuleRectifier(child, rule)
                        swapped.append((parent, name, child))
            for m in root.modules():
                if getattr(m, "fused_activation", None) is not None:
                    m.grad_rule = rule
                    fused.append(m)
            # GELU, SiLU, ... keep their ordinary gradient under every rule: name them
            others = unchanged_message(root, "ReLU-redirection" if rule == "redirect" else repr(rule))
            if warn_other_activations and others:
                warnings.warn(others, RuntimeWarning, stacklevel=3)
            if not swapped and not fused:
                warnings.warn(f"no nn.ReLU/nn.ReLU6 module found in {type(root).__name__}: the {rule!r} rule cannot "
                              "be applied (functional relu calls are not interceptable), so this is the plain gradient",
                              RuntimeWarning, stacklevel=3)
            yield len(swapped) + len(fused)
        finally:
            for parent, name, child in reversed(swapped):
                parent._modules[name] = child
            for m in fused:
                m.grad_rule = None
