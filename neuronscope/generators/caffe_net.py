"""A PyTorch network built from a Caffe layer list, with weights from a caffemodel.

:class:`CaffeNet` runs the layers of a prototxt (as read by
``caffe_prototxt.net_layers``) in order over named blobs, like Caffe does. It
supports what feed-forward generators and simple classifiers use:
InnerProduct, Convolution, Deconvolution (PyTorch's ConvTranspose2d has
Caffe's weight layout, in x out/group x kh x kw), ReLU with ``negative_slope``,
Reshape (the batch dimension is always free, so a deploy prototxt's ``dim: 1``
runs any batch), Crop, Power, TanH, Sigmoid, AbsVal, Eltwise, Concat, Flatten,
Split, Softmax, Dropout (identity at test time) and Silence.

:func:`load_caffe_weights` checks every parameter blob against the shapes the
prototxt implies before copying it, so a prototxt and a caffemodel of
different networks fail with the layer and both shapes named.

``post`` optionally maps the output blob to an RGB 0-255 image the way the
released DeePSiM generators' scripts do: centre crop to ``crop`` pixels,
reverse the BGR channel order and add the BGR channel ``mean``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NeuronscopeError
from .caffe_model import CaffeLayer

PARAM_TYPES = ("InnerProduct", "Convolution", "Deconvolution")
SHAPE_ONLY = ("ReLU", "Dropout", "TanH", "Sigmoid", "Power", "AbsVal", "Softmax")
SUPPORTED = PARAM_TYPES + SHAPE_ONLY + ("Reshape", "Crop", "Eltwise", "Concat", "Flatten", "Split", "Silence")


def _key(name: str) -> str:
    return "L_" + "".join(c if c.isalnum() else "_" for c in name)


def _reshape_dims(spec: dict, shape: list[int], batch_free: bool = True) -> list[int]:
    dims = list(spec.get("dims", []))
    axis, num_axes = spec.get("axis", 0), spec.get("num_axes", -1)
    axis = axis if axis >= 0 else len(shape) + 1 + axis
    end = len(shape) if num_axes == -1 else axis + num_axes
    head, mid, tail = shape[:axis], shape[axis:end], shape[end:]
    out = []
    for i, d in enumerate(dims):
        if d == 0:
            out.append(mid[i] if i < len(mid) else 1)
        elif batch_free and axis == 0 and i == 0 and d > 0:
            out.append(shape[0])  # the batch dimension follows the input
        else:
            out.append(d)
    total = math.prod(mid)
    if out.count(-1) > 1:
        raise NeuronscopeError(f"layer {spec['name']!r} (Reshape): more than one dim: -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = total // max(known, 1)
    if math.prod(out) != total:
        raise NeuronscopeError(
            f"layer {spec['name']!r} (Reshape): cannot reshape {tuple(shape)} to dims {dims} ({math.prod(out)} != {total} values)"
        )
    return head + out + tail


def infer_shapes(inputs: dict[str, list[int]], layers: list[dict], *, source: str = "prototxt") -> dict[str, list[int]]:
    """Every blob's shape (batch 1) from the input shapes; raises on an unsupported or mis-wired layer."""
    shapes = {name: [1] + list(s[1:]) for name, s in inputs.items()}
    for spec in layers:
        t, name = spec["type"], spec["name"]
        if t not in SUPPORTED:
            raise NeuronscopeError(f"{source}: layer {name!r} has type {t!r}, which neuronscope cannot convert; supported: {', '.join(SUPPORTED)}")
        missing = [b for b in spec["bottom"] if b not in shapes]
        if missing or (not spec["bottom"] and t != "Silence"):
            raise NeuronscopeError(f"{source}: layer {name!r} reads blob(s) {missing or '(none)'} that no earlier layer or input makes")
        s = shapes[spec["bottom"][0]] if spec["bottom"] else []
        if t == "InnerProduct":
            ax = spec.get("axis", 1)
            out = s[:ax] + [spec["num_output"]]
        elif t in ("Convolution", "Deconvolution"):
            if len(s) != 4:
                raise NeuronscopeError(f"{source}: layer {name!r} ({t}) needs a 4-D input, got shape {tuple(s)}")
            (kh, kw), (sh, sw), (ph, pw), d = spec["kernel"], spec["stride"], spec["pad"], spec["dilation"]
            if t == "Convolution":
                hw = [(s[2] + 2 * ph - (d * (kh - 1) + 1)) // sh + 1, (s[3] + 2 * pw - (d * (kw - 1) + 1)) // sw + 1]
            else:
                hw = [(s[2] - 1) * sh - 2 * ph + d * (kh - 1) + 1, (s[3] - 1) * sw - 2 * pw + d * (kw - 1) + 1]
            if min(hw) < 1:
                raise NeuronscopeError(f"{source}: layer {name!r} ({t}) would output {hw[0]}x{hw[1]} from {s[2]}x{s[3]}")
            if s[1] % spec["group"] or spec["num_output"] % spec["group"]:
                raise NeuronscopeError(f"{source}: layer {name!r}: channels not divisible by group {spec['group']}")
            out = [s[0], spec["num_output"]] + hw
        elif t == "Reshape":
            out = _reshape_dims(spec, s)
        elif t == "Crop":
            if len(spec["bottom"]) != 2:
                raise NeuronscopeError(f"{source}: layer {name!r} (Crop) needs two bottoms (blob, reference)")
            ref, ax = shapes[spec["bottom"][1]], spec["axis"] % len(s)
            out = s[:ax] + ref[ax:]
        elif t == "Concat":
            ax = spec["axis"] % len(s)
            out = list(s)
            out[ax] = sum(shapes[b][ax] for b in spec["bottom"])
        elif t == "Flatten":
            ax, end = spec["axis"] % len(s), spec["end_axis"] % len(s)
            out = s[:ax] + [math.prod(s[ax : end + 1])] + s[end + 1 :]
        else:
            out = list(s)
        for top in spec["top"]:
            shapes[top] = out
    return shapes


def expected_blob_shapes(spec: dict, in_shape: list[int]) -> list[tuple[int, ...]]:
    """The parameter blob shapes Caffe keeps for a layer (weights, then bias)."""
    t = spec["type"]
    if t == "InnerProduct":
        k = math.prod(in_shape[spec.get("axis", 1):])
        w = (k, spec["num_output"]) if spec.get("transpose") else (spec["num_output"], k)
    elif t == "Convolution":
        w = (spec["num_output"], in_shape[1] // spec["group"], *spec["kernel"])
    elif t == "Deconvolution":
        w = (in_shape[1], spec["num_output"] // spec["group"], *spec["kernel"])
    else:
        return []
    return [w, (spec["num_output"],)] if spec["bias_term"] else [w]


def _same_shape(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Equal up to leading 1s (the legacy 4-D blobs store (1, 1, N, K) for (N, K))."""
    a, b = list(a), list(b)
    while len(a) > len(b) and a[0] == 1:
        a.pop(0)
    while len(b) > len(a) and b[0] == 1:
        b.pop(0)
    return a == b


class CaffeNet(nn.Module):
    """Runs a Caffe layer list; ``forward(x)`` feeds ``input`` and returns the ``output`` blob (after ``post``)."""

    def __init__(self, inputs: dict[str, list[int]], layers: list[dict[str, Any]], *, input: str | None = None,
                 output: str | None = None, post: dict | None = None, source: str = "prototxt"):
        super().__init__()
        self.input = input or next(iter(inputs))
        if self.input not in inputs:
            raise NeuronscopeError(f"{source}: no input named {self.input!r}; inputs: {', '.join(inputs)}")
        self.shapes = infer_shapes({self.input: inputs[self.input]}, layers, source=source)
        self.output = output or layers[-1]["top"][0]
        if self.output not in self.shapes:
            raise NeuronscopeError(f"{source}: no blob named {self.output!r}")
        self.layer_specs = [dict(s) for s in layers]
        self.post = dict(post or {})
        self.config = dict(kind="caffe", inputs={self.input: list(inputs[self.input])}, layers=self.layer_specs,
                           input=self.input, output=self.output, post=self.post)
        self.ops = nn.ModuleDict()
        for spec in layers:
            s = self.shapes[spec["bottom"][0]] if spec["bottom"] else []
            t = spec["type"]
            if t == "InnerProduct":
                self.ops[_key(spec["name"])] = nn.Linear(math.prod(s[spec.get("axis", 1):]), spec["num_output"],
                                                         bias=spec["bias_term"])
            elif t in ("Convolution", "Deconvolution"):
                cls = nn.Conv2d if t == "Convolution" else nn.ConvTranspose2d
                self.ops[_key(spec["name"])] = cls(s[1], spec["num_output"], tuple(spec["kernel"]), stride=tuple(spec["stride"]),
                                                         padding=tuple(spec["pad"]), dilation=spec["dilation"], groups=spec["group"],
                                                         bias=spec["bias_term"])
        self.in_shape = list(inputs[self.input][1:])

    @property
    def code_dim(self) -> int:
        return math.prod(self.in_shape)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B = h.shape[0]
        blobs = {self.input: h.reshape(B, *self.in_shape)}
        for spec in self.layer_specs:
            t = spec["type"]
            xs = [blobs[b] for b in spec["bottom"]]
            x = xs[0] if xs else None
            if t == "InnerProduct":
                y = self.ops[_key(spec["name"])](x.flatten(spec.get("axis", 1)))
            elif t in ("Convolution", "Deconvolution"):
                y = self.ops[_key(spec["name"])](x)
            elif t == "ReLU":
                y = F.leaky_relu(x, spec["negative_slope"]) if spec["negative_slope"] else F.relu(x)
            elif t in ("Dropout", "Split"):
                y = x
            elif t == "TanH":
                y = torch.tanh(x)
            elif t == "Sigmoid":
                y = torch.sigmoid(x)
            elif t == "AbsVal":
                y = x.abs()
            elif t == "Softmax":
                y = x.softmax(1)
            elif t == "Power":
                y = (spec["shift"] + spec["scale"] * x) ** spec["power"]
            elif t == "Reshape":
                y = x.reshape(_reshape_dims(spec, list(x.shape)))
            elif t == "Flatten":
                ax, end = spec["axis"] % x.dim(), spec["end_axis"] % x.dim()
                y = x.flatten(ax, end)
            elif t == "Crop":
                ref, ax = xs[1], spec["axis"] % x.dim()
                offs = spec["offset"] or [0]
                idx = [slice(None)] * x.dim()
                for i, d in enumerate(range(ax, x.dim())):
                    o = offs[i] if len(offs) > 1 else offs[0]
                    idx[d] = slice(o, o + ref.shape[d])
                y = x[tuple(idx)]
            elif t == "Eltwise":
                op = spec["operation"]
                if op == "PROD":
                    y = math.prod(xs[1:], start=xs[0])
                elif op == "MAX":
                    y = torch.stack(xs).amax(0)
                else:
                    coeff = spec["coeff"] or [1.0] * len(xs)
                    y = sum(c * v for c, v in zip(coeff, xs))
            elif t == "Concat":
                y = torch.cat(xs, spec["axis"])
            else:  # Silence
                continue
            for top in spec["top"]:
                blobs[top] = y
        return self._post(blobs[self.output])

    def _post(self, y: torch.Tensor) -> torch.Tensor:
        crop = self.post.get("crop")
        if crop and y.dim() == 4 and (y.shape[-1] > crop or y.shape[-2] > crop):
            top, left = (y.shape[-2] - crop) // 2, (y.shape[-1] - crop) // 2
            y = y[..., top : top + crop, left : left + crop]
        mean = self.post.get("mean_bgr")
        if mean is not None:
            y = y + torch.tensor(mean, dtype=y.dtype, device=y.device).view(1, -1, 1, 1)
        if self.post.get("bgr"):
            y = y.flip(1)
        return y

    def output_shape(self) -> list[int]:
        """(C, H, W) of an output image after ``post``."""
        s = list(self.shapes[self.output][1:])
        crop = self.post.get("crop")
        if crop and len(s) == 3:
            s[1], s[2] = min(s[1], crop), min(s[2], crop)
        return s


def check_caffe_weights(layers: list[dict], shapes: dict[str, list[int]], caffe_layers: dict[str, CaffeLayer], *,
                        source: str = "caffemodel", prototxt: str = "prototxt") -> list[str]:
    """Check the caffemodel's blobs against the shapes the layer list implies; returns unused caffemodel layers.

    Raises a :class:`NeuronscopeError` naming the layer when the caffemodel lacks
    a layer the prototxt has weights for, holds another number of blobs, or a blob
    of another shape.
    """
    with_blobs = [n for n, l in caffe_layers.items() if l.blobs]
    used = set()
    for spec in layers:
        if spec["type"] not in PARAM_TYPES:
            continue
        name = spec["name"]
        want = expected_blob_shapes(spec, shapes[spec["bottom"][0]])
        layer = caffe_layers.get(name)
        if layer is None or not layer.blobs:
            raise NeuronscopeError(
                f"{prototxt} and {source} disagree: the prototxt's {spec['type']} layer {name!r} has no weights in the "
                f"caffemodel (its layers with weights: {', '.join(with_blobs) or 'none'})"
            )
        if layer.type and layer.type != spec["type"] and layer.type in PARAM_TYPES:
            raise NeuronscopeError(
                f"{prototxt} and {source} disagree: layer {name!r} is a {spec['type']} in the prototxt but a {layer.type} in the caffemodel"
            )
        if len(layer.blobs) != len(want):
            raise NeuronscopeError(
                f"{prototxt} and {source} disagree: layer {name!r} needs {len(want)} blob(s) "
                f"({'weights and bias' if len(want) == 2 else 'weights only, bias_term: false'}), the caffemodel has {len(layer.blobs)}"
            )
        for i, (blob, shape) in enumerate(zip(layer.blobs, want)):
            if not _same_shape(tuple(blob.shape), shape):
                what = "weights" if i == 0 else "bias"
                raise NeuronscopeError(
                    f"{prototxt} and {source} disagree: layer {name!r} ({spec['type']}) {what} should have shape "
                    f"{shape} by the prototxt, the caffemodel holds {tuple(blob.shape)}"
                )
        used.add(name)
    return [n for n in with_blobs if n not in used]


def load_caffe_weights(net: CaffeNet, caffe_layers: dict[str, CaffeLayer], *, source: str = "caffemodel",
                       prototxt: str = "prototxt") -> list[str]:
    """Check (:func:`check_caffe_weights`), then copy the weight blobs into ``net``; returns unused caffemodel layers."""
    unused = check_caffe_weights(net.layer_specs, net.shapes, caffe_layers, source=source, prototxt=prototxt)
    for spec in net.layer_specs:
        if spec["type"] not in PARAM_TYPES:
            continue
        name, layer = spec["name"], caffe_layers[spec["name"]]
        want = expected_blob_shapes(spec, net.shapes[spec["bottom"][0]])
        op = net.ops[_key(name)]
        w = layer.blobs[0].reshape(want[0])
        if spec["type"] == "InnerProduct" and spec.get("transpose"):
            w = w.T
        with torch.no_grad():  # np.array copies: the blobs are read-only views of the file's bytes
            op.weight.copy_(torch.from_numpy(np.array(w, dtype=np.float32)))
            if len(want) == 2:
                op.bias.copy_(torch.from_numpy(np.array(layer.blobs[1].reshape(want[1]), dtype=np.float32)))
    return unused


def build_caffe_net(**config) -> CaffeNet:
    """Rebuild a :class:`CaffeNet` from its ``config`` (weights come from the saved state dict)."""
    config = dict(config)
    config.pop("kind", None)
    return CaffeNet(config.pop("inputs"), config.pop("layers"), **config)
