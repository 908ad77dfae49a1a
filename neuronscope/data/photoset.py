"""Where the offline photo set lives, and reading its manifest.

The set itself is built outside the library (``make photos``, which runs
``scripts/build_photoset.py``); this module only finds and reads a built one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import NeuronscopeError

MANIFEST = "manifest.json"


def default_photoset_dir() -> Path:
    """``$NEURONSCOPE_PHOTOS``, or ``~/.cache/neuronscope/photos``."""
    env = os.environ.get("NEURONSCOPE_PHOTOS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "neuronscope" / "photos"


def read_manifest(root: str | Path) -> list[dict] | None:
    """The manifest entries of a completed set at ``root``, else ``None``."""
    try:
        entries = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "file" in e for e in entries):
        return None
    return entries


def photo_folder(dir: str | Path | None = None) -> Path:
    """The ``images/`` folder of a built set (default :func:`default_photoset_dir`)."""
    root = Path(dir if dir is not None else default_photoset_dir()).expanduser()
    list_photos(root)  # a clear error when the set is not built
    return root / "images"


def list_photos(dir: str | Path | None = None) -> list[dict]:
    """The manifest entries of a built set, each with its absolute ``path`` added."""
    root = Path(dir if dir is not None else default_photoset_dir()).expanduser()
    entries = read_manifest(root)
    if entries is None:
        raise NeuronscopeError(f"no photo set at {root}; build one with `make photos` (scripts/build_photoset.py)")
    return [{**e, "path": str(root / e["file"])} for e in entries]
