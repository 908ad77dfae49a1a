"""Training a generator that inverts a classifier layer (DeePSiM; docs/design.md 5.3).

Pipeline (all resumable, all in one output folder):

1. ``bank.pt``: every training photo is augmented ``augs`` times (random-resized
   crop, scale 0.35-1, aspect 3/4-4/3, horizontal flip). For each view we keep
   the ``image_size`` px target, the code h = E(view at ``spec.size``) and the
   comparator features C(view) of a stride-16 block, computed once.
2. ``dae.pt``: a denoising autoencoder R on the codes (PPGN-h's prior).
3. ``checkpoint.pt``: G (and D in stage 2) with optimizers, step and elapsed
   time, written atomically every ``ckpt_minutes``; a sample sheet (real row vs
   reconstruction row, held-out and training photos) per checkpoint, and the
   generator with the lowest held-out loss so far as ``best_generator.pt``.

Losses, each divided by its target's variance on the bank, weights 1/1/1:
image MSE, comparator feature MSE on ``comparator`` of E, and the code-cycle
MSE ||E(G(h)) - h||^2 that makes R = E o G usable as a PPGN prior. Stage 2
adds a hinge adversarial loss from a projection discriminator on (image, h)
with DiffAugment-style translation and cutout, D paused while L_D < 0.1 L_G,adv.

Photos are split once by a hash of their file name: ``holdout_fraction`` of
them are never used for training and serve the reconstruction check.

What the arithmetic depends on besides the settings, torch's CPU thread count
(sums are split over threads and reordered) and the precision, is recorded in
``config.json`` (``conditions``), every checkpoint and the generator's
metadata. A resume runs with the recorded thread count; asking for another
(``threads=``, ``--threads``) or another precision is refused, so a run is one
computation however often it was stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import NeuronscopeError
from ..images import atomic_write_bytes, atomic_write_json, labelled_grid, list_images, load_image, pil_to_tensor, save_png
from ..taps import tap
from .base import CodeSpec, CodeStats, Generator, pool_code
from .nets import CodeDAE, ConvGenerator, Discriminator, count_parameters


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint)."""

    layer: str = "head.act"
    grid: int = 2
    code_size: int = 128
    image_size: int = 64
    comparator: str = "blocks.10"
    augs: int = 10
    holdout_fraction: float = 0.1
    batch: int = 16
    lr: float = 2e-4
    lr_decay_fraction: float = 0.3  # linear decay to 10 % over this last fraction of the run
    steps: int = 2500
    adv_from: int = 1500  # step where stage 2 (adversarial) starts; >= steps disables it
    adv_weight: float = 0.05
    full_every: int = 1  # feature + code-cycle losses (a classifier pass) every k steps; image loss only between
    dae_steps: int = 1500
    dae_noise: float = 0.5  # noise std as a fraction of each unit's std
    ckpt_minutes: float = 4.0
    hours: float | None = None
    seed: int = 0
    base: int = 256
    widths: tuple[int, ...] = (256, 128, 64, 32, 32)


#: the arithmetic of training (the bank's stored features are float16; every step computes in float32)
PRECISION = "float32"


def run_conditions(threads: int | None = None) -> dict:
    """The conditions a new run records: torch CPU threads (``threads`` or the current count) and precision."""
    return {"threads": int(threads or torch.get_num_threads()), "precision": PRECISION}


def resume_conditions(out: str | os.PathLike, threads: int | None = None, *, option: str = "--threads") -> dict:
    """The conditions a resume of the run in ``out`` must run under: the recorded ones.

    ``threads`` None takes the recorded thread count; another count than the recorded one, or a run
    recorded in another precision, is a :class:`NeuronscopeError` (the resumed steps would compute
    differently from the ones before). A run recorded before conditions were recorded takes the current ones.
    """
    out = Path(out)
    try:
        old = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        old = {}
    rec = old.get("conditions") if isinstance(old, dict) else None
    if not isinstance(rec, dict) or not rec.get("threads"):
        return run_conditions(threads)
    had = int(rec["threads"])
    if threads is not None and int(threads) != had:
        raise NeuronscopeError(
            f"--resume: the run in {out} was trained with {had} torch thread{'s' if had != 1 else ''} and "
            f"{option} {threads} asks for {threads}; steps at another thread count compute differently, so the "
            f"resumed run would not be the run it continues. Leave out {option} (the run's {had} are used), give "
            f"{option} {had}, or start a new run in another --out"
        )
    if rec.get("precision", PRECISION) != PRECISION:
        raise NeuronscopeError(
            f"--resume: the run in {out} was trained in {rec['precision']}, and this version of neuronscope trains in "
            f"{PRECISION}; start a new run in another --out"
        )
    return {"threads": had, "precision": PRECISION}


