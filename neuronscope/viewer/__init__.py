"""The live toolbox in the browser (``neuronscope serve``): see docs/viewer.md.

``create_app(model)`` (in :mod:`.server`, needs FastAPI) builds the ASGI app;
:mod:`.frames` and :mod:`.compute` hold the per-frame work and need only torch
and Pillow; :mod:`.protocol` is the WebSocket message format.
"""

from __future__ import annotations


def __getattr__(name: str):
    if name == "create_app":  # imported on use: FastAPI is an optional dependency
        from .server import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["create_app"]
