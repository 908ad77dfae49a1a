"""BigGAN (``pytorch-pretrained-biggan``, the optional ``biggan`` extra) as a neuronscope generator.

BigGAN-deep draws an image from a noise vector z and a class embedding e = W y
(W: the ``embeddings`` layer, y one-hot); its generator sees the concatenation
[z, e]. Here that concatenation is the code h (2 x 128 values for the released
models), so DGN-AM searches and the PPGN sampler move both the noise and the
class embedding, for any target of any classifier -- not only BigGAN's own
1,000 classes.

Code statistics: z follows BigGAN's truncated normal (truncnorm(-2, 2) scaled by
``truncation``): mean 0, std 0.88 x truncation, box [-2 t, 2 t]. The embedding
part's mean and std are those of the 1,000 class embeddings, its box their
range widened to mu +- 3 sigma. The truncation also selects the batch-norm
statistics BigGAN stored for it, so it is fixed per generator.

Any module with BigGAN's interface works: ``.embeddings`` (a bias-free Linear
from classes to the embedding size), ``.generator(cond_vector, truncation)``
returning a tanh image, and ``.config`` with ``z_dim``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import NeuronscopeError
from .base import CodeSpec, CodeStats, Generator

PACKAGE = "pytorch-pretrained-biggan"
NAMES = ("biggan-deep-128", "biggan-deep-256", "biggan-deep-512")
TRUNCNORM_STD = 0.8796  # std of a standard normal truncated to [-2, 2]


def _package():
    try:
        import pytorch_pretrained_biggan as pkg
    except ImportError:
        raise NeuronscopeError(f"BigGAN needs the {PACKAGE} package: pip install 'neuronscope[biggan]'") from None
    return pkg


def published_urls(name: str) -> tuple[str, str]:
    """(weights URL, config URL) where the package publishes a released model."""
    from pytorch_pretrained_biggan import model as m

    return m.PRETRAINED_MODEL_ARCHIVE_MAP[name], m.PRETRAINED_CONFIG_ARCHIVE_MAP[name]


def _cached(url: str, cache: Path) -> Path | None:
    """The package's cached download of ``url`` (file name sha256(url).sha256(etag)), if any."""
    stem = hashlib.sha256(url.encode("utf-8")).hexdigest()
    hits = [p for p in cache.glob(stem + "*") if not p.name.endswith(".json") and p.is_file()] if cache.is_dir() else []
    return hits[0] if hits else None


def load_pretrained(source: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> nn.Module:
    """A BigGAN from a folder holding ``pytorch_model.bin`` + ``config.json``, or a released model
    name found in the package's download cache. Never downloads; says which file is missing."""
    pkg = _package()
    src = str(source)
    if src in NAMES:
        wurl, curl = published_urls(src)
        cache = Path(cache_dir or pkg.PYTORCH_PRETRAINED_BIGGAN_CACHE)
        wfile, cfile = _cached(wurl, cache), _cached(curl, cache)
        missing = [u for u, f in ((wurl, wfile), (curl, cfile)) if f is None]
        if missing:
            raise NeuronscopeError(
                f"{src} is not in {PACKAGE}'s cache {cache}: missing {' and '.join(missing)} (where {PACKAGE} publishes it). "
                "Download both files into a folder as pytorch_model.bin and config.json and pass that folder"
            )
    else:
        d = Path(src)
        if not d.is_dir():
            raise NeuronscopeError(
                f"BigGAN source {src!r} is neither a folder nor a released name ({', '.join(NAMES)}); a folder must hold "
                "pytorch_model.bin and config.json"
            )
        wfile, cfile = d / "pytorch_model.bin", d / "config.json"
        for f in (wfile, cfile):
            if not f.is_file():
                raise NeuronscopeError(
                    f"BigGAN file missing: {f}. {PACKAGE} publishes biggan-deep-256 as {published_urls('biggan-deep-256')[0]} "
                    "(weights) and its -config.json (rename them pytorch_model.bin and config.json)"
                )
    config = pkg.BigGANConfig.from_json_file(str(cfile))
    model = pkg.BigGAN(config)
    try:
        state = torch.load(wfile, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001 - a corrupt or mismatched download is the user's to fix
        raise NeuronscopeError(f"{wfile} does not hold the weights of the BigGAN in {cfile}: {type(e).__name__}: {e}") from None
    return model


class BigGANCode(nn.Module):
    """Code h = [z, e] -> BigGAN's tanh image, at a fixed truncation."""

    def __init__(self, biggan: nn.Module, truncation: float = 0.4):
        super().__init__()
        for attr in ("embeddings", "generator", "config"):
            if not hasattr(biggan, attr):
                raise NeuronscopeError(f"not a BigGAN: the module has no .{attr} (needs embeddings, generator(cond, truncation), config)")
        if not 0 < truncation <= 1:
            raise NeuronscopeError(f"BigGAN truncation must be in (0, 1], got {truncation}")
        self.embeddings = biggan.embeddings
        self.generator = biggan.generator
        self.truncation = float(truncation)
        cfg = biggan.config
        self.z_dim = int(cfg.z_dim)
        self.config = dict(kind="biggan", config=cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg)),
                           truncation=self.truncation)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.generator(h, self.truncation)


