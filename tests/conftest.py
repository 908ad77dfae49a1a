"""Shared fixtures: the embedded models and the offline photo set, loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def one_thread():
    """One torch intra-op thread for the test, restored after it.

    Small passes on a shared, loaded machine: two OpenMP threads stall each
    other and run several times slower than one (docs/render-speed.md). A
    module opts in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def lite0():
    from neuronscope import load_model

    return load_model("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    """The offline photo set (built by `make photos`; built here if missing)."""
    from tools.photoset import ensure_photoset

    return Path(ensure_photoset())


@pytest.fixture(scope="session")
def sample_photos(tmp_path_factory) -> dict[str, Path]:
    """scikit-image's sample photographs as PNG files (always available offline)."""
    import numpy as np
    from PIL import Image
    import skimage.data as data

    d = tmp_path_factory.mktemp("samples")
    out = {}
    for name in ("coffee", "chelsea", "astronaut", "rocket"):
        p = d / f"{name}.png"
        Image.fromarray(np.asarray(getattr(data, name)())).save(p)
        out[name] = p
    return out
