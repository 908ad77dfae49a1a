"""Read a Caffe ``.caffemodel`` file: layer names, types and weight blobs, without Caffe.

A ``.caffemodel`` is a serialized ``NetParameter`` protobuf message. This module
decodes the protobuf wire format by hand and keeps only what a converter needs:

* ``NetParameter.layer`` (field 100, ``LayerParameter``): name 1, type 2
  (string), bottom 3, top 4, blobs 7;
* ``NetParameter.layers`` (field 2, the legacy ``V1LayerParameter``): bottom 2,
  top 3, name 4, type 5 (an enum, mapped to the new type names), blobs 6, and
  the even older ``V0LayerParameter`` nested in its field 1 (name 1, type 2,
  blobs 50);
* ``BlobProto``: shape 7 (``BlobShape``: dim 1, packed int64), data 5 (packed
  float), double_data 8 (packed double) and the legacy 4-D num / channels /
  height / width (fields 1-4).

Float data is read with one ``numpy.frombuffer`` per blob, so a few hundred MB
file costs about its size in memory and a second or two.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NeuronscopeError

# V1LayerParameter.LayerType -> the string type names of LayerParameter.
V1_TYPES = {
    0: "None", 35: "AbsVal", 1: "Accuracy", 30: "ArgMax", 2: "BNLL", 3: "Concat", 37: "ContrastiveLoss",
    4: "Convolution", 5: "Data", 39: "Deconvolution", 6: "Dropout", 32: "DummyData", 7: "EuclideanLoss",
    25: "Eltwise", 38: "Exp", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output", 28: "HingeLoss", 11: "Im2col",
    12: "ImageData", 13: "InfogainLoss", 14: "InnerProduct", 15: "LRN", 29: "MemoryData",
    16: "MultinomialLogisticLoss", 34: "MVN", 17: "Pooling", 26: "Power", 18: "ReLU", 19: "Sigmoid",
    27: "SigmoidCrossEntropyLoss", 36: "Silence", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split",
    33: "Slice", 23: "TanH", 24: "WindowData", 31: "Threshold",
}


@dataclass
class CaffeLayer:
    """One layer of a caffemodel: its name, type, blob names and weight arrays (float32)."""

    name: str
    type: str
    bottom: list[str] = field(default_factory=list)
    top: list[str] = field(default_factory=list)
    blobs: list[np.ndarray] = field(default_factory=list)


class _Bad(Exception):
    pass


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Bad("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Bad("varint longer than 10 bytes")


def iter_fields(buf: memoryview):
    """(field number, wire type, value) of one message; value is an int or a memoryview of the payload."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise _Bad("field number 0")
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            if pos + 8 > end:
                raise _Bad("truncated 64-bit field")
            val, pos = buf[pos : pos + 8], pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise _Bad(f"field {num} claims {n} bytes, {end - pos} left")
            val, pos = buf[pos : pos + n], pos + n
        elif wt == 5:
            if pos + 4 > end:
                raise _Bad("truncated 32-bit field")
            val, pos = buf[pos : pos + 4], pos + 4
        else:  # 3/4 are the deprecated groups; 6/7 do not exist
            raise _Bad(f"unsupported wire type {wt} (field {num})")
        yield num, wt, val


def _packed_varints(wt: int, val) -> list[int]:
    if wt == 0:
        return [val]
    out, pos = [], 0
    while pos < len(val):
        v, pos = _varint(val, pos)
        out.append(v)
    return out


def _as_int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _text(val) -> str:
    return bytes(val).decode("utf-8", errors="replace")


