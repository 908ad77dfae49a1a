"""``neuronscope render MODEL TARGET...``: activation maximization to a folder of pictures."""

from __future__ import annotations


def add_parser(sub):
    from ..optim.presets import DEFAULT_PRESET, PRESETS
    from ..optim.engine.stages import PRECISIONS

    p = sub.add_parser(
        "render", help="synthesize the images that maximize units, classes or channels",
        description="TARGET: class:9, class:ostrich, blocks.10:5, blocks.10:0-15, blocks.10:5@3,4",
    )
    p.add_argument("model", help="model name, e.g. efficientnet_lite0")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS))
    p.add_argument("--size", type=int, default=None, help="image size in pixels (default: the model's input size, "
                   "224 for efficientnet_lite0)")
    p.add_argument("--steps", type=int, default=None, help="optimization steps (default: the preset's)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per target (default 1)")
    p.add_argument("--batch", type=int, default=32, help="rows per optimization (default 32)")
    p.add_argument("--out", default="render_out", help="output folder (must not exist or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", default="mixed", choices=list(PRECISIONS),
                   help="network arithmetic while optimizing (default mixed: bfloat16 steps, the last quarter "
                        "in float32, where the CPU/GPU has native bfloat16; float32 otherwise)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args):
    from ..models import load_model
    from ..optim.visualize import visualize
    from ..units import parse_units

    model = load_model(args.model, device=args.device)
    targets = parse_units(model, args.targets, size=args.size)  # validate before any work
    out = visualize(model, targets, args.out, preset=args.preset, size=args.size, steps=args.steps,
                    seeds=args.seeds, batch_size=args.batch, overwrite=args.overwrite, progress=not args.quiet,
                    precision=args.precision)
    print(f"wrote {len(targets) * args.seeds} images to {out}/ (grid.png, index.html, manifest.json)")