class _threads:
    """Run with ``n`` torch CPU threads, restoring the count before afterwards."""

    def __init__(self, n: int):
        self.n, self.before = int(n), None

    def __enter__(self):
        if self.n != torch.get_num_threads():
            self.before = torch.get_num_threads()
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.before is not None:
            torch.set_num_threads(self.before)


# ---------------------------------------------------------------- data


def holdout_split(paths: Sequence[Path], fraction: float = 0.1) -> tuple[list[Path], list[Path]]:
    """(train, held-out): a photo is held out when the hash of its file name falls in ``fraction``."""
    train, held = [], []
    for p in paths:
        v = int(hashlib.sha1(Path(p).name.encode()).hexdigest()[:8], 16) / 2**32
        (held if v < fraction else train).append(Path(p))
    return train, held


def manifest_hash(paths: Sequence[Path]) -> tuple[str, list[str]]:
    """A hash over (file name, size, content hash) of the training photos, and their names."""
    h = hashlib.sha256()
    names = []
    for p in sorted(paths, key=lambda q: Path(q).name):
        data = Path(p).read_bytes()
        h.update(Path(p).name.encode() + b"\0" + hashlib.sha256(data).digest())
        names.append(Path(p).name)
    return h.hexdigest(), names


def random_resized_crop(img: Image.Image, rng: random.Random, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3)) -> Image.Image:
    """A random crop covering ``scale`` of the area with aspect in ``ratio``, flipped half the time."""
    W, H = img.size
    area = W * H
    for _ in range(10):
        a = area * rng.uniform(*scale)
        r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(a * r))), int(round(math.sqrt(a / r)))
        if 0 < w <= W and 0 < h <= H:
            x0, y0 = rng.randint(0, W - w), rng.randint(0, H - h)
            break
    else:
        s = min(W, H)
        w = h = s
        x0, y0 = (W - s) // 2, (H - s) // 2
    crop = img.crop((x0, y0, x0 + w, y0 + h))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return crop


