"""``neuronscope dgn MODEL TARGET...``: DGN-AM -- each target's preferred image searched in a generator's code space.

Targets: class:NAME, class:INDEX, LAYER:C, LAYER:A-B, LAYER:C@X,Y. All targets
(times --n restarts) are optimized together, one batch row each. Writes one
PNG per row, a labelled sheet and dgn.json (activation per row) to --out.
"""

from __future__ import annotations

from ._common import add_model_argument, count, fraction, non_negative_float, positive_float
from ._generator_common import add_generator_arguments, add_prior_arguments, prior_setting, setup, write_outputs


def add_parser(sub):
    p = sub.add_parser("dgn", help="DGN-AM: maximize units through a generator prior", description=__doc__)
    add_model_argument(p)
    p.add_argument("targets", nargs="+", help="class:ostrich, class:9, blocks.10:5, blocks.10:0-7, blocks.10:5@3,4")
    p.add_argument("--n", type=count, default=1, help="restarts (random initial codes) per target (default 1)")
    p.add_argument("--steps", type=count, default=200, help="iterations (default 200, as the paper)")
    p.add_argument("--lr", type=positive_float, default=0.3, help="initial step in units of the mean code std (default 0.3)")
    p.add_argument("--lr-end", type=non_negative_float, default=1e-10, help="final step (linear schedule; default 1e-10)")
    p.add_argument("--decay", type=fraction, default=0.99, help="code decay per step (L2 prior; default 0.99)")
    p.add_argument("--best", action="store_true", help="show (and --refine) the highest-activation image instead of the last (the paper shows the last)")
    from ..generators.dgn_am import DGN_REFINE

    add_prior_arguments(p, refine_default=DGN_REFINE)
    add_generator_arguments(p)
    return p


def run(args):
    from ..generators.dgn_am import dgn_am

    model, gen, out = setup(args, "dgn", at_least_one=("n", "steps"))
    res, rows = dgn_am(gen, model, args.targets, steps=args.steps, lr=args.lr, lr_end=args.lr_end, decay=args.decay,
                       size=args.size, n=args.n, seed=args.seed, progress=not args.quiet,
                       prior=prior_setting(args), refine=0 if args.best else args.refine)
    if args.best:  # the highest-activation image of each row, refined when asked
        from dataclasses import replace

        from ..generators.image_prior import refined

        res = replace(res, images=res.best_images, values=res.best_values)
        if args.refine:
            res = refined(res, model, rows, args.refine, args.size or min(model.input_size, 2 * gen.image_size),
                          seed=args.seed, progress=not args.quiet)
    images, values = res.images, res.values
    caps = [f"{t.label}\n{float(v):.2f}" for t, v in zip(rows, values)]
    record = {"targets": [t.label for t in rows], "values": [float(v) for v in values], "steps": args.steps,
              "generator": gen.meta.get("command", args.generator), "shown": "best" if args.best else "last",
              "prior": args.prior, "refine": args.refine}
    from ..outdir import building_output_dir

    with building_output_dir(out, overwrite=args.overwrite) as tmp:
        sheet = write_outputs(tmp, images, caps, "dgn", columns=args.n if args.n > 1 else None, record=record)
    print(f"sheet: {out / sheet.name}")
    return 0
