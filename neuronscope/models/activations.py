"""Which activation modules a gradient rule leaves unchanged, named for the user.

The backward rules (DeconvNet, guided backprop, ReLU gradient redirection) are
defined for rectifiers (``nn.ReLU``, ``nn.ReLU6``) only. GELU, SiLU, Hardswish,
Tanh and the other smooth or leaky activations keep their ordinary gradient
under every rule; these helpers name them, so a ViT or ConvNeXt user is told
that a "guided" view of their network is guided only at its ReLUs (if any).
Activations called functionally (``F.gelu`` inside a ``forward``) are not
modules and cannot be listed or swapped.
"""

from __future__ import annotations

from torch import nn

#: activation modules that no backward rule changes
OTHER_ACTIVATIONS = (
    nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.PReLU, nn.ELU,
    nn.SELU, nn.CELU, nn.Mish, nn.Softplus, nn.RReLU, nn.Softsign, nn.Tanhshrink, nn.GLU,
)


def unchanged_activations(net: nn.Module) -> list[tuple[str, str]]:
    """(address, type name) of every activation module a rectifier rule leaves alone."""
    out = []
    for name, m in net.named_modules():
        # nn.Hardtanh other than ReLU6 too (ReLU6 is a Hardtanh subclass that the rules cover)
        if isinstance(m, OTHER_ACTIVATIONS) or type(m) is nn.Hardtanh:
            out.append((name or type(net).__name__, type(m).__name__))
    return out


def unchanged_message(net: nn.Module, rule: str, *, limit: int = 6) -> str | None:
    """A warning naming the modules left with their ordinary gradient, or None when there are none."""
    found = unchanged_activations(net)
    if not found:
        return None
    kinds = sorted({k for _, k in found})
    names = ", ".join(n for n, _ in found[:limit]) + (f" and {len(found) - limit} more" if len(found) > limit else "")
    return (
        f"the {rule} rule is defined for ReLU/ReLU6 only: {len(found)} {'/'.join(kinds)} module(s) "
        f"keep their ordinary gradient ({names})"
    )
