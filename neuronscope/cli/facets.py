"""``neuronscope facets MODEL TARGET --images DIR``: the facets of one unit (multifaceted visualization).

With ``--images``: the unit's example views are clustered into facets; each
facet is rendered from the mean of its 15 most central views with the paper's
mean-image schedule (and the default preset), ranked by cluster size and
deduplicated. Without ``--images``: k renders made different by a Gram-matrix
diversity term. Writes ``OUT/<unit>.html``, ``.png`` and a ``.json`` summary.
"""

from __future__ import annotations

from pathlib import Path

from ..optim.presets import DEFAULT_PRESET
from ._common import (
    add_model_argument,
    add_quiet_argument,
    add_seed_argument,
    count,
    float_range,
    int_range,
    load,
    non_negative_float,
    non_negative_int,
    size_px,
)

# Cheaper command-line defaults than the paper's (docs/facets.md): half the MFV schedule and a
# short preset render from each facet's mean image. Views stay at 8: the offline set has at most
# ~18 photos per class, and with 4 views a class falls below the 30 views clustering needs.
VIEWS = 8
ITER_SCALE = 0.5
PRESET_STEPS = 128
MAX_K = 4
REFINE_BUDGET = 50


def add_parser(sub):
    p = sub.add_parser("facets", help="find and render the facets of a unit (multifaceted feature visualization)",
                       description=__doc__)
    add_model_argument(p)
    p.add_argument("target", help="class:NAME, class:K, LAYER:C or LAYER:C@X,Y (e.g. class:goldfish, blocks.10:5)")
    p.add_argument("--images", default=None, help="folder of real images; without it: diversity mode (no data)")
    p.add_argument("--k", type=int_range(1, 64), default=None,
                   help="number of facets (default: chosen by the silhouette criterion; 4 in diversity mode)")
    p.add_argument("--max-k", type=int_range(1, 10), default=MAX_K,
                   help=f"most facets the silhouette criterion may choose (default {MAX_K}, which bounds the run's time: "
                        "each facet is rendered twice; the paper's criterion tried up to 10)")
    p.add_argument("--out", default=None, metavar="FOLDER", help="output folder (default facets-MODEL)")
    p.add_argument("--reduce", choices=["tsne", "pca", "none"], default="tsne", help="reduction before k-means")
    p.add_argument("--views", type=int_range(1, 256), default=VIEWS,
                   help=f"views per image: the centre crop plus random crops/flips (default {VIEWS}; fewer may leave a class "
                        "below the 30 views clustering needs)")
    p.add_argument("--n-max", type=count, default=None, help="most example views to keep")
    p.add_argument("--embed-layer", default=None, help="embedding layer (default: penultimate pooled features)")
    p.add_argument("--size", type=size_px, default=None, help="network input size for examples and renders (default: the model's)")
    p.add_argument("--schedule", choices=["mean", "center"], default="mean",
                   help="MFV schedule: mean-image init (default) or centre-biased from the mean image")
    p.add_argument("--iter-scale", type=float_range(0.0, 100.0, lo_open=True), default=ITER_SCALE,
                   help=f"scale the MFV schedule's iterations (default {ITER_SCALE}; 1 = the paper's 370, 0.25 for a preview)")
    p.add_argument("--preset", default=DEFAULT_PRESET, help="also render each facet with this preset from its mean image")
    p.add_argument("--no-preset", action="store_true", help="only the MFV schedule")
    p.add_argument("--steps", type=count, default=None,
                   help=f"preset steps (default with --images: {PRESET_STEPS}, as each facet's render starts from its mean "
                        "image, not from noise; without --images: the preset's own)")
    p.add_argument("--anchor", type=non_negative_float, default=None,
                   help="weight of the cluster anchor in the preset renders: unit + A * cos(embedding - m, centroid - m) "
                        "keeps each facet near its own cluster (default: the frozen value in facets.pipeline.ANCHOR; 0 = plain)")
    p.add_argument("--no-refine", action="store_true",
                   help="run the MFV schedule exactly as published: no extra last-octave iterations for facets "
                        "still below their cluster's best real view")
    p.add_argument("--mfv-colour", choices=["photo", "none"], default="photo",
                   help="start of the MFV schedule: 'photo' (default) stretches each mean image to photo contrast and "
                        "colourfulness and holds the render there; 'none' starts from the mean image as it is, as "
                        "published (a mean of many views is grey, and the renders stay pale)")
    p.add_argument("--refine-budget", type=non_negative_int, default=REFINE_BUDGET,
                   help=f"most extra MFV iterations per facet in the refinement (default {REFINE_BUDGET}, ten repetitions "
                        "of the halved schedule's last octave; the Python API's default is as many as the schedule ran)")
    p.add_argument("--diversity-layer", default=None, help="diversity mode: layer of the Gram matrices")
    p.add_argument("--diversity-weight", type=non_negative_float, default=100.0)
    add_seed_argument(p)
    p.add_argument("--store", default=None, help="also attach the facet images to this unit store")
    p.add_argument("--overwrite", action="store_true", help="replace this unit's sheet if it exists")
    add_quiet_argument(p)
    return p


