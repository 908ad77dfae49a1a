"""``neuronscope train-prior --images DIR [DIR...] --out RUN``: train the natural-image denoising prior."""

from __future__ import annotations

from pathlib import Path

from ._common import count, float_range, int_range, positive_float, seed, threads


def add_parser(sub):
    from ..priors.train import PriorTrainConfig

    d = PriorTrainConfig()
    p = sub.add_parser(
        "train-prior",
        help="train the natural-image prior (a noise-conditional denoiser, PPGN-x) on real photos",
        description="Train a denoiser D(x, sigma) on random patches of real photos (1 in 10 held out by file-name "
        "hash) with checkpoints every few minutes; --resume continues a run. The result, RUN/denoiser.pt, "
        "is what `render --prior-weights` takes.",
    )
    p.add_argument("--images", nargs="+", required=True, help="folders of real photos (searched recursively)")
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, denoiser.pt, log.json)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out with the same photos and settings")
    p.add_argument("--steps", type=count, default=d.steps, help=f"training steps (default {d.steps})")
    p.add_argument("--batch", type=count, default=d.batch, help=f"patches per step (default {d.batch})")
    p.add_argument("--patch", type=int_range(8, 1024, "pixels"), default=d.patch, help=f"patch size in px (default {d.patch})")
    p.add_argument("--width", type=count, default=d.width, help=f"hidden channels (default {d.width})")
    p.add_argument("--depth", type=count, default=d.depth, help=f"3x3 convolutions (default {d.depth})")
    p.add_argument("--sigma-max", type=float_range(0.0, 1.0, lo_open=True), default=d.sigma_max, help=f"largest noise std on [0,1] pixels (default {d.sigma_max})")
    p.add_argument("--lr", type=float_range(0.0, 1.0, lo_open=True), default=d.lr, help=f"Adam peak learning rate, cosine decay (default {d.lr})")
    p.add_argument("--seed", type=seed, default=d.seed)
    p.add_argument("--hours", type=positive_float, default=None, help="stop after this much training time (across resumes)")
    p.add_argument("--threads", type=threads, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args):
    import torch

    from ..outdir import check_output_dir
    from ..priors.train import CHECKPOINT, PriorTrainConfig, train_prior

    # a file, a path through a file or an unwritable place is a clear error before any work; a non-empty
    # folder is only accepted when it holds the run to resume (train_prior says which)
    has_run = (Path(args.out) / CHECKPOINT).is_file()
    check_output_dir(args.out, resume=args.resume or has_run, overwrite_flag=None)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = PriorTrainConfig(steps=args.steps, batch=args.batch, patch=args.patch, lr=args.lr, width=args.width,
                           depth=args.depth, sigma_max=args.sigma_max, seed=args.seed)
    path = train_prior(args.images, args.out, cfg, resume=args.resume, hours=args.hours, progress=not args.no_progress)
    print(f"denoiser: {path}")
    return 0
