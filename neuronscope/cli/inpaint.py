"""``neuronscope inpaint MODEL IMAGE --mask box:0.3,0.3,0.7,0.7 [--target class:NAME]``: fill a hole with a generator prior.

The image is centre-cropped to a square and worked on at the generator's
resolution; the hole (a box in fractions of the square, or a mask image with
white = hole) is filled by --n PPGN chains that match the known pixels and,
with --target, satisfy a condition. The output composites keep every pixel
outside the hole.
"""

from __future__ import annotations

from ._common import add_model_argument, count, non_negative_float
from ._generator_common import add_generator_arguments, add_prior_arguments, prior_setting, setup, write_outputs


def add_parser(sub):
    p = sub.add_parser("inpaint", help="fill a masked region of an image through a generator prior", description=__doc__)
    add_model_argument(p)
    p.add_argument("image", help="image file")
    p.add_argument("--mask", required=True, help="box:X0,Y0,X1,Y1 (fractions of the centre square) or a mask image (white = hole)")
    p.add_argument("--target", default=None, help="optional condition, e.g. class:ostrich")
    p.add_argument("--n", type=count, default=4, help="fills to draw (default 4)")
    p.add_argument("--steps", type=count, default=60)
    p.add_argument("--variant", default="noiseless-joint-ppgn-h", help="sampler variant (default noiseless-joint-ppgn-h)")
    p.add_argument("--context-weight", type=non_negative_float, default=1.0, help="weight of matching the known pixels (default 1)")
    add_prior_arguments(p)
    add_generator_arguments(p)
    return p


def run(args):
    from ..generators.inpaint import inpaint, parse_mask
    from ..generators.train import center_view
    from ..images import load_image, pil_to_tensor

    photo = load_image(args.image)  # a bad image fails before the model and generator load
    model, gen, out = setup(args, "inpaint")
    S = gen.image_size
    img = pil_to_tensor(center_view(photo).resize((S, S)))
    mask = parse_mask(args.mask, S)
    res = inpaint(gen, model, img, mask, target=args.target, n=args.n, variant=args.variant, steps=args.steps,
                  context_weight=args.context_weight, size=args.size, seed=args.seed, progress=not args.quiet,
                  prior=prior_setting(args))
    holed = res.context[0] * (1 - res.mask[0]) + 0.5 * res.mask[0]
    images = [img, holed] + list(res.composites)
    caps = ["input", "hole"] + [f"fill {i}\nctx err {float(e):.4f}" for i, e in enumerate(res.context_error_end)]
    record = {"target": args.target, "context_error_start": res.context_error_start.tolist(),
              "context_error_end": res.context_error_end.tolist(), "prior": args.prior}
    from ..outdir import building_output_dir

    with building_output_dir(out, overwrite=args.overwrite) as tmp:
        sheet = write_outputs(tmp, images, caps, "inpaint", columns=len(images), record=record)
    print(f"sheet: {out / sheet.name}")
    return 0
