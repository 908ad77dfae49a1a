"""Arguments shared by several verbs, and the option types that validate them.

Every number a verb takes goes through one of the types below, so a bad value
stops at argument parsing (exit code 2, before any model loads) with a message
naming the option and the valid range: ``argument --size: 0 is not valid; give
a whole number of pixels from 16 to 4096``. NaN and infinities are never valid.
"""

from __future__ import annotations

import argparse
import math

from ..models import DEFAULT_MODEL

# the largest image side any verb renders or reads at; the memory check refuses
# sizes within this range that would not fit (see neuronscope.memory)
MAX_SIZE = 4096


def _range_text(lo, hi, lo_open: bool = False) -> str:
    lo, hi = (f"{v:g}" if isinstance(v, float) else v for v in (lo, hi))
    if hi is None:
        return f"greater than {lo}" if lo_open else f"{lo} or more"
    if lo_open:
        return f"greater than {lo} and at most {hi}"
    return f"from {lo} to {hi}"


def int_range(lo: int, hi: int | None = None, what: str = "") -> callable:
    """An argparse type: a whole number in ``lo..hi`` (``hi`` None: no upper bound)."""
    noun = f"a whole number{' of ' + what if what else ''}"

    def parse(text: str) -> int:
        try:
            value = int(str(text).strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not valid; give {noun} {_range_text(lo, hi)}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is not valid; give {noun} {_range_text(lo, hi)}")
        return value

    parse.__name__ = "int"
    return parse


def float_range(lo: float, hi: float | None = None, *, lo_open: bool = False, what: str = "") -> callable:
    """An argparse type: a finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); never NaN or inf."""
    noun = f"a finite number{' of ' + what if what else ''}"

    def parse(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not valid; give {noun} {_range_text(lo, hi, lo_open)}")
        if value < lo or (lo_open and value == lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{text} is not valid; give {noun} {_range_text(lo, hi, lo_open)}")
        return value

    parse.__name__ = "float"
    return parse


positive_int = int_range(1)
count = positive_int  # how many images, seeds, steps, restarts ...
non_negative_int = int_range(0)
size_px = int_range(16, MAX_SIZE, "pixels")
threads = int_range(1, 256, "threads")
positive_float = float_range(0.0, lo_open=True)
non_negative_float = float_range(0.0)
fraction = float_range(0.0, 1.0)
open_fraction = float_range(0.0, 1.0, lo_open=True)
seed = int_range(0, 2**63 - 1)


def channel_list(text: str) -> list[int] | None:
    """An argparse type: channel indices written as in a target (``0-63``, ``1,5,9``, ``0-7,12``); empty: None (all)."""
    from ..errors import NeuronscopeError
    from ..units import channel_indices

    if not str(text).strip():
        return None
    try:
        return list(channel_indices(str(text)))
    except NeuronscopeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_model_argument(p: argparse.ArgumentParser, positional: bool = True, required: bool = False, *,
                       default: str | None = DEFAULT_MODEL, what: str | None = None) -> None:
    """The model (positional, optional unless ``required``, or ``--model``), ``--device``, and for your own
    model (``module:factory``, ``./file.py:factory``) ``--preprocess`` and ``--input-size``.

    An optional model falls back to ``default``; ``what`` is the help's first words, which say what the
    model is for and what no model means (default: ``model name (default DEFAULT)``).
    """
    own = "package.module:factory or ./file.py:factory (your own model; give --preprocess)"
    help_ = f"{what or f'model name (default {default})'}; also torchvision:NAME, timm:NAME, {own}"
    if positional and required:
        p.add_argument("model", help=f"model name, e.g. efficientnet_lite0; also torchvision:NAME, timm:NAME, {own}")
    elif positional:
        p.add_argument("model", nargs="?", default=default, help=help_)
    else:
        p.add_argument("--model", default=default, help=help_)
    add_device_argument(p)
    p.add_argument("--preprocess", choices=["imagenet", "minus_one_one", "none"], default=None,
                   help="your own model: the normalization it expects of [0,1] RGB input; required unless the "
                        "factory declares it")
    p.add_argument("--input-size", type=size_px, default=None, help="your own model: its input size (default 224)")


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")


def add_out_arguments(p: argparse.ArgumentParser, default: str | None = None, *, shown: str | None = None,
                      what: str = "output folder",
                      overwrite: str | None = "replace the files of a non-empty output folder") -> None:
    """``--out FOLDER`` (every verb writes a folder) and, unless ``overwrite`` is None, ``--overwrite``.

    ``shown`` describes a default computed at run time (e.g. ``invert-IMAGE``).
    """
    p.add_argument("--out", default=default, metavar="FOLDER", help=f"{what} (default {shown or default})")
    if overwrite is not None:
        p.add_argument("--overwrite", action="store_true", help=overwrite)


def add_ray_arguments(p: argparse.ArgumentParser, *, backend: str, shard_size: str, send_images: str) -> None:
    """The scaling-out group of a pass that shards over Ray (``topk``, ``dissect``): ``--backend``,
    ``--workers``, ``--ray-address``, ``--threads``, ``--shard-size``, ``--send-images``; the three
    texts describe what the ray backend, a shard and sending the images mean for this verb."""
    ray = p.add_argument_group("scaling out (Ray; an optional extra: pip install 'neuronscope[ray]')")
    ray.add_argument("--backend", default="local", choices=["local", "ray"], help=f"local: this process; ray: {backend}")
    ray.add_argument("--workers", type=count, default=None, help="Ray workers (default 2)")
    ray.add_argument("--ray-address", default=None, help="join this Ray cluster instead of starting a local one")
    ray.add_argument("--threads", type=count, default=None, help="torch threads per Ray worker (default 1)")
    ray.add_argument("--shard-size", type=count, default=None, help=shard_size)
    ray.add_argument("--send-images", action="store_true", help=send_images)


def add_threads_argument(p: argparse.ArgumentParser, help: str = "torch CPU threads (default: torch's choice)") -> None:
    p.add_argument("--threads", type=threads, default=None, help=help)


def add_quiet_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_seed_argument(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=seed, default=default, help=f"random seed (default {default})")


def apply_threads(args) -> None:
    """Set torch's thread count when ``--threads`` was given (the CLI owns the process)."""
    n = getattr(args, "threads", None)
    if n:
        import torch

        torch.set_num_threads(n)


def load(args):
    from ..models import load_model

    extra = {}
    if getattr(args, "preprocess", None) is not None:
        extra["preprocess"] = args.preprocess
    if getattr(args, "input_size", None) is not None:
        extra["input_size"] = args.input_size
    return load_model(args.model, device=args.device, **extra)
