"""Load torch-lucent 0.1.8 for the benchmark only, without installing it (or torchvision) into the environment.

``load_lucent()`` pip-installs, once, with ``--no-deps`` into a private folder
(``~/.cache/neuronscope/bench/lucent`` by default):

* ``torch-lucent==0.1.8`` itself;
* ``kornia==0.5.11``: Lucent's jitter and rotation call ``kornia.geometry.transform.translate``,
  ``kornia.get_rotation_matrix2d`` and ``kornia.warp_affine``; 0.5.11 is the last
  release from Lucent's time that still exposes the last two at the top level (newer
  ones also break Lucent's string comparison ``kornia.__version__ < '0.4.0'``);
* ``decorator==5.1.1`` (Lucent's objective decorator).

Two imports are replaced by minimal stand-ins registered in ``sys.modules``:

* ``torchvision.transforms.Normalize``: only used by Lucent's ImageNet
  normalization, which the benchmark turns off (``preprocess=False``, because
  neuronscope's model applies its own preprocessing); the stand-in still
  normalizes correctly. torchvision is never installed.
* ``IPython.display``: Lucent's notebook display helper, never called here.

Nothing here is imported by neuronscope itself.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

PACKAGES = ["torch-lucent==0.1.8", "kornia==0.5.11", "decorator==5.1.1"]
DEFAULT_DIR = Path(os.environ.get("NEURONSCOPE_BENCH_CACHE", Path.home() / ".cache" / "neuronscope" / "bench")) / "lucent"


def _installed(target: Path) -> bool:
    return all((target / name).exists() for name in ("lucent", "kornia", "decorator.py"))


def install(target: Path = DEFAULT_DIR) -> Path:
    """Install Lucent and its two pure-Python dependencies into ``target`` (once)."""
    if not _installed(target):
        target.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), *PACKAGES]
        print("installing for the benchmark only:", " ".join(PACKAGES), "->", target, flush=True)
        subprocess.run(cmd, check=True)
    return target


def _fake_torchvision() -> None:
    if "torchvision" in sys.modules:
        return
    import torch

    class Normalize:
        """(x - mean) / std per channel of one (C, H, W) image, like torchvision's."""

        def __init__(self, mean, std):
            self.mean = torch.tensor(mean).view(-1, 1, 1)
            self.std = torch.tensor(std).view(-1, 1, 1)

        def __call__(self, x):
            return (x - self.mean.to(x)) / self.std.to(x)

    tv = types.ModuleType("torchvision")
    tv.__doc__ = "stand-in for the benchmark: only transforms.Normalize"
    tr = types.ModuleType("torchvision.transforms")
    tr.Normalize = Normalize
    models = types.ModuleType("torchvision.models")  # lucent.modelzoo star-imports it
    tv.transforms, tv.models = tr, models
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tr, "torchvision.models": models})


def _fake_ipython() -> None:
    if "IPython" in sys.modules:
        return
    ip = types.ModuleType("IPython")
    disp = types.ModuleType("IPython.display")

    def display(*args, **kwargs):  # pragma: no cover - never called by the benchmark
        raise RuntimeError("IPython display is not available in the benchmark")

    disp.display, disp.HTML = display, str
    ip.display = disp
    sys.modules.update({"IPython": ip, "IPython.display": disp})


def load_lucent(target: Path = DEFAULT_DIR) -> types.SimpleNamespace:
    """Lucent's ``render``, ``param``, ``objectives`` and ``transform`` modules, ready to use."""
    import warnings

    path = str(install(Path(target)))
    if path not in sys.path:
        sys.path.insert(0, path)
    _fake_torchvision()
    _fake_ipython()
    with warnings.catch_warnings():
        # kornia 0.5 forces DeprecationWarnings to 'always' and triggers torch.jit.script's
        # deprecation notice dozens of times on import: silence them for the import only.
        warnings.simplefilter("ignore")
        warnings.showwarning = lambda *args, **kwargs: None
        render = importlib.import_module("lucent.optvis.render")
        param = importlib.import_module("lucent.optvis.param")
        objectives = importlib.import_module("lucent.optvis.objectives")
        transform = importlib.import_module("lucent.optvis.transform")
    import kornia
    import lucent

    return types.SimpleNamespace(render=render, param=param, objectives=objectives, transform=transform,
                                 version=lucent.__version__, kornia_version=kornia.__version__)


if __name__ == "__main__":
    lu = load_lucent()
    print("lucent", lu.version, "kornia", lu.kornia_version)
