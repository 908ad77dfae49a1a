"""``neuronscope layers MODEL [LAYER...]``: addressable layers with their output shapes.

With LAYER names, only those layers and the layers inside them are listed; an
unknown name fails with the closest valid names.
"""

from __future__ import annotations

from ._common import add_model_argument, load, non_negative_int, size_px


def add_parser(sub):
    p = sub.add_parser("layers", help="list the model's layers with output shapes and channel counts")
    add_model_argument(p)
    p.add_argument("names", nargs="*", metavar="LAYER", help="only these layers and the layers inside them")
    p.add_argument("--size", type=size_px, default=224, help="input size in pixels for the shapes (default 224)")
    p.add_argument("--depth", type=non_negative_int, default=None, help="only names with at most this many dots")
    p.set_defaults(_trailing="names")  # LAYER words may also follow the options (cli._parse)
    return p


def run(args):
    from ..errors import NeuronscopeError
    from ..taps import describe_layers, resolve

    from ..memory import check_activations

    model = load(args)
    check_activations(model, args.size, 1, "--size", training=False)
    wanted = [resolve(model, name).path for name in args.names]
    rows = describe_layers(model, args.size)
    if wanted:
        rows = [r for r in rows if any(_inside(r.name, w) for w in wanted)]
    if args.depth is not None:
        rows = [r for r in rows if r.name.split("[")[0].count(".") <= args.depth]
    width = max((len(r.name) for r in rows), default=5)
    print(f"{model.name}: {len(rows)} addressable layers, shapes for one {args.size}px image")
    print(f"{'layer':<{width}}  {'type':<18} {'output shape':<18} channels")
    for r in rows:
        shape = "x".join(map(str, r.shape)) if r.shape else "(not run)"
        print(f"{r.name:<{width}}  {r.kind:<18} {shape:<18} {r.channels if r.channels is not None else ''}")


def _inside(name: str, wanted: str) -> bool:
    """Whether layer ``name`` is ``wanted``, one of its outputs or a layer inside it."""
    return name == wanted or name.startswith((wanted + ".", wanted + "["))
