"""``neuronscope demo``: the README's main job — a small, meaningful sheet of Lite0's units."""

from __future__ import annotations

DEMO_TARGETS = [
    "class:ostrich", "class:jellyfish", "class:goldfish", "class:espresso",
    "class:daisy", "class:volcano", "class:pizza", "class:monarch",
    "blocks.4:0-3", "blocks.10:0-3",
]


from ._common import add_device_argument, add_out_arguments, count, size_px


def add_parser(sub):
    p = sub.add_parser("demo", help="render a small sheet of EfficientNet-Lite0 classes and channels")
    add_out_arguments(p, "demo_out", what="output folder; when it is not empty, demo_out-2, -3 ... is used",
                      overwrite="replace a non-empty --out instead of choosing a new name")
    p.add_argument("--steps", type=count, default=256, help="optimization steps (default 256)")
    p.add_argument("--size", type=size_px, default=None, help="image size in px (default: the model's input size)")
    add_device_argument(p)
    return p


def run(args):
    import json
    from pathlib import Path

    from ..classify import top_k
    from ..images import load_batch
    from ..models import load_model
    from ..optim.visualize import visualize
    from ..outdir import check_output_dir
    from ..units import parse_units

    out = Path(args.out)
    if out.exists() and out.is_dir() and any(out.iterdir()) and not args.overwrite:
        # the demo is run again and again from `make demo`: keep earlier results, use a new folder
        n = 2
        while (out.parent / f"{out.name}-{n}").exists():
            n += 1
        out = out.parent / f"{out.name}-{n}"
    check_output_dir(out, overwrite=args.overwrite, in_place=False)
    model = load_model("efficientnet_lite0", device=args.device)
    units = parse_units(model, DEMO_TARGETS)
    classes = sum(u.layer == "logits" for u in units)
    print(f"neuronscope demo: rendering {classes} classes and {len(units) - classes} channels of {model.name} "
          f"({args.size or model.input_size}px, {args.steps} steps, one batched optimization) ...")
    path = visualize(model, DEMO_TARGETS, out, size=args.size, steps=args.steps, overwrite=args.overwrite,
                     title="neuronscope demo · EfficientNet-Lite0")
    manifest = json.loads((path / "manifest.json").read_text())
    files = [path / u["file"] for u in manifest["units"] if u["layer"] == "logits"]
    if files:
        preds = top_k(model, load_batch(files, model.input_size, 1.0).to(model.device), 1)
        hits = sum(int(p[0][1] == u["label"]) for p, u in zip(preds, [u for u in manifest["units"] if u["layer"] == "logits"]))
        print(f"Lite0 recognizes {hits}/{len(files)} of its rendered classes as top-1")
    print(f"open {path / 'index.html'} (grid: {path / 'grid.png'})")
