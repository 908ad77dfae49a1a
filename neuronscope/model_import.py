"""Your own model by name: ``package.module:factory``, ``./file.py:factory``, ``path/to/file.py:factory``.

The factory is a callable returning an ``nn.Module`` (or a neuronscope
``Model``), or an ``nn.Module`` instance itself. A module name is looked up
with the working directory first on the import path (as ``python script.py``
would), so a local ``mymodels.py`` works without ``PYTHONPATH=.``; a path to a
``.py`` file is loaded from that file.

The preprocessing must be declared, never assumed: ``load_model(...,
preprocess=...)`` / ``--preprocess`` (``imagenet``, ``minus_one_one``,
``none``), a ``preprocess`` attribute on the factory or the module, or a
``Model`` returned by the factory. Otherwise a :class:`NeuronscopeError` asks
for it. ``input_size`` and ``labels`` may likewise be given or set as attributes.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Callable

from torch import nn

from .errors import NeuronscopeError

PREPROCESS_HELP = "imagenet, minus_one_one or none (or an nn.Module / callable on [0, 1] batches from Python)"


def is_factory_spec(text: str) -> bool:
    """Whether a model name is a ``module:factory`` or ``file.py:factory`` reference."""
    head, sep, attr = text.rpartition(":")
    return bool(sep and head and attr) and not head.startswith(("torchvision", "timm"))


def _import_module(where: str):
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = Path(where).expanduser()
        if not path.is_file():
            raise NeuronscopeError(f"model file {where} not found (working directory: {Path.cwd()})")
        name = f"neuronscope_user_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        if str(path.resolve().parent) not in sys.path:  # the file may import its neighbours
            sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(name, None)
            raise NeuronscopeError(f"importing {where} failed: {type(e).__name__}: {e}") from e
        return module
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(where)
    except ImportError as e:
        raise NeuronscopeError(
            f"cannot import module {where!r} ({e}); give a module on the import path or in the working directory "
            f"({cwd}), or a file: ./file.py:factory"
        ) from None


def import_factory(spec: str, *, preprocess: str | nn.Module | Callable | None = None, input_size: int | None = None,
                   labels: list[str] | None = None, output=None):
    """The ``Model`` named by ``spec`` (see the module doc)."""
    from .models.adapter import Model, ModelInfo

    where, _, attr = spec.rpartition(":")
    module = _import_module(where)
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise NeuronscopeError(f"{where} has no {attr!r}; callables in it: {', '.join(public[:12]) or 'none'}")
    obj = getattr(module, attr)
    try:
        built = obj() if callable(obj) and not isinstance(obj, nn.Module) else obj
    except Exception as e:
        raise NeuronscopeError(f"calling the model factory {spec!r} failed: {type(e).__name__}: {e}") from e
    if isinstance(built, Model):
        return built
    if not isinstance(built, nn.Module):
        raise NeuronscopeError(f"{spec!r} gave a {type(built).__name__}, not an nn.Module or a neuronscope Model")
    pre = preprocess or getattr(obj, "preprocess", None) or getattr(built, "preprocess", None)
    if pre is None:
        raise NeuronscopeError(
            f"the model from {spec!r} does not declare its preprocessing; give --preprocess "
            f"({PREPROCESS_HELP}), load_model(..., preprocess=...), or set a `preprocess` attribute on the factory"
        )
    size = input_size or getattr(built, "input_size", None) or getattr(obj, "input_size", None) or 224
    names = labels or getattr(built, "labels", None) or getattr(obj, "labels", None)
    return Model(built, pre, ModelInfo(name=spec, input_size=int(size), labels=list(names) if names else None),
                 output=output)