def center_view(img: Image.Image) -> Image.Image:
    """The central square crop (evaluation view)."""
    W, H = img.size
    s = min(W, H)
    return img.crop(((W - s) // 2, (H - s) // 2, (W - s) // 2 + s, (H - s) // 2 + s))


def views_to_tensors(views: Sequence[Image.Image], size: int) -> torch.Tensor:
    return torch.stack([pil_to_tensor(v.resize((size, size), Image.BICUBIC)) for v in views]).clamp(0, 1)


@torch.no_grad()
def code_and_features(model, x_code: torch.Tensor, spec: CodeSpec, comparator: str | None):
    """h and comparator features for [0,1] images already at the code resolution."""
    layers = [spec.layer] + ([comparator] if comparator else [])
    with tap(model, layers, stop_early=True) as taps:
        taps.run(x_code.to(model.device))
        h = pool_code(taps[spec.layer], spec.grid)
        f = taps[comparator] if comparator else None
    return h, f


def build_bank(model, paths: Sequence[Path], spec: CodeSpec, cfg: TrainConfig, *, progress: bool = True) -> dict:
    """Augmented views of the photos with their codes and comparator features (see module doc)."""
    from tqdm.auto import tqdm

    rng = random.Random(cfg.seed)
    xs, hs, fs = [], [], []
    chunk: list[Image.Image] = []

    def flush():
        if not chunk:
            return
        x_code = views_to_tensors(chunk, spec.size)
        h, f = code_and_features(model, x_code, spec, cfg.comparator)
        xs.append((views_to_tensors(chunk, cfg.image_size) * 255).round().to(torch.uint8))
        hs.append(h.float().cpu())
        fs.append(f.half().cpu())
        chunk.clear()

    bar = tqdm(paths, desc="bank", disable=not progress, unit="photo")
    for p in bar:
        try:
            img = load_image(p)
        except NeuronscopeError as e:
            print(f"skipping {p}: {e}", file=sys.stderr)
            continue
        for _ in range(cfg.augs):
            chunk.append(random_resized_crop(img, rng))
        if len(chunk) >= 32:
            flush()
    flush()
    if not xs:
        raise NeuronscopeError("no readable training images")
    bank = {"x": torch.cat(xs), "h": torch.cat(hs), "f": torch.cat(fs)}
    bank["var_x"] = float(bank["x"].float().div(255).var())
    bank["var_h"] = float(bank["h"].var())
    bank["var_f"] = float(bank["f"].float().var())
    bank["mean_image"] = bank["x"].float().div(255).mean(0)
    return bank


def heldout_tensors(model, paths: Sequence[Path], spec: CodeSpec, image_size: int) -> dict:
    """Centre views of held-out photos: targets at ``image_size`` and their codes."""
    views = [center_view(load_image(p)) for p in paths]
    x_code = views_to_tensors(views, spec.size)
    h, _ = code_and_features(model, x_code, spec, None)
    return {"x": views_to_tensors(views, image_size), "h": h.float().cpu(), "x_code": x_code, "names": [Path(p).name for p in paths]}


# ---------------------------------------------------------------- DAE


def train_dae(codes: torch.Tensor, stats: CodeStats, spec: CodeSpec, cfg: TrainConfig, *, progress: bool = True) -> CodeDAE:
    """R: noisy code -> clean code, Gaussian noise of ``dae_noise`` x per-unit std."""
    from tqdm.auto import tqdm

    C = codes.shape[1] // max(1, spec.grid) ** 2
    dae = CodeDAE(C, spec.grid)
    opt = torch.optim.Adam(dae.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    std = stats.std.clamp(min=1e-4)
    for _ in tqdm(range(cfg.dae_steps), desc="code DAE", disable=not progress):
        idx = torch.randint(0, len(codes), (64,), generator=g)
        h = codes[idx]
        noisy = h + cfg.dae_noise * std * torch.randn(h.shape, generator=g)
        loss = F.mse_loss(dae(noisy), h)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dae.eval()
    return dae


# ---------------------------------------------------------------- training


def diff_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """DiffAugment-style translation (1/8 of the size, zero fill) and cutout (1/2 size) per row."""
    B, _, H, W = x.shape
    sh, sw = H // 8, W // 8
    tx = torch.randint(-sw, sw + 1, (B,), generator=gen)
    ty = torch.randint(-sh, sh + 1, (B,), generator=gen)
    pad = F.pad(x, (sw, sw, sh, sh))
    rows = []
    for i in range(B):
        y0, x0 = sh + int(ty[i]), sw + int(tx[i])
        rows.append(pad[i, :, y0 : y0 + H, x0 : x0 + W])
    x = torch.stack(rows)
    ch, cw = H // 2, W // 2
    cy = torch.randint(0, H - ch + 1, (B,), generator=gen)
    cx = torch.randint(0, W - cw + 1, (B,), generator=gen)
    mask = torch.ones(B, 1, H, W)
    for i in range(B):
        mask[i, :, int(cy[i]) : int(cy[i]) + ch, int(cx[i]) : int(cx[i]) + cw] = 0
    return x * mask.to(x.device)


class Trainer:
    """One resumable training run in ``out`` (see module doc)."""

    def __init__(self, model, image_paths: Sequence[Path], out: Path, cfg: TrainConfig, *, device=None, progress: bool = True,
                 command: str | None = None, conditions: dict | None = None):
        self.model, self.out, self.cfg, self.progress = model, Path(out), cfg, progress
        self.conditions = conditions or run_conditions()
        self.device = model.device
        self.spec = CodeSpec(model=model.name, layer=cfg.layer, grid=cfg.grid, size=cfg.code_size)
        self.command = command or " ".join(shlex.quote(a) for a in sys.argv)
        paths = sorted(Path(p) for p in image_paths)
        self.train_paths, self.held_paths = holdout_split(paths, cfg.holdout_fraction)
        if len(self.train_paths) < 4:
            raise NeuronscopeError(f"need at least 4 training images, found {len(self.train_paths)} (of {len(paths)})")
        if not self.held_paths:
            self.held_paths = self.train_paths[-1:]
        self.log_path = self.out / "log.jsonl"

    # ------------------------------------------------------------ setup

    def _load_or_build_bank(self) -> dict:
        p = self.out / "bank.pt"
        if p.exists():
            return torch.load(p, weights_only=False)
        t0 = time.time()
        bank = build_bank(self.model, self.train_paths, self.spec, self.cfg, progress=self.progress)
        digest, names = manifest_hash(self.train_paths)
        bank["manifest"] = {"sha256": digest, "train": names, "heldout": [q.name for q in self.held_paths]}
        bank["seconds"] = time.time() - t0
        buf = io.BytesIO()
        torch.save(bank, buf)
        atomic_write_bytes(p, buf.getvalue())
        return bank

    def setup(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.bank = self._load_or_build_bank()
        self.stats = CodeStats.from_codes(self.bank["h"])
        self.held = heldout_tensors(self.model, self.held_paths, self.spec, self.cfg.image_size)
        dae_path = self.out / "dae.pt"
        if dae_path.exists():
            blob = torch.load(dae_path, weights_only=False)
            self.dae = CodeDAE(**blob["config"])
            self.dae.load_state_dict(blob["state"])
        else:
            self.dae = train_dae(self.bank["h"], self.stats, self.spec, self.cfg, progress=self.progress)
            buf = io.BytesIO()
            torch.save({"config": self.dae.config, "state": self.dae.state_dict()}, buf)
            atomic_write_bytes(dae_path, buf.getvalue())
        C = self.bank["h"].shape[1] // max(1, self.cfg.grid) ** 2
        torch.manual_seed(self.cfg.seed)
        self.G = ConvGenerator(C, self.cfg.grid, self.cfg.image_size, self.cfg.base, tuple(self.cfg.widths)).to(self.device)
        self.D = Discriminator(self.bank["h"].shape[1], self.cfg.image_size).to(self.device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.cfg.lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.cfg.lr, betas=(0.5, 0.999))
        self.step, self.elapsed, self.best = 0, 0.0, float("inf")
        self.gen = torch.Generator().manual_seed(self.cfg.seed + 2)
        ck = self.out / "checkpoint.pt"
        if ck.exists():
            blob = torch.load(ck, weights_only=False)
            self.G.load_state_dict(blob["G"])
            self.D.load_state_dict(blob["D"])
            self.opt_g.load_state_dict(blob["opt_g"])
            self.opt_d.load_state_dict(blob["opt_d"])
            self.step, self.elapsed, self.best = blob["step"], blob["elapsed"], blob["best"]
            self.gen.set_state(blob["gen_state"])
            for opt in (self.opt_g, self.opt_d):  # the current --lr wins over the saved one
                for group in opt.param_groups:
                    group["lr"] = self.cfg.lr
            self._log({"event": "resumed", "step": self.step, "elapsed": self.elapsed})

    # ------------------------------------------------------------ one step

    def _losses(self, x: torch.Tensor, h: torch.Tensor, f: torch.Tensor):
        y = (self.G(h) + 1) / 2
        up = F.interpolate(y, size=(self.spec.size, self.spec.size), mode="bilinear", align_corners=False)
        with tap(self.model, [self.spec.layer, self.cfg.comparator], stop_early=True) as taps:
            taps.run(up)
            h2 = pool_code(taps[self.spec.layer], self.spec.grid)
            f2 = taps[self.cfg.comparator]
        l_img = F.mse_loss(y, x) / self.bank["var_x"]
        l_feat = F.mse_loss(f2, f) / self.bank["var_f"]
        l_cyc = F.mse_loss(h2, h) / self.bank["var_h"]
        return y, l_img, l_feat, l_cyc

    def progress_fraction(self) -> float:
        """How far the run is: the larger of steps done / steps and time used / --hours."""
        frac = self.step / max(1, self.cfg.steps)
        if self.cfg.hours:
            frac = max(frac, self.elapsed / (self.cfg.hours * 3600))
        return min(1.0, frac)

    def learning_rate(self) -> float:
        """Constant, then linear decay to 10 % over the last ``lr_decay_fraction`` of the run."""
        f, d = self.progress_fraction(), self.cfg.lr_decay_fraction
        if d <= 0 or f < 1 - d:
            return self.cfg.lr
        return self.cfg.lr * (1 - 0.9 * (f - (1 - d)) / d)

    def train_step(self) -> dict:
        cfg, bank = self.cfg, self.bank
        lr = self.learning_rate()
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        idx = torch.randint(0, len(bank["h"]), (cfg.batch,), generator=self.gen)
        x = bank["x"][idx].float().div(255).to(self.device)
        h = bank["h"][idx].to(self.device)
        f = bank["f"][idx].float().to(self.device)
        self.G.train()
        if self.step % max(1, cfg.full_every) == 0:
            y, l_img, l_feat, l_cyc = self._losses(x, h, f)
            loss = l_img + l_feat + l_cyc
            rec = {"step": self.step, "img": l_img.item(), "feat": l_feat.item(), "cyc": l_cyc.item(), "lr": lr}
        else:  # a cheap step: the generator alone, image loss only
            y = (self.G(h) + 1) / 2
            loss = F.mse_loss(y, x) / bank["var_x"]
            rec = {"step": self.step, "img": loss.item()}
        adv = self.step >= cfg.adv_from
        if adv:
            d_fake = self.D(diff_augment(y, self.gen), h)
            l_gadv = -d_fake.mean()
            loss = loss + cfg.adv_weight * l_gadv
            rec["g_adv"] = l_gadv.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        if adv:
            d_real = self.D(diff_augment(x, self.gen), h)
            d_fake = self.D(diff_augment(y.detach(), self.gen), h)
            l_d = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
            rec["d"] = l_d.item()
            paused = rec["g_adv"] > 0 and rec["d"] < 0.1 * rec["g_adv"]
            if not paused:
                self.opt_d.zero_grad(set_to_none=True)
                l_d.backward()
                self.opt_d.step()
            rec["d_paused"] = paused
        return rec

    # ------------------------------------------------------------ evaluation and checkpoints

    @torch.no_grad()
    def heldout_loss(self) -> dict:
        self.G.eval()
        y = (self.G(self.held["h"].to(self.device)) + 1) / 2
        x = self.held["x"].to(self.device)
        mse = float(F.mse_loss(y, x))
        mean_mse = float(F.mse_loss(self.bank["mean_image"].to(self.device).expand_as(x), x))
        return {"heldout_mse": mse, "mean_image_mse": mean_mse}

    @torch.no_grad()
    def sample_sheet(self, path: Path) -> None:
        self.G.eval()
        n_h = min(8, len(self.held["h"]))
        xs = [self.held["x"][:n_h]]
        hs = [self.held["h"][:n_h]]
        idx = torch.arange(0, len(self.bank["h"]), max(1, len(self.bank["h"]) // 8))[:8]
        xs.append(self.bank["x"][idx].float().div(255))
        hs.append(self.bank["h"][idx])
        x = torch.cat(xs)
        y = (self.G(torch.cat(hs).to(self.device)).cpu() + 1) / 2
        caps = [f"held {i}" for i in range(n_h)] + [f"train {i}" for i in range(len(idx))]
        n = len(x)
        sheet = labelled_grid(list(x) + list(y), caps + ["recon"] * n, columns=n, cell=64, caption_lines=1)
        save_png(sheet, path)

    def generator(self) -> Generator:
        G = ConvGenerator(**self.G.config)
        G.load_state_dict(self.G.state_dict())
        meta = {
            "image_size": self.cfg.image_size,
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.cfg).items()},
            "step": self.step,
            "train_seconds": round(self.elapsed, 1),
            "command": self.command,
            "manifest_sha256": self.bank.get("manifest", {}).get("sha256"),
            "n_train_photos": len(self.train_paths),
            "n_bank": int(len(self.bank["h"])),
            "conditions": self.conditions,
        }
        dae = CodeDAE(**self.dae.config)
        dae.load_state_dict(self.dae.state_dict())
        return Generator(G, self.spec, self.stats, output_range=(-1, 1), dae=dae, meta=meta)

    def checkpoint(self) -> dict:
        ev = self.heldout_loss()
        ev.update(step=self.step, elapsed=round(self.elapsed, 1))
        if ev["heldout_mse"] < self.best:
            self.best = ev["heldout_mse"]
            self.generator().save(self.out / "best_generator.pt")
            ev["best"] = True
        (self.out / "samples").mkdir(exist_ok=True)
        self.sample_sheet(self.out / "samples" / f"step_{self.step:06d}.png")
        blob = {
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "step": self.step, "elapsed": self.elapsed, "best": self.best,
            "gen_state": self.gen.get_state(), "config": asdict(self.cfg), "conditions": self.conditions,
        }
        buf = io.BytesIO()
        torch.save(blob, buf)
        atomic_write_bytes(self.out / "checkpoint.pt", buf.getvalue())
        self._log({"event": "checkpoint", **ev})
        return ev

    def _log(self, rec: dict) -> None:
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")

    # ------------------------------------------------------------ loop

    def run(self) -> Generator:
        from tqdm.auto import tqdm

        self.setup()
        cfg = self.cfg
        budget = cfg.hours * 3600 if cfg.hours else float("inf")
        bar = tqdm(total=cfg.steps, initial=self.step, desc="generator", disable=not self.progress, unit="step")
        last_ck = time.time()
        ema: dict[str, float] = {}
        while self.step < cfg.steps and self.elapsed < budget:
            t0 = time.time()
            rec = self.train_step()
            self.step += 1
            self.elapsed += time.time() - t0
            for k in ("img", "feat", "cyc"):
                if k in rec:
                    ema[k] = rec[k] if k not in ema else 0.95 * ema[k] + 0.05 * rec[k]
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()})
            if "feat" in rec and rec["step"] % 25 < max(1, cfg.full_every):
                self._log({**rec, "elapsed": round(self.elapsed, 1)})
            if time.time() - last_ck > cfg.ckpt_minutes * 60:
                self.checkpoint()
                last_ck = time.time()
        bar.close()
        self.checkpoint()
        g = self.generator()
        g.save(self.out / "generator.pt")
        return g


def train_generator(model, images, out, cfg: TrainConfig | None = None, *, progress: bool = True, resume: bool = True,
                    command: str | None = None, threads: int | None = None) -> Generator:
    """Train (or resume) a generator for ``model`` from a folder or list of photos into ``out``.

    Returns the final generator; ``out/best_generator.pt`` holds the one with the
    lowest held-out reconstruction MSE. ``threads``: torch CPU threads for the run
    (default: the current count for a new run, the recorded count for a resume,
    which refuses any other; see the module doc). The caller's count is restored after.
    """
    from ..images import prepare_output_dir

    cfg = cfg or TrainConfig()
    if cfg.image_size not in (32, 64, 128):
        raise NeuronscopeError(f"image size must be 32, 64 or 128 px, got {cfg.image_size}")
    paths = list_images(images) if isinstance(images, (str, Path)) else [Path(p) for p in images]
    if not paths:
        raise NeuronscopeError(f"no images found in {images}")
    out = Path(out)
    resuming = (out / "checkpoint.pt").exists() or (out / "bank.pt").exists()
    if resuming and not resume:
        raise NeuronscopeError(f"{out} holds a training run; pass --resume to continue it or choose another --out")
    conditions = resume_conditions(out, threads) if resuming else run_conditions(threads)
    if not resuming:
        prepare_output_dir(out)
    else:
        old = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else None
        if old and (old["layer"], old["grid"], old["image_size"]) != (cfg.layer, cfg.grid, cfg.image_size):
            raise NeuronscopeError(
                f"{out} was trained with layer {old['layer']} grid {old['grid']} size {old['image_size']}; "
                "resume with the same settings or choose another --out"
            )
    atomic_write_json(out / "config.json", {**{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
                                            "conditions": conditions})
    with _threads(conditions["threads"]):
        return Trainer(model, paths, out, cfg, progress=progress, command=command, conditions=conditions).run()
