"""ONNX files as PyTorch modules, through ``onnx2torch`` (an optional install).

``load_model("onnx:PATH")`` converts the graph once into a ``torch.fx`` module
whose submodules are named after the ONNX nodes (``blocks/blocks/3/dw_conv/Conv``);
those names are the layer addresses. Preprocessing, input size and labels are
not in an ONNX file: declare them (``preprocess=``, ``input_size=``,
``labels=``); the default is ImageNet normalization at 224 px.

Install: ``pip install 'neuronscope[onnx]'`` then ``pip install --no-deps
onnx2torch==1.5.15``. onnx2torch declares torchvision as a dependency (for its
NonMaxSuppression and RoiAlign converters only), and pip would replace the CPU
torch with a CUDA build to satisfy it; ``--no-deps`` avoids that. Without
torchvision, onnx2torch's import of it is satisfied by a placeholder that
raises a clear error if a graph actually uses those two detection ops.
Classification and feature networks never do.

Known limits of onnx2torch 1.5.15: opsets up to 17 for ``Shape`` and a few
other ops (export with ``torch.onnx.export(..., opset_version=17)``); a graph
traced at one input size (``Pad`` amounts computed from the shape, as TF-style
"same" padding) only runs at that size, so such a model is marked fixed-size.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

from ..errors import NeuronscopeError

INSTALL = "pip install 'neuronscope[onnx]' && pip install --no-deps onnx2torch==1.5.15"


def _placeholder_torchvision() -> types.ModuleType:
    def missing(name):
        def op(*args, **kwargs):
            raise NeuronscopeError(f"this ONNX graph uses {name}, which onnx2torch runs through torchvision; install torchvision")
        return op

    tv = types.ModuleType("torchvision")
    tv.ops = types.ModuleType("torchvision.ops")
    for name in ("nms", "batched_nms", "roi_align", "box_convert"):
        setattr(tv.ops, name, missing(f"torchvision.ops.{name}"))
    tv.__neuronscope_placeholder__ = True
    return tv


def import_onnx2torch():
    """``onnx2torch`` and ``onnx``, importing onnx2torch without torchvision when it is absent."""
    try:
        onnx = importlib.import_module("onnx")
    except ImportError as e:
        raise NeuronscopeError(f"loading ONNX files needs the onnx package: {INSTALL}") from e
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"], onnx
    if importlib.util.find_spec("onnx2torch") is None:
        raise NeuronscopeError(f"loading ONNX files needs onnx2torch: {INSTALL}")
    have_tv = "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None
    if have_tv:
        try:
            return importlib.import_module("onnx2torch"), onnx
        except Exception:  # noqa: BLE001 - a torchvision built for another torch fails at import
            for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
                del sys.modules[name]
            for name in [n for n in sys.modules if n == "onnx2torch" or n.startswith("onnx2torch.")]:
                del sys.modules[name]
    tv = _placeholder_torchvision()
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, tv.ops
    try:
        return importlib.import_module("onnx2torch"), onnx
    finally:
        # only onnx2torch's own modules keep the placeholder; nobody else sees a fake torchvision
        if sys.modules.get("torchvision") is tv:
            del sys.modules["torchvision"], sys.modules["torchvision.ops"]


def convert_onnx(path: str | Path):
    """(module, input size or None, classes or None) for the ONNX file at ``path``.

    The module is a torch.fx GraphModule; the size and class count are read
    from the graph's declared input and output shapes when they are fixed.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise NeuronscopeError(f"no ONNX file at {str(p)!r}")
    onnx2torch, onnx = import_onnx2torch()
    try:
        graph = onnx.load(str(p))
    except Exception as e:  # noqa: BLE001 - protobuf decode errors and the like
        raise NeuronscopeError(f"{str(p)!r} is not a readable ONNX file: {type(e).__name__}: {e}") from e
    try:
        module = onnx2torch.convert(graph)
    except NotImplementedError as e:
        raise NeuronscopeError(
            f"onnx2torch cannot convert {p.name}: {e}. Re-export with an older opset "
            "(torch.onnx.export(..., opset_version=17)) or simplify the graph"
        ) from e
    return module, _static_dim(graph.graph.input, -1, 4), _static_dim(graph.graph.output, -1, 2)


def _static_dim(values, axis: int, rank: int) -> int | None:
    """Dimension ``axis`` of the first declared tensor of ``rank`` dims, when it is a number."""
    for v in values:
        dims = v.type.tensor_type.shape.dim
        if len(dims) == rank and dims[axis].HasField("dim_value"):
            return int(dims[axis].dim_value)
    return None
