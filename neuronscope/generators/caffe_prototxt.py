"""Read a Caffe ``.prototxt`` network definition: its inputs and its layer list.

The protobuf text format is parsed into nested dicts (field name -> list of
values); :func:`net_layers` then keeps, per layer, what the converter needs:
name, type, bottom, top and the parameters of the supported layer types
(``num_output``, ``kernel_size``, ``stride``, ``pad``, ``group``, ``dilation``,
``bias_term``, ``negative_slope``, reshape ``dim``\\ s, crop ``axis`` /
``offset``, power / eltwise / concat settings). Both the current ``layer { }``
and the legacy ``layers { type: CONVOLUTION }`` forms are read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import NeuronscopeError

_TOKEN = re.compile(r'\s+|#[^\n]*|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{}:\[\],;<>]|[^\s{}:\[\],;<>"\'#]+')
_V1_NAMES = {
    "CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution", "INNER_PRODUCT": "InnerProduct",
    "RELU": "ReLU", "DROPOUT": "Dropout", "SPLIT": "Split", "FLATTEN": "Flatten", "ELTWISE": "Eltwise",
    "CONCAT": "Concat", "POWER": "Power", "TANH": "TanH", "SIGMOID": "Sigmoid", "POOLING": "Pooling",
    "SOFTMAX": "Softmax", "LRN": "LRN", "SILENCE": "Silence", "ABSVAL": "AbsVal",
}


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:  # pragma: no cover - the last alternative matches any other character run
            raise NeuronscopeError(f"prototxt: cannot read text at offset {pos}: {text[pos:pos + 20]!r}")
        tok = m.group(0)
        pos = m.end()
        if not tok.isspace() and not tok.startswith("#"):
            out.append(tok)
    return out


def _scalar(tok: str) -> Any:
    if tok[0] in "\"'":
        return bytes(tok[1:-1], "utf-8").decode("unicode_escape")
    low = tok.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(tok)
    except ValueError:
        pass
    try:
        return float(tok)
    except ValueError:
        return tok  # an enum name (MAX, CUDNN, SUM, ...)


def parse_prototxt(text: str, *, source: str = "prototxt") -> dict[str, list]:
    """Protobuf text format -> {field: [values]}; a sub-message value is again such a dict."""
    toks = _tokens(text)
    pos = 0

    def message(closing: str | None) -> dict[str, list]:
        nonlocal pos
        msg: dict[str, list] = {}
        while pos < len(toks):
            tok = toks[pos]
            if tok in ("}", ">"):
                if closing is None:
                    raise NeuronscopeError(f"{source}: unexpected {tok!r} (unbalanced braces)")
                pos += 1
                return msg
            if tok in (",", ";"):
                pos += 1
                continue
            name = tok
            pos += 1
            if pos < len(toks) and toks[pos] == ":":
                pos += 1
            if pos >= len(toks):
                raise NeuronscopeError(f"{source}: field {name!r} has no value")
            tok = toks[pos]
            if tok in ("{", "<"):
                pos += 1
                msg.setdefault(name, []).append(message("}"))
            elif tok == "[":
                pos += 1
                while pos < len(toks) and toks[pos] != "]":
                    if toks[pos] != ",":
                        msg.setdefault(name, []).append(_scalar(toks[pos]))
                    pos += 1
                pos += 1
            else:
                pos += 1
                msg.setdefault(name, []).append(_scalar(tok))
        if closing is not None:
            raise NeuronscopeError(f"{source}: a '{{' is never closed")
        return msg

    return message(None)


def _first(msg: dict, key: str, default=None):
    v = msg.get(key)
    return v[0] if v else default


def _sub(msg: dict, key: str) -> dict:
    return _first(msg, key, {}) or {}


def _layer_spec(raw: dict, index: int, source: str) -> dict[str, Any]:
    ltype = _first(raw, "type", "")
    ltype = _V1_NAMES.get(ltype, ltype) if isinstance(ltype, str) else str(ltype)
    spec: dict[str, Any] = {
        "name": str(_first(raw, "name", f"layer{index}")),
        "type": ltype,
        "bottom": [str(b) for b in raw.get("bottom", [])],
        "top": [str(t) for t in raw.get("top", [])],
    }
    if ltype in ("Convolution", "Deconvolution"):
        p = _sub(raw, "convolution_param")
        ks = p.get("kernel_size", [])
        spec.update(
            num_output=int(_first(p, "num_output", 0)),
            kernel=(int(_first(p, "kernel_h", ks[0] if ks else 0)), int(_first(p, "kernel_w", ks[-1] if ks else 0))),
            stride=(int(_first(p, "stride_h", (p.get("stride") or [1])[0])), int(_first(p, "stride_w", (p.get("stride") or [1])[-1]))),
            pad=(int(_first(p, "pad_h", (p.get("pad") or [0])[0])), int(_first(p, "pad_w", (p.get("pad") or [0])[-1]))),
            dilation=int((p.get("dilation") or [1])[0]),
            group=int(_first(p, "group", 1)),
            bias_term=bool(_first(p, "bias_term", True)),
        )
        if spec["num_output"] < 1 or min(spec["kernel"]) < 1:
            raise NeuronscopeError(f"{source}: layer {spec['name']!r} ({ltype}) needs num_output and kernel_size")
    elif ltype == "InnerProduct":
        p = _sub(raw, "inner_product_param")
        spec.update(num_output=int(_first(p, "num_output", 0)), bias_term=bool(_first(p, "bias_term", True)),
                    axis=int(_first(p, "axis", 1)), transpose=bool(_first(p, "transpose", False)))
        if spec["num_output"] < 1:
            raise NeuronscopeError(f"{source}: layer {spec['name']!r} (InnerProduct) needs num_output")
    elif ltype == "ReLU":
        spec["negative_slope"] = float(_first(_sub(raw, "relu_param"), "negative_slope", 0.0))
    elif ltype == "Reshape":
        p = _sub(raw, "reshape_param")
        spec.update(dims=[int(d) for d in _sub(p, "shape").get("dim", [])], axis=int(_first(p, "axis", 0)),
                    num_axes=int(_first(p, "num_axes", -1)))
    elif ltype == "Crop":
        p = _sub(raw, "crop_param")
        spec.update(axis=int(_first(p, "axis", 2)), offset=[int(o) for o in p.get("offset", [])])
    elif ltype == "Power":
        p = _sub(raw, "power_param")
        spec.update(power=float(_first(p, "power", 1.0)), scale=float(_first(p, "scale", 1.0)), shift=float(_first(p, "shift", 0.0)))
    elif ltype == "Eltwise":
        p = _sub(raw, "eltwise_param")
        spec.update(operation=str(_first(p, "operation", "SUM")), coeff=[float(c) for c in p.get("coeff", [])])
    elif ltype == "Concat":
        p = _sub(raw, "concat_param")
        spec["axis"] = int(_first(p, "axis", _first(p, "concat_dim", 1)))
    elif ltype == "Flatten":
        p = _sub(raw, "flatten_param")
        spec.update(axis=int(_first(p, "axis", 1)), end_axis=int(_first(p, "end_axis", -1)))
    elif ltype == "Input":
        shapes = _sub(raw, "input_param").get("shape", [])
        spec["shape"] = [int(d) for d in (shapes[0].get("dim", []) if shapes else [])]
    return spec


def net_layers(net: dict[str, list], *, source: str = "prototxt") -> tuple[dict[str, list[int]], list[dict[str, Any]]]:
    """(inputs {blob name: shape}, layer specs in order) of a parsed prototxt."""
    inputs: dict[str, list[int]] = {}
    names = [str(n) for n in net.get("input", [])]
    shapes = [[int(d) for d in s.get("dim", [])] for s in net.get("input_shape", [])]
    dims = [int(d) for d in net.get("input_dim", [])]
    for i, name in enumerate(names):
        if i < len(shapes):
            inputs[name] = shapes[i]
        elif len(dims) >= 4 * (i + 1):
            inputs[name] = dims[4 * i : 4 * i + 4]
        else:
            raise NeuronscopeError(f"{source}: input {name!r} has no input_shape / input_dim")
    raw_layers = net.get("layer", []) or net.get("layers", [])
    layers = []
    for i, raw in enumerate(raw_layers):
        if not isinstance(raw, dict):
            raise NeuronscopeError(f"{source}: layer {i} is not a {{ }} block")
        spec = _layer_spec(raw, i, source)
        if spec["type"] == "Input":
            for t in spec["top"]:
                inputs[t] = spec["shape"]
            continue
        layers.append(spec)
    if not layers:
        raise NeuronscopeError(f"{source} defines no layers (expected layer {{ name: ... type: ... }} blocks)")
    if not inputs:
        raise NeuronscopeError(f"{source} declares no input (expected input: / input_shape or an Input layer)")
    return inputs, layers


def read_prototxt(path: str | os.PathLike) -> tuple[dict[str, list[int]], list[dict[str, Any]]]:
    """:func:`net_layers` of a ``.prototxt`` file."""
    p = Path(path)
    if not p.is_file():
        raise NeuronscopeError(f"prototxt file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise NeuronscopeError(f"{p} is not a text prototxt (is it the .caffemodel?)") from None
    return net_layers(parse_prototxt(text, source=str(p)), source=str(p))
