"""``neuronscope classify MODEL IMAGE...``: top-5 labels with probabilities."""

from __future__ import annotations

import sys

from ._common import add_model_argument, int_range, load


def add_parser(sub):
    p = sub.add_parser("classify", help="print the top-5 classes of images")
    add_model_argument(p, required=True)
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top", type=int_range(1, 1000, "classes"), default=5, help="classes shown per image (default 5)")
    return p


def run(args):
    from ..classify import classify_paths
    from ..errors import NeuronscopeError

    model = load(args)  # with --preprocess / --input-size for your own model
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
