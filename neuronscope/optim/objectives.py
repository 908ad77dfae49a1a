"""The objective algebra: what an optimization maximizes, per batch row.

An :class:`Objective` is a flat weighted list of terms ``[(w, term, rows)]``.
``a + b``, ``a - b`` and ``k * a`` concatenate lists or scale weights, and the
builtin ``sum()`` of many objectives stays flat (no recursion). Each term returns
one value per batch row; ``rows`` binds a term to some rows (``None`` = all), so
one optimization can render many targets::

    obj = channel("blocks.10", 3) - 100 * diversity("blocks.10")
    many = sum(channel("blocks.10", c).on(c) for c in range(32))

The per-row value is V_b = sum_i w_i v_{i,b} (0 outside a term's rows); the
render loop maximizes sum_b V_b. See docs/design.md section 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..errors import NeuronscopeError
from ..taps import channel_count

Rows = tuple[int, ...] | None


class Term:
    """One differentiable map (activations, image) -> value per row."""

    #: layer addresses this term needs tapped (``logits`` for class terms)
    layers: tuple[str, ...] = ()
    #: terms that couple rows (diversity) say so; all others are row-local
    couples_rows = False

    def value(self, acts: Mapping[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    def check(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Validate against per-image layer shapes; raise NeuronscopeError if invalid."""


def _positions(a: torch.Tensor) -> torch.Tensor:
    """Activations as (B, C, P): channels by positions, for 4-D, token 3-D and 2-D layouts."""
    if a.dim() == 4:
        return a.flatten(2)
    if a.dim() == 3:  # (B, N, C) tokens
        return a.transpose(1, 2)
    if a.dim() == 2:
        return a.unsqueeze(-1)
    raise NeuronscopeError(f"cannot read channels from an activation of shape {tuple(a.shape)}")


def _channels(layer: str, shapes) -> int:
    n = channel_count(tuple(shapes[layer]))
    if n is None:
        raise NeuronscopeError(f"layer {layer!r} has output shape {tuple(shapes[layer])}; it has no channels")
    return n


def _check_vector(what: str, layer: str, vector: torch.Tensor, shapes) -> None:
    """A vector over a layer's channels must have one entry per channel."""
    if layer in shapes and _channels(layer, shapes) != vector.numel():
        raise NeuronscopeError(
            f"{what} {vector.numel()} entries but layer {layer!r} has {_channels(layer, shapes)} channels"
        )


def _check_channel(layer: str, c: int, shapes) -> None:
    if layer not in shapes:
        return
    n = _channels(layer, shapes)
    if not 0 <= c < n:
        raise NeuronscopeError(f"channel {c} is out of range for layer {layer!r}, which has channels 0..{n - 1}")


def _check_position(layer: str, x: int | None, y: int | None, shapes) -> None:
    """A position (x = column, y = row; None = the centre) must lie on the layer's map."""
    shape = shapes.get(layer)
    if shape is None or (x is None and y is None):
        return
    if len(shape) == 1:
        raise NeuronscopeError(f"layer {layer!r} has no spatial map (output shape {tuple(shape)}), so a position is not valid")
    if len(shape) == 2:  # (tokens, channels): x is the token
        if x is not None and not 0 <= x < shape[0]:
            raise NeuronscopeError(f"token {x} is out of range for layer {layer!r}, which has tokens 0..{shape[0] - 1}")
        return
    _, h, w = shape
    x = w // 2 if x is None else x
    y = h // 2 if y is None else y
    if not (0 <= x < w and 0 <= y < h):
        raise NeuronscopeError(
            f"position ({x},{y}) is outside layer {layer!r}, whose map is {w} wide and {h} high "
            f"(x in 0..{w - 1}, y in 0..{h - 1})"
        )


