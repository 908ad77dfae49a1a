"""``neuronscope atlas MODEL``: every unit of some layers rendered into a static website (resumable).

Renders each unit's visualization (many units per optimization), optionally
diversity images and top-k dataset examples, works out the classes each unit
drives, and writes SITE/index.html with a page per layer and per unit. Killed
or stopped (Ctrl-C, SIGTERM)? Run the same command again: finished units are
kept and only the missing ones are rendered. --force redoes everything.
"""

from __future__ import annotations

import signal

from ._common import (
    add_model_argument,
    add_quiet_argument,
    add_seed_argument,
    add_threads_argument,
    count,
    int_range,
    non_negative_int,
    size_px,
)


def add_parser(sub):
    from ..optim.presets import DEFAULT_PRESET, PRESETS

    p = sub.add_parser("atlas", help="render every unit of some layers into a static website (resumable, Ray optional)",
                       description=__doc__)
    add_model_argument(p, required=True)
    p.add_argument("--layers", nargs="+", default=None, metavar="LAYER[:UNITS]",
                   help="layers, optionally with units: blocks.4 blocks.6:0-15 (default: every block output)")
    p.add_argument("--out", default=None, metavar="FOLDER", help="site folder (default atlas-MODEL); the store lives in OUT/store")
    p.add_argument("--size", type=size_px, default=128, help="render size in px (default 128)")
    p.add_argument("--steps", type=count, default=None, help="optimization steps (default: the preset's, 512 for lucid)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS))
    add_seed_argument(p)
    p.add_argument("--batch", type=count, default=32, help="rows per optimization (default 32)")
    p.add_argument("--diversity", type=int_range(0, 64), default=0, metavar="K",
                   help="also K diversity renders per unit (Gram-matrix diversity term; default 0 = off)")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="image folder: run the top-k pass (resumable) for dataset examples and max patches")
    p.add_argument("--topk-store", default=None, help="top-k store to read (or to fill with --images); default OUT/topk")
    p.add_argument("--k", type=int_range(1, 100), default=9, help="dataset examples per unit (default 9)")
    p.add_argument("--dissection", default=None, metavar="REPORT",
                   help="a `neuronscope dissect` output folder: show each unit's label")
    p.add_argument("--classes", type=non_negative_int, default=8, metavar="N",
                   help="reference inputs for the classes each unit drives (0 = off; default 8)")
    p.add_argument("--backend", default="local", choices=["local", "ray"])
    p.add_argument("--workers", type=int_range(1, 1024), default=None, help="Ray workers (default 2)")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster instead of starting a local one")
    add_threads_argument(p, help="torch threads (local) or per Ray worker (default 1)")
    p.add_argument("--force", action="store_true", help="redo every unit (also needed after changing settings)")
    p.add_argument("--site-only", action="store_true", help="render nothing; rebuild the site from the store")
    add_quiet_argument(p)
    return p


def run(args):
    from pathlib import Path

    from ..atlas import AtlasSettings, build_atlas

    from ..atlas.store import AtlasStore
    from ..errors import NeuronscopeError
    from ..outdir import check_output_dir

    out = Path(args.out or f"atlas-{Path(str(args.model)).name.replace(':', '_')}")
    check_output_dir(out, resume=True)
    if out.is_dir() and any(out.iterdir()) and not AtlasStore.exists(out / "store"):
        raise NeuronscopeError(f"--out {out} exists, is not empty and holds no atlas; choose another --out "
                               "(an existing atlas folder is resumed, never overwritten)")
    if args.site_only and not AtlasStore.exists(out / "store"):
        raise NeuronscopeError(f"--site-only: {out} holds no atlas store to build a site from; "
                               "run without --site-only first")
    if args.images is not None:
        from ..images import first_readable_image

        first_readable_image(args.images)
    settings = AtlasSettings(size=args.size, steps=args.steps, preset=args.preset, seed=args.seed, batch=args.batch,
                             diversity=args.diversity)
    layers = args.layers
    if args.site_only:
        with AtlasStore.open(out / "store") as s:
            layers = s.layers()
    from ._common import load

    # a loaded model, so that --preprocess / --input-size count for your own model
    summary = build_atlas(
        load(args), layers, out, settings=settings, backend=args.backend, workers=args.workers,
        ray_address=args.ray_address, threads=args.threads, force=args.force, images=args.images,
        topk_store=args.topk_store, topk_k=args.k, dissection=args.dissection, classes_inputs=args.classes,
        progress=not args.quiet, device=args.device, render=not args.site_only,
    )
    print(summary.text(), flush=True)
    if summary.status == "interrupted":
        return 128 + int(summary.signal or signal.SIGINT)
    return 0
