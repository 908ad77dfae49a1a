"""``neuronscope dissect MODEL --layer L --data DIR``: Network Dissection report per layer."""

from __future__ import annotations

from ._common import add_model_argument


def add_parser(sub):
    p = sub.add_parser(
        "dissect",
        help="label every unit of a layer with the concept its top activations segment (Network Dissection)",
        description=(
            "DIR holds images/, masks/ (PNG, pixel value = concept id, 0 = unlabelled), concepts.csv "
            "(id,name,category) and index.csv (image,mask[,labels]). Writes OUT/index.html and, per layer, "
            "an HTML report, a CSV and a JSON summary."
        ),
    )
    add_model_argument(p)
    p.add_argument("--layer", nargs="+", required=True, metavar="L", help="layer(s) to dissect, e.g. blocks.4")
    p.add_argument("--data", required=True, metavar="DIR", help="segmentation dataset folder")
    p.add_argument("--out", default=None, help="output folder (default dissect-MODEL)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    p.add_argument("--size", type=int, default=None, help="network input size (default: the model's)")
    p.add_argument("--label-size", type=int, default=112, help="resolution of masks and IoU (default 112)")
    p.add_argument("--quantile", type=float, default=0.005, help="top fraction of activations per unit (default 0.005)")
    p.add_argument("--iou-threshold", type=float, default=0.04, help="IoU above which a unit is a detector (0.04)")
    p.add_argument("--top", type=int, default=10, help="top images shown per unit (default 10)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="use only the first N rows of index.csv")
    p.add_argument("--no-images", action="store_true", help="skip the per-unit image strips")
    return p


def run(args):
    from ..dissect import run_dissection
    from ..errors import NeuronscopeError
    from ._common import load

    if args.size is not None and not 16 <= args.size <= 2048:
        raise NeuronscopeError(f"--size {args.size} is out of range; valid 16..2048 pixels")
    if not 4 <= args.label_size <= 1024:
        raise NeuronscopeError(f"--label-size {args.label_size} is out of range; valid 4..1024")
    if not 1 <= args.top <= 100:
        raise NeuronscopeError(f"--top {args.top} is out of range; valid 1..100")
    if args.batch_size < 1:
        raise NeuronscopeError(f"--batch-size must be >= 1, got {args.batch_size}")
    from ..dissect import load_dataset

    data = load_dataset(args.data, limit=args.limit)  # validate before loading the model
    model = load(args)
    out = args.out or f"dissect-{model.name.replace(':', '_')}"
    summaries = run_dissection(
        model, data, args.layer, out, overwrite=args.overwrite, size=args.size, label_size=args.label_size,
        batch_size=args.batch_size, quantile=args.quantile, iou_threshold=args.iou_threshold, top=args.top,
        images=not args.no_images,
    )
    for layer, s in summaries.items():
        best = ", ".join(f"{u['unit']}:{u['label']} {u['iou']:.3f}" for u in s["top_units"][:5])
        print(f"{layer}: {s['detectors']} of {s['units']} units are detectors ({s['unique_concepts']} concepts); "
              f"best {best}")
    print(f"wrote {out}/index.html ({s['runtime_s']:.1f} s)")
    return 0