@dataclass(eq=False)
class Channel(Term):
    layer: str
    c: int

    def __post_init__(self):
        self.layers = (self.layer,)

    def value(self, acts, image):
        return _positions(acts[self.layer])[:, self.c].mean(-1)

    def describe(self):
        return f"{self.layer}:{self.c}"

    def check(self, shapes):
        _check_channel(self.layer, self.c, shapes)


@dataclass(eq=False)
class Neuron(Term):
    layer: str
    c: int
    x: int | None = None
    y: int | None = None

    def __post_init__(self):
        self.layers = (self.layer,)

    def value(self, acts, image):
        a = acts[self.layer]
        if a.dim() != 4:
            return _positions(a)[:, self.c].mean(-1) if a.dim() == 2 else a[:, self._token(a), self.c]
        h, w = a.shape[-2:]
        x = w // 2 if self.x is None else self.x
        y = h // 2 if self.y is None else self.y
        return a[:, self.c, y, x]

    def _token(self, a):
        return a.shape[1] // 2 if self.x is None else self.x

    def describe(self):
        pos = "" if self.x is None and self.y is None else f"@{self.x},{self.y}"
        return f"{self.layer}:{self.c}{pos}"

    def check(self, shapes):
        _check_channel(self.layer, self.c, shapes)
        _check_position(self.layer, self.x, self.y, shapes)


@dataclass(eq=False)
class LayerMean(Term):
    layer: str
    squared: bool = False

    def __post_init__(self):
        self.layers = (self.layer,)

    def value(self, acts, image):
        a = acts[self.layer].flatten(1)
        return (a * a).mean(-1) if self.squared else a.mean(-1)

    def describe(self):
        return f"{'deepdream' if self.squared else 'layer_mean'}({self.layer})"


@dataclass(eq=False)
class ClassLogit(Term):
    k: int
    layers = ("logits",)

    def value(self, acts, image):
        return acts["logits"][:, self.k]

    def describe(self):
        return f"class:{self.k}"

    def check(self, shapes):
        n = shapes.get("logits", (None,))[0]
        if n is not None and not 0 <= self.k < n:
            raise NeuronscopeError(f"class {self.k} is out of range: the model has classes 0..{n - 1}")


class _CompatLogProb(torch.autograd.Function):
    """Value log p_y; gradient (1 - p_y) on logit y only (the released PPGN code's gradient)."""

    @staticmethod
    def forward(ctx, logits, y):
        logp = F.log_softmax(logits, 1)
        ctx.save_for_backward(logp, y)
        return logp.gather(1, y[:, None]).squeeze(1)

    @staticmethod
    def backward(ctx, g):
        logp, y = ctx.saved_tensors
        grad = torch.zeros_like(logp)
        p_y = logp.gather(1, y[:, None]).exp()
        grad.scatter_(1, y[:, None], (1 - p_y))
        return grad * g[:, None], None


