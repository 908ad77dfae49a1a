"""``neuronscope dissect MODEL --layer L --data DIR``: Network Dissection report per layer."""

from __future__ import annotations

from ._common import add_model_argument, add_out_arguments, add_ray_arguments, count, int_range, open_fraction, size_px


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
    add_out_arguments(p, shown="dissect-MODEL", overwrite="write into a non-empty output folder")
    p.add_argument("--size", type=size_px, default=None, help="network input size (default: the model's)")
    p.add_argument("--label-size", type=int_range(4, 1024, "pixels"), default=112, help="resolution of masks and IoU (default 112)")
    p.add_argument("--quantile", type=open_fraction, default=0.005, help="top fraction of activations per unit (default 0.005)")
    p.add_argument("--iou-threshold", type=open_fraction, default=0.04, help="IoU above which a unit is a detector (0.04)")
    p.add_argument("--top", type=int_range(1, 100, "images"), default=10, help="top images shown per unit (default 10)")
    p.add_argument("--batch-size", type=count, default=16, help="images per forward pass (default 16)")
    p.add_argument("--limit", type=count, default=None, help="use only the first N rows of index.csv")
    p.add_argument("--no-images", action="store_true", help="skip the per-unit image strips")
    add_ray_arguments(p, backend="both passes sharded over Ray workers", shard_size="samples per shard (default 128)",
                      send_images="send images and masks as bytes from this machine; without it, workers read the "
                                  "dataset's paths, which must then exist at the same path on every node")
    return p


def run(args):
    from ..dissect import run_dissection
    from ..errors import NeuronscopeError
    from ._common import load

    scale = {}
    if args.backend == "ray":
        from ..ray_pool import import_ray

        import_ray()  # before any work: without Ray, the install hint
        scale = dict(backend="ray", workers=args.workers, ray_address=args.ray_address, threads=args.threads,
                     shard_size=args.shard_size, send_images=args.send_images)
    elif args.workers or args.ray_address or args.send_images:
        raise NeuronscopeError("--workers, --ray-address and --send-images are for --backend ray")
    from ..dissect import load_dataset
    from ..outdir import check_output_dir

    if args.out is not None:
        check_output_dir(args.out, overwrite=args.overwrite)

    data = load_dataset(args.data, limit=args.limit)  # validate before loading the model
    model = load(args)
    out = args.out or f"dissect-{model.name.replace(':', '_')}"
    summaries = run_dissection(
        model, data, args.layer, out, overwrite=args.overwrite, size=args.size, label_size=args.label_size,
        batch_size=args.batch_size, quantile=args.quantile, iou_threshold=args.iou_threshold, top=args.top,
        images=not args.no_images, **scale,
    )
    for layer, s in summaries.items():
        best = ", ".join(f"{u['unit']}:{u['label']} {u['iou']:.3f}" for u in s["top_units"][:5])
        print(f"{layer}: {s['detectors']} of {s['units']} units are detectors ({s['unique_concepts']} concepts); "
              f"best {best}")
    print(f"wrote {out}/index.html ({s['runtime_s']:.1f} s)")
    return 0
