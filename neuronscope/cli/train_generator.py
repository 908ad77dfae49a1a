"""``neuronscope train-generator MODEL --layer L --images DIR``: train a generator prior."""

from __future__ import annotations

from pathlib import Path

from ._common import (
    add_model_argument,
    add_seed_argument,
    add_threads_argument,
    count,
    float_range,
    int_range,
    non_negative_int,
    positive_float,
    size_px,
)


def add_parser(sub):
    p = sub.add_parser(
        "train-generator",
        help="train a generator that inverts a classifier layer (for dgn / sample / inpaint)",
        description="Train G: code of layer L -> image (image + feature + code-cycle loss, optional "
        "adversarial stage) and a code DAE, with checkpoints, resume and sample sheets in --out.",
    )
    add_model_argument(p)
    p.add_argument("--layer", default="head.act", help="code layer address (default head.act; 'pool' for the 1280-d vector)")
    p.add_argument("--grid", type=int_range(0, 64), default=2, help="average-pool a 4-D code layer to GRID x GRID (default 2; 0 keeps the map)")
    p.add_argument("--images", required=True, help="folder of training photos (10%% are held out by file-name hash)")
    p.add_argument("--size", type=int, default=64, choices=(32, 64, 128), help="generated image size in px (default 64)")
    p.add_argument("--code-size", type=size_px, default=128, help="input resolution at which codes are computed (default 128)")
    p.add_argument("--steps", type=count, default=2500, help="training steps (default 2500)")
    p.add_argument("--adv-from", type=non_negative_int, default=None, help="step where the adversarial stage starts (default: never)")
    p.add_argument("--augs", type=count, default=10, help="augmented views per photo in the data bank (default 10)")
    p.add_argument("--batch", type=count, default=16, help="images per step (default 16)")
    p.add_argument("--lr", type=float_range(0.0, 1.0, lo_open=True), default=2e-4, help="Adam learning rate (default 2e-4; decays linearly to 10%% "
                   "over the last 30%% of the run)")
    p.add_argument("--full-every", type=count, default=1, help="feature and code-cycle losses every K steps, image loss only "
                   "between (cheaper steps on a busy CPU; default 1 = every step)")
    p.add_argument("--hours", type=positive_float, default=None, help="stop after this much training time (counted across resumes)")
    p.add_argument("--ckpt-minutes", type=positive_float, default=4.0, help="checkpoint and sample sheet interval (default 4)")
    add_seed_argument(p)
    p.add_argument("--out", default="generator_run", metavar="FOLDER", help="run folder (default ./generator_run)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (an error when there is none)")
    add_threads_argument(p, help="torch CPU threads (default: torch's choice; a --resume uses the run's own, "
                         "recorded in config.json, and refuses another)")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args):
    from ..errors import NeuronscopeError
    from ..generators.train import TrainConfig, train_generator
    from ..outdir import check_output_dir
    from ._common import apply_threads, load

    out = Path(args.out)
    has_run = (out / "checkpoint.pt").exists() or (out / "bank.pt").exists()
    if args.resume and not has_run:
        raise NeuronscopeError(f"--resume: {out} holds no training run to continue (no checkpoint.pt); "
                               "leave out --resume to start one, or give the --out of an earlier run")
    if has_run and not args.resume:
        raise NeuronscopeError(f"--out {out} holds a training run; pass --resume to continue it or choose another --out")
    check_output_dir(out, resume=args.resume, overwrite_flag=None)
    if args.resume:
        from ..generators.train import resume_conditions

        resume_conditions(out, args.threads)  # another --threads than the run's: refused before the model loads
    if args.adv_from is not None and args.adv_from > args.steps:
        raise NeuronscopeError(f"--adv-from {args.adv_from} is after the last step; valid: 0..--steps ({args.steps})")
    apply_threads(args)

    model = load(args)
    cfg = TrainConfig(
        layer=args.layer, grid=args.grid, code_size=args.code_size, image_size=args.size, steps=args.steps,
        adv_from=args.adv_from if args.adv_from is not None else args.steps, augs=args.augs, batch=args.batch, full_every=args.full_every, lr=args.lr,
        hours=args.hours, ckpt_minutes=args.ckpt_minutes, seed=args.seed,
    )
    g = train_generator(model, args.images, args.out, cfg, progress=not args.no_progress, resume=args.resume,
                        threads=args.threads)
    print(f"generator: {args.out}/generator.pt (best held-out: {args.out}/best_generator.pt), step {g.meta['step']}; "
          f"use it with --generator {args.out}")
    return 0