def build_biggan_net(config: dict, truncation: float) -> BigGANCode:
    """Rebuild the adapter of a saved BigGAN generator (weights come from the saved state dict)."""
    pkg = _package()
    return BigGANCode(pkg.BigGAN(pkg.BigGANConfig.from_dict(dict(config))), truncation)


def biggan_stats(net: BigGANCode) -> CodeStats:
    """Code statistics of [z, e] (see the module doc)."""
    t = net.truncation
    zd = net.z_dim
    emb = net.embeddings.weight.detach().float().t()  # (classes, dim): one embedding per class
    e_mean, e_std = emb.mean(0), emb.std(0)
    e_lo = torch.minimum(emb.min(0).values, e_mean - 3 * e_std)
    e_hi = torch.maximum(emb.max(0).values, e_mean + 3 * e_std)
    return CodeStats(
        torch.cat([torch.zeros(zd), e_mean]),
        torch.cat([torch.full((zd,), TRUNCNORM_STD * t), e_std]),
        torch.cat([torch.full((zd,), -2 * t), e_lo]),
        torch.cat([torch.full((zd,), 2 * t), e_hi]),
    )


def biggan_generator(biggan: nn.Module | str | os.PathLike, *, truncation: float = 0.4, name: str | None = None) -> Generator:
    """A :class:`Generator` for a BigGAN module (or a folder / cached released name, see :func:`load_pretrained`)."""
    if not isinstance(biggan, nn.Module):
        name = name or Path(str(biggan)).name
        biggan = load_pretrained(biggan)
    net = BigGANCode(biggan, truncation)
    with torch.no_grad():
        size = int(net(torch.zeros(1, 2 * net.z_dim)).shape[-1])
    spec = CodeSpec(model="biggan", layer="z+class_embedding", grid=0, size=size)
    meta = {"image_size": size, "any_classifier": True, "arch": "biggan", "source": name or "BigGAN module",
            "truncation": net.truncation, "z_dim": net.z_dim,
            "command": f"convert-generator {name or 'BigGAN'} --arch biggan --truncation {net.truncation:g}"}
    return Generator(net, spec, biggan_stats(net), output_range=(-1.0, 1.0), meta=meta)


def class_codes(generator: Generator, classes: list[int], *, seed: int = 0) -> torch.Tensor:
    """Codes [z, e_k] for BigGAN classes ``classes``: truncated-normal noise and each class's embedding."""
    net = generator.net
    if not isinstance(net, BigGANCode):
        raise NeuronscopeError("class_codes needs a BigGAN generator")
    n_cls = net.embeddings.weight.shape[1]
    bad = [k for k in classes if not 0 <= k < n_cls]
    if bad:
        raise NeuronscopeError(f"BigGAN class(es) {bad} out of range; valid: 0..{n_cls - 1}")
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(len(classes), net.z_dim, generator=g)
    while (far := z.abs() > 2).any():  # BigGAN's truncated normal: redraw values outside [-2, 2]
        z[far] = torch.randn(int(far.sum()), generator=g)
    z = z * net.truncation
    e = net.embeddings.weight.detach().t()[classes].cpu()
    return torch.cat([z, e], 1).to(generator.device)