@dataclass(eq=False)
class LogSoftmax(Term):
    """log p(c): the log-softmax of entry ``c`` over the layer's channels at one position.

    On ``logits`` this is log p(class c | image), PPGN's class condition. On a hidden
    layer it is PPGN's hidden-unit condition: the softmax over the channels at the
    position (x = column, y = row, default the centre; the token ``x`` of a token
    layout). ``compat`` keeps the value but backpropagates only (1 - p_c) into entry
    ``c`` and drops the -p_j terms of the other entries, as the released PPGN code does.
    """

    layer: str
    c: int
    x: int | None = None
    y: int | None = None
    compat: bool = False

    def __post_init__(self):
        self.layers = (self.layer,)

    def value(self, acts, image):
        a = acts[self.layer]
        if a.dim() == 4:
            h, w = a.shape[-2:]
            vec = a[:, :, h // 2 if self.y is None else self.y, w // 2 if self.x is None else self.x]
        elif a.dim() == 3:  # (B, N, C) tokens
            vec = a[:, a.shape[1] // 2 if self.x is None else self.x]
        else:
            vec = a.flatten(1)
        if self.compat:
            return _CompatLogProb.apply(vec, torch.full((vec.shape[0],), self.c, device=vec.device, dtype=torch.long))
        return F.log_softmax(vec, 1)[:, self.c]

    def describe(self):
        pos = "" if self.x is None and self.y is None else f"@{self.x},{self.y}"
        return f"log_softmax({self.layer}:{self.c}{pos})"

    def check(self, shapes):
        if self.layer == "logits":
            return ClassLogit(self.c).check(shapes)
        _check_channel(self.layer, self.c, shapes)
        _check_position(self.layer, self.x, self.y, shapes)


@dataclass(eq=False)
class Direction(Term):
    layer: str
    vector: torch.Tensor
    cosine_power: float | None = None  # None: plain dot product

    def __post_init__(self):
        self.layers = (self.layer,)
        self.vector = torch.as_tensor(self.vector, dtype=torch.float32).flatten()

    def value(self, acts, image):
        a = _positions(acts[self.layer])  # (B, C, P)
        v = self.vector.to(a.device, a.dtype)
        dot = torch.einsum("bcp,c->bp", a, v)
        if self.cosine_power is None:
            return dot.mean(-1)
        cos = dot / ((a.norm(dim=1) + 1e-4) * (v.norm() + 1e-4))
        return (dot * cos.clamp(min=0.1) ** self.cosine_power).mean(-1)

    def describe(self):
        return f"direction({self.layer})"

    def check(self, shapes):
        _check_vector("direction has", self.layer, self.vector, shapes)


@dataclass(eq=False)
class Cosine(Term):
    """Cosine similarity of the layer's position-averaged activation with a vector, in [-1, 1].

    With ``center``, both sides are taken relative to it: cos(a - center, vector - center).
    Unlike :class:`Direction` it does not grow with the activation's norm, so it steers
    *where* the features point without rewarding louder features.
    """

    layer: str
    vector: torch.Tensor
    center: torch.Tensor | None = None

    def __post_init__(self):
        self.layers = (self.layer,)
        self.vector = torch.as_tensor(self.vector, dtype=torch.float32).flatten()
        if self.center is not None:
            self.center = torch.as_tensor(self.center, dtype=torch.float32).flatten()
            if self.center.numel() != self.vector.numel():
                raise NeuronscopeError(f"cosine: center has {self.center.numel()} entries but the vector has {self.vector.numel()}")
        v = self.vector - (self.center if self.center is not None else 0)
        if not torch.isfinite(v).all() or v.norm() == 0:
            raise NeuronscopeError("cosine: the vector (minus the center) must be finite and non-zero")

    def value(self, acts, image):
        a = _positions(acts[self.layer]).mean(-1)  # (B, C)
        v = self.vector.to(a.device, a.dtype)
        if self.center is not None:
            c = self.center.to(a.device, a.dtype)
            a, v = a - c, v - c
        return F.cosine_similarity(a, v[None].expand_as(a), dim=1, eps=1e-6)

    def describe(self):
        return f"cosine({self.layer})"

    def check(self, shapes):
        _check_vector("cosine: the vector has", self.layer, self.vector, shapes)


@dataclass(eq=False)
class Diversity(Term):
    """Sum over the other rows of the group of <G_a, G_b> with Frobenius-normalized Gram matrices.

    Use it with a negative weight; it is the only term that couples rows, and only
    the rows of its own group (its ``rows`` binding, or the whole batch).
    """

    layer: str
    couples_rows = True

    def __post_init__(self):
        self.layers = (self.layer,)

    def value(self, acts, image):
        a = _positions(acts[self.layer])  # (B, C, P)
        gram = torch.bmm(a, a.transpose(1, 2)).flatten(1)
        gram = gram / (gram.norm(dim=1, keepdim=True) + 1e-8)
        sim = gram @ gram.T
        return sim.sum(1) - sim.diagonal()

    def describe(self):
        return f"diversity({self.layer})"


@dataclass(eq=False)
class TotalVariation(Term):
    def value(self, acts, image):
        dy = (image[:, :, 1:, :] - image[:, :, :-1, :]).abs().flatten(1).sum(-1)
        dx = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().flatten(1).sum(-1)
        return dy + dx

    def describe(self):
        return "tv"


@dataclass(eq=False)
class L1(Term):
    constant: float = 0.5

    def value(self, acts, image):
        return (image - self.constant).abs().flatten(1).sum(-1)

    def describe(self):
        return "l1"


@dataclass(eq=False)
class L2(Term):
    constant: float = 0.5

    def value(self, acts, image):
        return torch.sqrt(1e-6 + ((image - self.constant) ** 2).flatten(1).sum(-1))

    def describe(self):
        return "l2"


@dataclass(eq=False)
class BlurEachStep(Term):
    def value(self, acts, image):
        k = torch.tensor([[0.5, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.5, 0.5]], device=image.device, dtype=image.dtype)
        k = (k / k.sum()).expand(image.shape[1], 1, 3, 3)
        blurred = F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), k, groups=image.shape[1]).detach()
        return 0.5 * ((image - blurred) ** 2).flatten(1).sum(-1)

    def describe(self):
        return "blur_each_step"


