"""Training the denoising prior on a folder of real photos: resumable, with atomic checkpoints.

Data: every photo under the given folders, 1 in 10 held out by a hash of its file
name (the same rule everywhere, so a test can score held-out photos). Each photo is
kept at several scales (1, 1/1.5, 1/2, 1/3 of its size, antialiased), so fine
detail is learned at the scales a rendered object shows it. A step draws
``batch`` random ``patch`` px crops (random flips and 90-degree turns), adds
Gaussian noise of a level drawn uniformly in [0, sigma_max] per patch, and
minimizes the mean squared error of the denoised crop. Adam with a clipped gradient norm, cosine
learning rate.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import NeuronscopeError
from ..images import atomic_write_bytes, atomic_write_json, list_images, load_image
from .denoiser import Denoiser, DenoiserConfig, file_sha256, save_denoiser

SCALES = (1.0, 1 / 1.5, 1 / 2, 1 / 3)
CHECKPOINT = "checkpoint.pt"
WEIGHTS = "denoiser.pt"
CLIP = 0.5  # gradient-norm clip: at lr 1e-3 without it the 8-layer net oscillated and stopped learning


@dataclass(frozen=True)
class PriorTrainConfig:
    steps: int = 6000
    batch: int = 32
    patch: int = 64
    lr: float = 5e-4
    width: int = 64
    depth: int = 8
    sigma_max: float = 0.3
    seed: int = 0
    ckpt_minutes: float = 3.0


def is_held_out(name: str) -> bool:
    """1 in 10 photos, by a hash of the file name: never trained on."""
    return hashlib.sha256(Path(name).name.encode()).digest()[0] % 10 == 0


def collect_photos(folders) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        files += list_images(folder)
    files = sorted(set(files), key=lambda p: (p.name, str(p)))
    if not files:
        raise NeuronscopeError(f"no images found under {', '.join(map(str, folders))}")
    return files


def data_fingerprint(files) -> str:
    """sha256 over (file name, file sha256) of every photo, in order."""
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).name.encode() + b"\0" + file_sha256(f).encode() + b"\n")
    return h.hexdigest()


class PatchBank:
    """The training photos at several scales, as uint8 arrays; draws random augmented patches."""

    def __init__(self, files, patch: int, progress: bool = True):
        from PIL import Image

        self.images: list[np.ndarray] = []
        it = files
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(files, desc="loading photos", unit="photo", leave=False)
        for f in it:
            img = load_image(f)
            for s in SCALES:
                w, h = round(img.width * s), round(img.height * s)
                if min(w, h) < patch:
                    continue
                im = img if s == 1.0 else img.resize((w, h), Image.LANCZOS)
                self.images.append(np.asarray(im, dtype=np.uint8))
        if not self.images:
            raise NeuronscopeError(f"no photo is at least {patch} px on its shorter side")
        areas = np.array([a.shape[0] * a.shape[1] for a in self.images], dtype=np.float64)
        self.p = areas / areas.sum()  # every pixel equally likely
        self.patch = patch

    def sample(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        k = self.patch
        out = np.empty((n, k, k, 3), dtype=np.uint8)
        for i, j in enumerate(rng.choice(len(self.images), size=n, p=self.p)):
            a = self.images[j]
            y = rng.integers(0, a.shape[0] - k + 1)
            x = rng.integers(0, a.shape[1] - k + 1)
            c = a[y:y + k, x:x + k]
            if rng.random() < 0.5:
                c = c[:, ::-1]
            out[i] = np.rot90(c, rng.integers(0, 4))
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row PSNR in dB of [0, 1] images."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1.0 / mse)


def _lr(cfg: PriorTrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / 100)
    return cfg.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps)))


def train_prior(folders, out, cfg: PriorTrainConfig = PriorTrainConfig(), *, resume: bool = False,
                hours: float | None = None, progress: bool = True) -> Path:
    """Train (or resume) a denoiser in folder ``out``; returns the path of the final weights."""
    out = Path(out)
    ckpt_path = out / CHECKPOINT
    if resume and not ckpt_path.is_file():
        raise NeuronscopeError(f"--resume: no checkpoint in {out} ({CHECKPOINT} not found)")
    if not resume and ckpt_path.exists():
        raise NeuronscopeError(f"{out} already holds a training run; pass --resume to continue it, "
                               "or choose another --out")
    files = collect_photos(folders)
    train_files = [f for f in files if not is_held_out(f.name)]
    fingerprint = data_fingerprint(files)
    model = Denoiser(DenoiserConfig(width=cfg.width, depth=cfg.depth, sigma_max=cfg.sigma_max))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    step, seconds, log = 0, 0.0, []
    if resume:
        blob = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if blob["data"] != fingerprint:
            raise NeuronscopeError(f"--resume: the photos differ from the run's (data hash {blob['data'][:12]} "
                                   f"vs {fingerprint[:12]} now); resume with the same folders")
        if blob["config"] != asdict(cfg):
            raise NeuronscopeError(f"--resume: settings differ from the run's ({blob['config']}); "
                                   "resume with the same settings")
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["opt"])
        rng.bit_generator.state = blob["rng"]
        torch.set_rng_state(blob["torch_rng"])
        step, seconds, log = blob["step"], blob["seconds"], blob["log"]
    out.mkdir(parents=True, exist_ok=True)
    bank = PatchBank(train_files, cfg.patch, progress=progress)

    def meta() -> dict:
        return {"step": step, "seconds": round(seconds, 1), "config": asdict(cfg), "data_sha256": fingerprint,
                "photos": len(files), "held_out": len(files) - len(train_files),
                "folders": [str(f) for f in folders], "log_tail": log[-5:]}

    def checkpoint():
        buf = io.BytesIO()
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "step": step, "seconds": seconds, "log": log,
                    "data": fingerprint, "config": asdict(cfg)}, buf)
        atomic_write_bytes(ckpt_path, buf.getvalue())
        save_denoiser(model, out / WEIGHTS, meta())
        atomic_write_json(out / "log.json", log)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="train-prior", unit="step", dynamic_ncols=True)
    last_ckpt = time.monotonic()
    running = None
    model.train()
    try:
        while step < cfg.steps and (hours is None or seconds < hours * 3600):
            t0 = time.perf_counter()
            clean = bank.sample(cfg.batch, rng)
            sigma = torch.from_numpy(rng.uniform(0, cfg.sigma_max, cfg.batch)).float()
            noisy = clean + sigma.view(-1, 1, 1, 1) * torch.randn_like(clean)
            for g in opt.param_groups:
                g["lr"] = _lr(cfg, step)
            loss = (model(noisy, sigma) - clean).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
            step += 1
            seconds += time.perf_counter() - t0
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            if step % 50 == 0:
                log.append({"step": step, "loss": round(running, 6), "seconds": round(seconds, 1)})
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"mse {running:.2e}", refresh=False)
            if time.monotonic() - last_ckpt > cfg.ckpt_minutes * 60:
                checkpoint()
                last_ckpt = time.monotonic()
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    checkpoint()
    return out / WEIGHTS
