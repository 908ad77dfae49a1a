"""Arguments shared by several verbs."""

from __future__ import annotations

import argparse

from ..models import DEFAULT_MODEL


def add_model_argument(p: argparse.ArgumentParser, positional: bool = True) -> None:
    help_ = f"model name (default {DEFAULT_MODEL}); also torchvision:NAME, timm:NAME, package.module:factory"
    if positional:
        p.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=help_)
    else:
        p.add_argument("--model", default=DEFAULT_MODEL, help=help_)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")


def load(args):
    from ..models import load_model

    return load_model(args.model, device=args.device)
