"""``neuronscope classify MODEL IMAGE...``: top-5 labels with probabilities."""

from __future__ import annotations

import sys

from ._common import add_model_argument


def add_parser(sub):
    p = sub.add_parser("classify", help="print the top-5 classes of images")
    p.add_argument("model", help="model name, e.g. efficientnet_lite0")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--device", default=None)
    return p


def run(args):
    from ..classify import classify_paths
    from ..errors import NeuronscopeError
    from ..models import load_model

    if args.top < 1:
        raise NeuronscopeError(f"--top must be at least 1, got {args.top}")
    model = load_model(args.model, device=args.device)
    failures = 0
    for path, result in classify_paths(model, args.images, top=args.top):
        print(path, flush=True)
        if isinstance(result, Exception):
            failures += 1
            # stdout keeps one line per failed file so its blocks stay aligned; the reason goes to stderr
            print("  error (see stderr)", flush=True)
            print(f"neuronscope: error: {result}", file=sys.stderr, flush=True)
            continue
        for k, label, p in result:
            print(f"  {p:6.1%}  {label} ({k})")
    return 2 if failures else 0
