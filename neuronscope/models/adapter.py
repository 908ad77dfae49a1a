"""The model adapter: a network plus what is needed to feed and read it.

neuronscope keeps images in [0, 1]; the adapter owns the preprocessing that maps
them to what the network expects, its input size and its class labels. Layer
addresses are the dotted ``named_modules()`` names of the wrapped network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NeuronscopeError
from ..input_range import check_input_range

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """(x - mean) / std per channel, on [0, 1] images."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


PREPROCESSING = {
    "imagenet": lambda: Normalize(IMAGENET_MEAN, IMAGENET_STD),
    "minus_one_one": lambda: Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "none": lambda: nn.Identity(),
}


def make_preprocess(spec: str | nn.Module | Callable | None) -> nn.Module:
    if isinstance(spec, nn.Module):
        return spec
    if callable(spec):
        return _Lambda(spec)
    if spec is None or spec not in PREPROCESSING:
        raise NeuronscopeError(
            f"unknown preprocessing {spec!r}; valid: {', '.join(PREPROCESSING)}, "
            "an nn.Module or a callable on [0,1] image batches"
        )
    return PREPROCESSING[spec]()


class _Lambda(nn.Module):
    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class Frozen(nn.Module):
    """A module that stays in eval mode with no trainable parameters (the model adapter, a generator).

    Subclasses call :meth:`_freeze` at the end of ``__init__``, once every
    submodule and parameter is in place.
    """

    def _freeze(self) -> None:
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    # nn.Module.train would switch BatchNorm to batch statistics (and dropout on): always stay in eval.
    def train(self, mode: bool = True):
        return super().train(False)


@dataclass
class ModelInfo:
    name: str
    input_size: int
    labels: list[str] | None = None
    eval_resize: float = 0.875  # centre-crop fraction used for evaluation
    source: str = "user"
    extra: dict[str, Any] = field(default_factory=dict)
    # the network only runs at input_size (a ViT with fixed position embeddings): other sizes are resized to it
    fixed_size: bool = False


def _output_hint(name: str, out: Any) -> str:
    """Why a network's output is no logits tensor, and the ``output=`` that picks them: a dict's key, a tuple's index."""
    kind = type(out).__name__
    where = ("; from the command line, have your factory return ns.load_model(net, preprocess=..., output=...)")
    if isinstance(out, dict) and out:
        keys = list(out)
        tensors = [k for k, v in out.items() if isinstance(v, torch.Tensor)] or keys
        pick = next((k for k in tensors if "logit" in str(k).lower()), tensors[0])
        return (f"model {name!r} returns a {kind} with keys {', '.join(map(repr, keys))}, not a tensor; say which "
                f"holds the logits by its key, e.g. load_model(..., output={pick!r}){where}")
    if isinstance(out, (tuple, list)) and out:
        last = len(out) - 1
        return (f"model {name!r} returns a {kind} of {len(out)} elements, not a tensor; say which holds the logits "
                f"by its index" + (f", 0 to {last}" if last else "") + f", e.g. load_model(..., output=0){where}")
    return f"model {name!r} returns a {kind}, not a tensor of logits"


class Model(Frozen):
    """A frozen, eval-mode network that takes [0, 1] RGB image batches.

    ``model(x)`` returns the logits. ``model.net`` is the wrapped network, and
    layer names are addresses inside it. ``output`` selects the logits when the
    network returns a tuple or dict (an int index or a key).
    """

    def __init__(self, net: nn.Module, preprocess, info: ModelInfo, output: int | str | None = None):
        super().__init__()
        self.net = net
        self.preprocess = make_preprocess(preprocess)
        self.info = info
        self.output = output
        self._freeze()

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def input_size(self) -> int:
        return self.info.input_size

    @property
    def labels(self) -> list[str] | None:
        return self.info.labels

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def select_logits(self, out: Any) -> torch.Tensor:
        """The logits tensor from whatever the network returned."""
        if isinstance(out, torch.Tensor) and self.output is None:
            return out
        if self.output is None:
            raise NeuronscopeError(_output_hint(self.name, out))
        try:
            sel = out[self.output]
        except (KeyError, IndexError, TypeError) as e:
            raise NeuronscopeError(f"model output has no element {self.output!r}") from e
        if not isinstance(sel, torch.Tensor):
            raise NeuronscopeError(f"model output element {self.output!r} is a {type(sel).__name__}, not a tensor")
        return sel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise NeuronscopeError(f"expected an image batch of shape (B, 3, H, W), got {tuple(x.shape)}")
        check_input_range(x, self.name)
        s = self.info.input_size
        if self.info.fixed_size and tuple(x.shape[-2:]) != (s, s):
            # bilinear, antialiased when shrinking; differentiable, so renders at any size still work
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=min(x.shape[-2:]) > s)
        return self.select_logits(self.net(self.preprocess(x)))

    def label(self, k: int) -> str:
        if self.labels and 0 <= k < len(self.labels):
            return self.labels[k].split(",")[0]
        return f"class {k}"

    def class_index(self, name_or_index: str | int) -> int:
        """A class index from an int, a digit string or a (partial) label."""
        n = len(self.labels) if self.labels else None
        if isinstance(name_or_index, int) or str(name_or_index).strip().lstrip("+-").isdigit():  # -1 is an index too
            k = int(name_or_index)
            if k < 0 and n is None:
                raise NeuronscopeError(f"class {k} is out of range: class indices start at 0")
            if n is not None and not 0 <= k < n:
                raise NeuronscopeError(f"class {k} is out of range: {self.name} has classes 0..{n - 1}")
            return k
        if not self.labels:
            raise NeuronscopeError(f"model {self.name!r} has no class labels; give a class index")
        from ..errors import closest

        want = str(name_or_index).strip().lower().replace("_", " ")
        synonyms: dict[str, int] = {}
        owners: dict[str, list[int]] = {}
        for i, line in enumerate(self.labels):
            for s in line.split(","):
                name = s.strip().lower()
                synonyms.setdefault(name, i)
                if i not in owners.setdefault(name, []):
                    owners[name].append(i)
        if want in synonyms:
            if len(owners[want]) > 1:  # ImageNet has two 'crane's (bird, machine) and two 'maillot's
                listed = "; ".join(f"{k}: {self.labels[k]}" for k in owners[want])
                raise NeuronscopeError(
                    f"class name {name_or_index!r} is ambiguous for {self.name}: it names classes {listed}; "
                    f"give the index instead (e.g. class:{owners[want][0]})"
                )
            return synonyms[want]
        from ..class_search import has_wordnet, suggest

        hits = suggest(want, self.labels) or [f"{h} ({synonyms[h]})" for h in closest(want, synonyms)]
        raise NeuronscopeError(
            f"unknown class {name_or_index!r} for {self.name}; did you mean: "
            + (", ".join(hits) or "none")
            + (f" (`neuronscope classes {want}` lists every match)" if has_wordnet(self.labels) else "")
        )
