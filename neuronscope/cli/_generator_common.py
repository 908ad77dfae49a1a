"""Options and output helpers shared by the generator-prior verbs (dgn, sample, inpaint)."""

from __future__ import annotations

from pathlib import Path

from ._common import add_out_arguments, add_quiet_argument, add_seed_argument, add_threads_argument, size_px


def add_generator_arguments(p) -> None:
    p.add_argument("--generator", default="shipped", metavar="FOLDER_OR_FILE",
                   help="the --out folder of `neuronscope train-generator` or `neuronscope convert-generator` (the "
                   "DGN-AM/PPGN Caffe generators, BigGAN), or the generator .pt file in it (default: the shipped "
                   "Lite0 generator)")
    p.add_argument("--size", type=size_px, default=None, help="resolution the classifier sees the generated image at "
                   "(default: min(model size, 2 x generator size))")
    add_seed_argument(p)
    add_out_arguments(p, shown="VERB-MODEL", overwrite="allow writing into a non-empty --out")
    add_threads_argument(p)
    add_quiet_argument(p)


def add_prior_arguments(p, *, refine_default: int | None = None, what: str = "image") -> None:
    """``--prior W`` (the natural-image prior's RED term through G) and, with ``refine_default``, ``--refine N``."""
    from ._common import fraction, non_negative_int

    p.add_argument("--prior", type=fraction, default=0.0, metavar="W",
                   help="the learned natural-image prior as a regularization-by-denoising term through the generator: "
                   "its code step is W x the condition's (0 to 1; default 0: none)")
    if refine_default is not None:
        p.add_argument("--refine", type=non_negative_int, default=refine_default, metavar="N",
                       help=f"a hybrid: N steps of the natural preset at the model's size from each generated {what} "
                       f"(the generator gives the layout, the render the detail); 0: the generator's own images, the "
                       f"paper's method (default {refine_default})")


def prior_setting(args):
    """The ``prior=`` argument of the generator functions from ``--prior``."""
    return {"weight": args.prior} if args.prior > 0 else False


def setup(args, verb: str, at_least_one: tuple[str, ...] = ("n",)):
    """(model, generator, output folder): what every generator verb does before its own work.

    The options named in ``at_least_one`` are checked first (one message naming
    them all); the output folder is ``--out`` or ``VERB-MODEL``, checked here and
    written at the end through :func:`neuronscope.outdir.building_output_dir`.
    """
    from ..errors import NeuronscopeError
    from ..generators.shipped import load_generator
    from ._common import load

    if any(getattr(args, name) < 1 for name in at_least_one):
        raise NeuronscopeError(f"{' and '.join('--' + name for name in at_least_one)} must be at least 1")
    from ..outdir import check_output_dir
    from ._common import apply_threads

    if args.out is not None:
        check_output_dir(args.out, overwrite=args.overwrite, in_place=False)  # before loading anything
    apply_threads(args)
    if args.generator not in (None, "", "shipped"):
        from ..generators.base import generator_file

        generator_file(args.generator)  # "generator file not found" before the model loads
    model = load(args)
    gen = load_generator(args.generator, model.name, device=model.device)
    if getattr(args, "variant", None):
        import sys

        from ..generators.ppgn import variant_for

        chosen = variant_for(gen, model, args.variant)
        if chosen != args.variant:
            print(f"note: variant {args.variant} needs the generator's encoder ({gen.spec.model} {gen.spec.layer}), "
                  f"which is not {model.name}; using {chosen}", file=sys.stderr)
            args.variant = chosen
    out = check_output_dir(args.out or f"{verb}-{model.name}", overwrite=args.overwrite, in_place=False)
    return model, gen, out


def write_outputs(out: Path, images, captions, name: str, columns: int | None = None, record: dict | None = None) -> Path:
    """Individual PNGs, one labelled sheet and a JSON record in ``out``."""
    from ..images import atomic_write_json, labelled_grid, save_png

    for i, im in enumerate(images):
        save_png(im, out / f"{name}_{i:03d}.png")
    sheet = labelled_grid(list(images), captions, columns=columns, cell=max(128, int(images[0].shape[-1])))
    path = save_png(sheet, out / f"{name}_sheet.png")
    if record is not None:
        atomic_write_json(out / f"{name}.json", record)
    return path