def summary(result) -> dict:
    """The numbers of a facet result, for JSON."""
    def number(v):  # a value that was never measured (e.g. no preset render) is null, not NaN
        return None if v is None or v != v else float(v)

    def one(rank, f):
        return {"rank": rank, "cluster": f.cluster, "size": f.size, "images": f.images, "value": number(f.value),
                "preset_value": number(f.preset_value), "mean_image_value": number(f.mean_value),
                "best_real": number(f.best_real), "mean_real": number(f.mean_real), "duplicate_of": f.duplicate_of, "refine_iterations": f.refine_iterations,
                "reaches_best_real": bool(f.value >= f.best_real) if result.mode == "data" else None,
                "preset_reaches_best_real": (bool(f.preset_value >= f.best_real)
                                             if result.mode == "data" and f.preset_image is not None else None),
                "anchored": f.anchored}

    return {"model": result.model, "unit": result.unit.label, "layer": result.unit.layer, "index": result.unit.index,
            "mode": result.mode, "meta": result.meta,
            "facets": [one(i, f) for i, f in enumerate(result.facets)],
            "duplicates": [one(i, f) for i, f in enumerate(result.duplicates)]}


def run(args):
    from ..errors import NeuronscopeError
    from ..facets import parse_unit, write_facet_sheet
    from ..facets.output import building_unit_sheet, refuse_finished, unit_page
    from ..images import atomic_write_json

    if args.k is not None and args.k < 1:
        raise NeuronscopeError(f"--k must be at least 1, got {args.k}")
    if args.anchor is not None and not (args.anchor >= 0 and args.anchor < float("inf")):
        raise NeuronscopeError(f"--anchor must be a finite number >= 0 (0 = no anchor), got {args.anchor}")
    if args.refine_budget is not None and args.refine_budget < 0:
        raise NeuronscopeError(f"--refine-budget must be at least 0, got {args.refine_budget}")
    from ..outdir import check_output_dir

    out = Path(args.out or f"facets-{Path(str(args.model)).name.replace(':', '_')}")
    check_output_dir(out, resume=True)  # one sheet per unit: a folder of earlier units' sheets is fine
    if args.images:
        from ..images import first_readable_image

        first_readable_image(args.images)
    model = load(args)
    unit = parse_unit(model, args.target)
    refuse_finished(out, unit.slug, args.overwrite)
    with building_unit_sheet(out, unit.slug, overwrite=args.overwrite) as tmp:  # nothing half-written in OUT
        result = _facets(model, unit, args)
        write_facet_sheet(result, tmp)
        atomic_write_json(tmp / f"{unit.slug}.json", summary(result))
    html, png = unit_page(out, unit.slug), out / f"{unit.slug}.png"
    print(f"sheet: {html}  {png}")
    if args.store:
        from ..data.store import Store

        with Store.open(args.store) as store:
            for i, f in enumerate(result.facets):
                meta = {k: v for k, v in summary(result)["facets"][i].items()}
                store.put_artifact("facet", unit.layer, unit.index, f"{i}", f.image, {**meta, "mode": result.mode})
                if f.mean_image is not None:
                    store.put_artifact("facet_mean", unit.layer, unit.index, f"{i}", f.mean_image, meta)
        print(f"attached {len(result.facets)} facet images to {args.store}")


def _facets(model, unit, args):
    """Find and render the unit's facets (data mode with --images, else diversity mode), printing what was found."""
    from ..facets import diverse_facets, labels_from_manifest, multifaceted
    from ..facets.pipeline import ANCHOR

    progress = not args.quiet
    if args.images:
        labels = labels_from_manifest(args.images)
        if labels:
            print(f"using {len(labels)} labels from the folder's manifest.json")
        result = multifaceted(
            model, unit, args.images, k=args.k, max_k=args.max_k, reduce=args.reduce, views=args.views, n_max=args.n_max,
            embed_layer=args.embed_layer, labels=labels, schedule=args.schedule, iter_scale=args.iter_scale,
            preset=None if args.no_preset else args.preset, preset_steps=PRESET_STEPS if args.steps is None else args.steps, size=args.size,
            seed=args.seed, anchor=ANCHOR if args.anchor is None else args.anchor, refine=not args.no_refine,
            refine_budget=args.refine_budget, mfv_colour=None if args.mfv_colour == "none" else args.mfv_colour,
            progress=progress,
        )
        print(f"{unit.label}: {result.meta['examples']}")
        print(f"{len(result.facets)} facets ({result.meta['k_rule']}); {len(result.duplicates)} near-duplicates dropped")
        for i, f in enumerate(result.facets):
            extra = f" after {f.refine_iterations} refinement iterations" if f.refine_iterations else ""
            below = "" if f.value >= f.best_real else "  BELOW its best real view"
            print(f"  facet {i + 1}: {f.size} views of {f.images} images; activation {f.value:.2f}{extra} "
                  f"(mean image {f.mean_value:.2f}, best real {f.best_real:.2f}"
                  + (f", {result.meta['preset']} {f.preset_value:.2f}" if f.preset_image is not None else "") + f"){below}")
    else:
        result = diverse_facets(model, unit, args.k or 4, layer=args.diversity_layer, weight=args.diversity_weight,
                                preset=args.preset, size=args.size or 128, steps=args.steps, seed=args.seed,
                                progress=progress)
        print(f"{unit.label}: {len(result.facets)} diverse renders (diversity at {result.meta['diversity_layer']})")
        for i, f in enumerate(result.facets):
            print(f"  render {i + 1}: activation {f.value:.2f}")
    return result
