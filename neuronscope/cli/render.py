"""``neuronscope render MODEL TARGET...``: activation maximization to a folder of pictures."""

from __future__ import annotations

from ._common import add_model_argument, add_out_arguments, add_quiet_argument, count, load, size_px


def add_parser(sub):
    from ..optim.presets import DEFAULT_PRESET, PRESETS
    from ..optim.engine.stages import PRECISIONS

    p = sub.add_parser(
        "render", help="synthesize the images that maximize units, classes or channels",
        description="TARGET: class:9, class:ostrich, blocks.10:5, blocks.10:0-15, blocks.10:5@3,4",
    )
    add_model_argument(p, required=True)
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS))
    p.add_argument("--size", type=size_px, default=None, help="image size in pixels (default: the model's input size, "
                   "224 for efficientnet_lite0)")
    p.add_argument("--steps", type=count, default=None, help="optimization steps (default: the preset's)")
    p.add_argument("--seeds", type=count, default=1, help="seeds per target (default 1)")
    p.add_argument("--batch", type=count, default=32, help="rows per optimization (default 32)")
    add_out_arguments(p, "render_out", overwrite="replace a non-empty output folder")
    p.add_argument("--precision", default=None, choices=list(PRECISIONS),
                   help="network arithmetic while optimizing (default: the preset's; natural: auto, i.e. bfloat16 "
                        "where the CPU/GPU has it natively, else float32; the other presets: mixed, i.e. bfloat16 "
                        "steps with the last quarter in float32)")
    add_quiet_argument(p)
    return p


def run(args):
    from ..memory import check_activations
    from ..optim.outputs import check_output_dir
    from ..optim.visualize import visualize
    from ..units import parse_units

    check_output_dir(args.out, args.overwrite)  # before loading anything
    model = load(args)  # with --preprocess / --input-size for your own model
    targets = parse_units(model, args.targets, size=args.size)  # validate before any work
    check_activations(model, args.size or model.input_size, min(args.batch, len(targets) * args.seeds),
                      "--size or --batch")
    out = visualize(model, targets, args.out, preset=args.preset, size=args.size, steps=args.steps,
                    seeds=args.seeds, batch_size=args.batch, overwrite=args.overwrite, progress=not args.quiet,
                    precision=args.precision)
    print(f"wrote {len(targets) * args.seeds} images to {out}/ (grid.png, index.html, manifest.json)")
