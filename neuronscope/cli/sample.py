"""``neuronscope sample MODEL class:NAME [--n 8] [--variant joint-ppgn-h]``: PPGN samples of a class or unit.

Runs --n chains per target in one batch with the chosen variant (dgn-am,
ppgn-h, joint-ppgn-h, noiseless-joint-ppgn-h) and writes the last image of
each chain, a sheet of every chain's saved frames (its further samples) and
sample.json with p(y | x) per image.
"""

from __future__ import annotations

from ._common import add_model_argument, count, non_negative_float, positive_float
from ._generator_common import add_generator_arguments, add_prior_arguments, prior_setting, setup, write_outputs


def add_parser(sub):
    p = sub.add_parser("sample", help="PPGN: draw diverse samples of a class or unit through a generator prior",
                       description=__doc__)
    add_model_argument(p)
    p.add_argument("targets", nargs="+", help="class:NAME, class:INDEX or LAYER:C[@X,Y]")
    p.add_argument("--n", type=count, default=8, help="chains per target (default 8)")
    p.add_argument("--variant", default="joint-ppgn-h", help="dgn-am, ppgn-h, joint-ppgn-h (default), noiseless-joint-ppgn-h")
    p.add_argument("--steps", type=count, default=None, help="steps per chain (default: the variant's, 200)")
    p.add_argument("--eps1", type=non_negative_float, default=None, help="prior weight (fraction of the way to R(h) per step)")
    p.add_argument("--eps2", type=non_negative_float, default=None, help="condition weight")
    p.add_argument("--eps3", type=non_negative_float, default=None, help="noise (in units of each code unit's std)")
    p.add_argument("--lr", type=positive_float, default=None)
    p.add_argument("--reset-every", type=count, default=None, help="restart chains from random codes every K steps")
    p.add_argument("--save-every", type=count, default=None, help="keep a frame every K steps (default 5)")
    p.add_argument("--compat", action="store_true", help="released PPGN class gradient (1 - p_y on logit y only)")
    from ..generators.ppgn import SAMPLE_REFINE

    add_prior_arguments(p, refine_default=SAMPLE_REFINE, what="sample (each chain's last image)")
    add_generator_arguments(p)
    return p


def run(args):
    from ..generators.ppgn import sample
    from ..images import labelled_grid, save_png

    model, gen, out = setup(args, "sample")
    res, rows = sample(gen, model, args.targets, n=args.n, variant=args.variant, size=args.size, seed=args.seed,
                       progress=not args.quiet, steps=args.steps, eps1=args.eps1, eps2=args.eps2, eps3=args.eps3,
                       lr=args.lr, reset_every=args.reset_every, save_every=args.save_every,
                       compat=True if args.compat else None, prior=prior_setting(args), refine=args.refine)
    from ..generators.conditions import Condition

    size = args.size or min(model.input_size, 2 * gen.image_size)
    if args.refine:
        from ..generators.image_prior import refine_size

        size = refine_size(model, rows, size)
    probs = Condition(model, rows, size=size).probabilities(res.images)
    caps = [f"{t.label}\np={float(p):.2f}" for t, p in zip(rows, probs)]
    record = {"variant": args.variant, "targets": [t.label for t in rows], "p": [float(p) for p in probs],
              "prior": args.prior, "refine": args.refine}
    from ..outdir import building_output_dir

    with building_output_dir(out, overwrite=args.overwrite) as tmp:
        sheet = write_outputs(tmp, res.images, caps, "sample", columns=args.n, record=record)
        if res.frames:
            frames, fcaps = [], []
            for r in range(len(rows)):
                ims, vals = res.samples(r)
                frames += list(ims[-8:])
                fcaps += [f"chain {r} step {res.frames[len(res.frames) - len(ims[-8:]) + j][0]}"
                          for j in range(len(ims[-8:]))]
            save_png(labelled_grid(frames, fcaps, columns=min(8, len(res.frames)), cell=96, caption_lines=1),
                     tmp / "chains_sheet.png")
    print(f"sheet: {out / sheet.name}")
    return 0