def _blob(buf: memoryview) -> np.ndarray:
    shape: list[int] | None = None
    legacy = [0, 0, 0, 0]
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    for num, wt, val in iter_fields(buf):
        if num == 7 and wt == 2:
            shape = shape or []
            for n2, wt2, v2 in iter_fields(val):
                if n2 == 1:
                    shape += [_as_int64(v) for v in _packed_varints(wt2, v2)]
        elif num == 5:
            floats.append(np.frombuffer(val, dtype="<f4") if wt in (2, 5) else np.zeros(0, "<f4"))
        elif num == 8:
            doubles.append(np.frombuffer(val, dtype="<f8") if wt in (1, 2) else np.zeros(0, "<f8"))
        elif 1 <= num <= 4 and wt == 0:
            legacy[num - 1] = _as_int64(val)
    data = np.concatenate(floats) if floats else (np.concatenate(doubles) if doubles else np.zeros(0, "<f4"))
    if shape is None:
        shape = legacy if any(legacy) else [data.size]
    if int(np.prod(shape)) != data.size:
        raise _Bad(f"blob of shape {tuple(shape)} holds {data.size} values")
    return data.astype(np.float32, copy=False).reshape(shape)  # a read-only view of the file's bytes


def _layer(buf: memoryview, *, v1: bool) -> CaffeLayer:
    # LayerParameter: name 1, type 2, bottom 3, top 4, blobs 7.
    # V1LayerParameter: bottom 2, top 3, name 4, type 5 (enum), blobs 6, V0 layer 1.
    f_name, f_type, f_bottom, f_top, f_blobs = (4, 5, 2, 3, 6) if v1 else (1, 2, 3, 4, 7)
    layer = CaffeLayer(name="", type="")
    for num, wt, val in iter_fields(buf):
        if num == f_name and wt == 2:
            layer.name = _text(val)
        elif num == f_type:
            layer.type = V1_TYPES.get(val, f"V1 type {val}") if v1 and wt == 0 else _text(val) if wt == 2 else layer.type
        elif num == f_bottom and wt == 2:
            layer.bottom.append(_text(val))
        elif num == f_top and wt == 2:
            layer.top.append(_text(val))
        elif num == f_blobs and wt == 2:
            layer.blobs.append(_blob(val))
        elif v1 and num == 1 and wt == 2:  # V0LayerParameter: name 1, type 2, blobs 50
            for n0, w0, v0 in iter_fields(val):
                if n0 == 1 and w0 == 2:
                    layer.name = layer.name or _text(v0)
                elif n0 == 2 and w0 == 2:
                    layer.type = layer.type or _text(v0)
                elif n0 == 50 and w0 == 2:
                    layer.blobs.append(_blob(v0))
    return layer


def parse_caffemodel(data: bytes | bytearray | memoryview, *, source: str = "caffemodel") -> list[CaffeLayer]:
    """The layers of a serialized ``NetParameter`` (new ``layer`` and legacy ``layers`` fields), in file order."""
    buf = memoryview(data)
    layers: list[CaffeLayer] = []
    try:
        for num, wt, val in iter_fields(buf):
            if num == 100 and wt == 2:
                layers.append(_layer(val, v1=False))
            elif num == 2 and wt == 2:
                layers.append(_layer(val, v1=True))
    except _Bad as e:
        raise NeuronscopeError(f"{source} is not a readable Caffe model (protobuf NetParameter): {e}") from None
    if not layers:
        raise NeuronscopeError(f"{source} holds no Caffe layers (no NetParameter.layer or .layers fields); is it a .caffemodel?")
    return layers


def read_caffemodel(path: str | os.PathLike) -> list[CaffeLayer]:
    """:func:`parse_caffemodel` of a file."""
    p = Path(path)
    if not p.is_file():
        raise NeuronscopeError(f"caffemodel file not found: {p}")
    return parse_caffemodel(p.read_bytes(), source=str(p))


def layers_by_name(layers: list[CaffeLayer]) -> dict[str, CaffeLayer]:
    """Name -> layer, keeping the last of duplicate names that carry blobs (as Caffe's CopyTrainedLayersFrom)."""
    out: dict[str, CaffeLayer] = {}
    for layer in layers:
        if layer.name not in out or layer.blobs:
            out[layer.name] = layer
    return out
