"""A small noise-conditional denoiser D(x, sigma) for [0, 1] RGB images.

The network estimates the noise and subtracts it (residual learning). It works
at half resolution on the 2x2 pixel-unshuffled image plus a constant noise-level
plane, as FFDNet does: four times fewer positions for the convolutions, while
every input pixel still reaches the output. ``R(x) = D(x, sigma)`` is PPGN-x's
learned prior; ``D(x) - x`` points up the log density of natural images
smoothed at ``sigma`` (Alain & Bengio 2014).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NeuronscopeError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED = "denoiser.pt"


@dataclass(frozen=True)
class DenoiserConfig:
    width: int = 48  # channels of the hidden convolutions
    depth: int = 8  # 3x3 convolutions in all, first and last included
    sigma_max: float = 0.3  # the largest noise level it was trained for (std on [0, 1] pixels)


class Denoiser(nn.Module):
    """``forward(x, sigma)``: x (B, 3, H, W) in [0, 1], sigma a float or (B,) tensor -> denoised x.

    Odd sizes are reflect-padded to even and cropped back.
    """

    def __init__(self, config: DenoiserConfig = DenoiserConfig()):
        super().__init__()
        self.config = config
        w = config.width
        layers: list[nn.Module] = [nn.Conv2d(12 + 1, w, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(config.depth - 2):
            layers += [nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(w, 12, 3, padding=1))
        self.body = nn.Sequential(*layers)
        # He initialization keeps the signal's scale through the ReLU stack (PyTorch's default shrinks it
        # layer by layer and training crawled); the last layer starts at zero: D starts as the identity
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.body[-1].weight)

    def noise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The estimated noise of x at level sigma (same shape as x)."""
        b, _, h, w = x.shape
        ph, pw = h % 2, w % 2
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        z = F.pixel_unshuffle(x - 0.5, 2)
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        plane = (s / self.config.sigma_max).expand(b, 1, *z.shape[-2:])
        n = F.pixel_shuffle(self.body(torch.cat([z, plane], 1)), 2)
        return n[..., :h, :w]

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        return x - self.noise(x, sigma)


def shipped_denoiser_path() -> Path:
    return WEIGHTS_DIR / SHIPPED


def save_denoiser(model: Denoiser, path: str | Path, meta: dict) -> None:
    """Weights (float32) + config + provenance, atomically."""
    from ..images import atomic_write_bytes
    import io

    buf = io.BytesIO()
    torch.save({"config": asdict(model.config), "state_dict": model.state_dict(), "meta": meta}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_denoiser(path: str | Path | None = None, device: str | torch.device = "cpu") -> Denoiser:
    """A trained denoiser from ``path`` (default: the one shipped with neuronscope), eval and frozen.

    Every call returns a new module; a file is read once while it stays unchanged."""
    p = Path(path) if path is not None else shipped_denoiser_path()
    if not p.is_file():
        if path is None:
            raise NeuronscopeError(f"the shipped denoiser weights are missing ({p}); reinstall neuronscope")
        raise NeuronscopeError(f"denoiser weights not found: {p}; train one with `neuronscope train-prior "
                               "--images DIR --out RUN` and pass RUN/denoiser.pt")
    st = p.stat()
    return copy.deepcopy(_load(str(p.resolve()), st.st_mtime_ns, st.st_size)).to(device)


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int) -> Denoiser:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = Denoiser(DenoiserConfig(**blob["config"]))
        model.load_state_dict(blob["state_dict"])
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's problem to know about
        raise NeuronscopeError(f"{path} is not a neuronscope denoiser file ({type(e).__name__}: {e})") from e
    model.meta = blob.get("meta", {})
    return model.eval().requires_grad_(False)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