class Objective:
    """A weighted, row-bound, flat sum of terms. Maximized by the render loop."""

    __slots__ = ("terms",)

    def __init__(self, terms: Iterable[tuple[float, Term, Rows]] = ()):
        self.terms: list[tuple[float, Term, Rows]] = list(terms)

    # ---- algebra
    def __add__(self, other):
        if isinstance(other, (int, float)) and other == 0:
            return self
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(self.terms + other.terms)

    __radd__ = __add__

    def __neg__(self):
        return Objective((-w, t, r) for w, t, r in self.terms)

    def __sub__(self, other):
        if not isinstance(other, Objective):
            return NotImplemented
        return self + (-other)

    def __mul__(self, k):
        if isinstance(k, Objective):
            raise NeuronscopeError("objectives can be added and scaled by numbers, not multiplied together")
        if not isinstance(k, (int, float)):
            return NotImplemented
        return Objective((w * k, t, r) for w, t, r in self.terms)

    __rmul__ = __mul__

    def __truediv__(self, k):
        return self * (1.0 / k)

    @staticmethod
    def sum(objectives: Iterable["Objective"]) -> "Objective":
        """A flat sum of many objectives in linear time."""
        return Objective(t for o in objectives for t in o.terms)

    def on(self, rows: int | Sequence[int] | None) -> "Objective":
        """Bind every term to ``rows`` (an int or a sequence of batch rows)."""
        if rows is None:
            bound = None
        else:
            bound = (int(rows),) if isinstance(rows, int) else tuple(int(r) for r in rows)
        return Objective((w, t, bound) for w, t, _ in self.terms)

    # ---- introspection
    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys(layer for _, t, _ in self.terms for layer in t.layers))

    def rows_needed(self) -> int:
        """The smallest batch size that holds every bound row (1 when nothing is bound)."""
        return max((max(r) + 1 for _, _, r in self.terms if r), default=1)

    def check(self, shapes: Mapping[str, tuple[int, ...]], batch: int) -> None:
        for _, term, rows in self.terms:
            term.check(shapes)
            if rows and max(rows) >= batch:
                raise NeuronscopeError(f"term {term.describe()} is bound to row {max(rows)} but the batch has {batch} rows")

    def __repr__(self) -> str:
        parts = []
        for w, t, r in self.terms[:6]:
            rows = "" if r is None else f".on({list(r) if len(r) > 1 else r[0]})"
            parts.append(f"{w:g}*{t.describe()}{rows}")
        more = f" + ... ({len(self.terms)} terms)" if len(self.terms) > 6 else ""
        return "Objective(" + " + ".join(parts) + more + ")"

    # ---- evaluation
    def __call__(self, acts: Mapping[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """V_b for every row b of the batch, shape (B,)."""
        batch = image.shape[0]
        total = image.new_zeros(batch)
        # Row-bound terms are evaluated on their own rows only, so rendering many
        # targets costs one small gather per term, not a whole-batch pass each.
        for w, term, rows in self.terms:
            if rows is None:
                total = total + w * term.value(acts, image)
                continue
            idx = torch.tensor(rows, device=image.device)
            sub_acts = _RowView(acts, idx)
            v = term.value(sub_acts, image.index_select(0, idx))
            total = total.index_add(0, idx, w * v)
        return total


class _RowView(Mapping):
    """Activations restricted to some rows, computed lazily per layer."""

    def __init__(self, acts, idx):
        self.acts, self.idx, self.cache = acts, idx, {}

    def __getitem__(self, key):
        if key not in self.cache:
            self.cache[key] = self.acts[key].index_select(0, self.idx)
        return self.cache[key]

    def __iter__(self):
        return iter(self.acts)

    def __len__(self):
        return len(self.acts)


# ---- constructors (the public vocabulary)

def _obj(term: Term) -> Objective:
    return Objective([(1.0, term, None)])


def channel(layer: str, c: int) -> Objective:
    """Mean of channel ``c`` of ``layer`` over positions (or tokens)."""
    return _obj(Channel(layer, int(c)))


def neuron(layer: str, c: int, x: int | None = None, y: int | None = None) -> Objective:
    """Channel ``c`` at one position (x = column, y = row; default the centre)."""
    return _obj(Neuron(layer, int(c), x, y))


def layer_mean(layer: str) -> Objective:
    return _obj(LayerMean(layer))


def deepdream(layer: str) -> Objective:
    """Mean of squared activations (Lucid's ``deepdream``)."""
    return _obj(LayerMean(layer, squared=True))


def class_logit(k: int) -> Objective:
    """The pre-softmax logit of class ``k``."""
    return _obj(ClassLogit(int(k)))


def class_log_softmax(k: int, compat: bool = False) -> Objective:
    """log p(class ``k`` | image), the log-softmax of the logits (PPGN's condition)."""
    return _obj(LogSoftmax("logits", int(k), compat=compat))


def log_softmax(layer: str, c: int, x: int | None = None, y: int | None = None, compat: bool = False) -> Objective:
    """Log-softmax of channel ``c`` over the channels of ``layer`` at one position (default the centre)."""
    return _obj(LogSoftmax(layer, int(c), x, y, compat))


def direction(layer: str, vector) -> Objective:
    return _obj(Direction(layer, vector))


def direction_cos(layer: str, vector, power: float = 1.0) -> Objective:
    """Dot product weighted by max(0.1, cos)^power (Olah et al.)."""
    return _obj(Direction(layer, vector, float(power)))


def cosine(layer: str, vector, center=None) -> Objective:
    """Cosine of the layer's position-averaged activation with ``vector`` (relative to ``center``), in [-1, 1]."""
    return _obj(Cosine(layer, vector, center))


def diversity(layer: str) -> Objective:
    """Gram-matrix similarity across the rows of a group; use with a negative weight."""
    return _obj(Diversity(layer))


def tv() -> Objective:
    return _obj(TotalVariation())


def l1(constant: float = 0.5) -> Objective:
    return _obj(L1(constant))


def l2(constant: float = 0.5) -> Objective:
    return _obj(L2(constant))


def blur_each_step() -> Objective:
    return _obj(BlurEachStep())


def as_objective(spec) -> Objective:
    """An Objective from an Objective or the ``"layer:c"`` shorthand."""
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, str) and ":" in spec:
        layer, _, c = spec.rpartition(":")
        if c.strip().isdigit():
            return channel(layer.strip(), int(c))
    raise NeuronscopeError(f"cannot read {spec!r} as an objective; use 'layer:channel' or an Objective")
