"""``neuronscope topk MODEL --images DIR --layers ...``: each unit's top-k images and max patches.

Streams the folder through the model once, keeps the top-k images of every
unit of the chosen layers in a resumable store, and writes one sheet per layer
(PNG + HTML, top-9 max patches per unit). Running the same command again after
an interruption resumes from the last checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from ._common import (add_model_argument, add_quiet_argument, add_ray_arguments, channel_list, count, int_range,
                      load, non_negative_float, size_px)


def add_parser(sub):
    p = sub.add_parser(
        "topk",
        help="find each unit's top-k images in a folder, with max patches (resumable)",
        description=__doc__,
    )
    add_model_argument(p)
    p.add_argument("--images", required=True, help="folder of images (searched recursively)")
    p.add_argument("--layers", nargs="+", required=True, help="layer addresses, e.g. blocks.5 blocks.10")
    p.add_argument("--k", type=int_range(1, 100), default=9, help="images kept per unit (default 9)")
    p.add_argument("--out", default=None, metavar="FOLDER", help="folder for the sheets (default topk-MODEL)")
    p.add_argument("--store", default=None, help="store folder (default OUT/store); reused and resumed when it exists")
    p.add_argument("--batch-size", type=count, default=16, help="images per forward pass (default 16)")
    p.add_argument("--size", type=size_px, default=None, help="input size in px (default: the model's)")
    p.add_argument("--units", type=channel_list, default=None,
                   help="units to put on the sheets, e.g. 0-63 or 1,5,9 (default all)")
    p.add_argument("--checkpoint-seconds", type=non_negative_float, default=30.0, help="commit progress this often (default 30)")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out without a store")
    p.add_argument("--no-sheets", action="store_true", help="only fill the store")
    add_quiet_argument(p)
    add_ray_arguments(p, backend="shards of the image list on Ray workers (same result)",
                      shard_size="images per shard handed to a worker (default 256, rounded up to whole batches); "
                                 "a killed run resumes shard by shard",
                      send_images="send the images' bytes from this machine to the workers; without it, workers "
                                  "read the image paths themselves, which must then exist at the same path on every node")
    return p


def run(args):
    from ..data.scan import run_topk
    from ..data.store import Store
    from ..data.topk_sheet import write_topk_sheet
    from ..images import prepare_output_dir

    from ..errors import NeuronscopeError
    from ..images import first_readable_image
    from ..outdir import check_output_dir

    if args.backend == "ray":
        from ..ray_pool import import_ray

        import_ray()  # before any work: without Ray, the install hint
    units = args.units
    out = Path(args.out or f"topk-{Path(str(args.model)).name.replace(':', '_')}")
    store_path = Path(args.store) if args.store else out / "store"
    resuming = Store.exists(store_path)
    check_output_dir(out, overwrite=args.overwrite, resume=resuming)
    if args.store and not resuming:
        check_output_dir(store_path, option="--store", overwrite_flag=None)
    first_readable_image(args.images)  # before anything is written
    prepare_output_dir(out, overwrite=args.overwrite, resume=resuming)
    model = load(args)
    if resuming:
        with Store.open(store_path) as s:
            prog = ", ".join(f"{l} {d}/{n}" for l, (d, n) in s.progress().items())
        print(f"reusing store {store_path} ({prog or 'no layers yet'})")
    result = run_topk(
        model, args.images, args.layers, k=args.k, store=store_path, batch_size=args.batch_size,
        size=args.size, checkpoint_seconds=args.checkpoint_seconds, progress=not args.quiet,
        backend=args.backend, workers=args.workers, ray_address=args.ray_address, threads=args.threads,
        shard_size=args.shard_size, send_images=args.send_images,
    )
    store = result.store
    try:
        n_images = store.meta["n_images"]
        if len(store.failed_images()) >= n_images:
            raise NeuronscopeError(f"--images {args.images}: none of its {n_images} images could be read "
                                   f"(first: {store.failed_images()[0][0]}: {store.failed_images()[0][1]})")
        if result.images_processed:
            print(f"{result.images_processed} images in {result.seconds:.1f} s ({result.images_per_second:.1f} images/s)"
                  + (f"; Ray start-up {result.startup_seconds:.1f} s not counted" if result.startup_seconds else ""))
        for path, reason in store.failed_images():
            print(f"skipped unreadable image {path}: {reason}")
        if not args.no_sheets:
            for layer in args.layers:
                chosen = units
                if units is not None:
                    chosen = [u for u in units if u < store.units(layer)]
                    if len(chosen) < len(units):
                        print(f"{layer} has {store.units(layer)} units; left out {len(units) - len(chosen)} beyond that")
                png, html = write_topk_sheet(store, layer, out, units=chosen)
                print(f"{layer}: {html}  {png}")
        print(f"store: {store.path}")
    finally:
        store.close()
