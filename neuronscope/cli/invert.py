"""``neuronscope invert MODEL IMAGE --layers L1 L2 ...``: reconstruct a photo from each layer's code."""

from __future__ import annotations

from pathlib import Path

from ._common import add_model_argument


def add_parser(sub):
    p = sub.add_parser(
        "invert",
        help="reconstruct an image from what a layer keeps of it (Mahendran & Vedaldi 2015)",
        description=(
            "Writes OUT/sheet.png (the original as the network sees it, then one reconstruction per layer, "
            "shallow to deep, captioned with the Pearson correlation to the original), OUT/LAYER.png per layer "
            "and OUT/manifest.json."
        ),
    )
    add_model_argument(p)
    p.add_argument("image", help="image file")
    p.add_argument("--layers", nargs="+", required=True, metavar="L",
                   help="layers to invert, e.g. stem blocks.2 blocks.5 blocks.9 blocks.13 head")
    p.add_argument("--steps", type=int, default=300, help="optimization steps (default 300)")
    p.add_argument("--size", type=int, default=None, help="image size in pixels (default: the model's)")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                   help="adam (default) or the paper's SGD with momentum and step schedule")
    p.add_argument("--lr", type=float, default=None, help="step size (default 0.05 adam, 0.004 sgd)")
    p.add_argument("--tv", type=float, default=None,
                   help="one TV weight lambda_V for all layers (default: the paper's 1/10/100 by depth)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default invert-IMAGE)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    return p


def run(args):
    import time

    from ..errors import NeuronscopeError
    from ..images import atomic_write_json, center_crop_resize, labelled_grid, load_image, pil_to_tensor, prepare_output_dir, save_png
    from ..inversion import invert
    from ..taps import resolve
    from ._common import load

    if not 1 <= args.steps <= 100_000:
        raise NeuronscopeError(f"--steps {args.steps} is out of range; valid 1..100000")
    if args.size is not None and not 16 <= args.size <= 1024:
        raise NeuronscopeError(f"--size {args.size} is out of range; valid 16..1024 pixels")
    if args.lr is not None and not args.lr > 0:
        raise NeuronscopeError(f"--lr must be > 0, got {args.lr}")
    if args.tv is not None and args.tv < 0:
        raise NeuronscopeError(f"--tv must be >= 0, got {args.tv}")
    img = load_image(args.image)
    model = load(args)
    for name in args.layers:
        if resolve(model, name).path == "input":
            raise NeuronscopeError("layer 'input' is the image itself; choose network layers to invert")
    out = prepare_output_dir(args.out or f"invert-{Path(args.image).stem}", overwrite=args.overwrite)
    size = args.size or model.input_size
    x0 = pil_to_tensor(center_crop_resize(img, size, model.info.eval_resize))
    start = time.perf_counter()
    result = invert(model, x0, args.layers, steps=args.steps, optimizer=args.optimizer, lr=args.lr,
                    lambda_tv=args.tv, seed=args.seed)
    elapsed = time.perf_counter() - start
    captions = [f"original {size}px\n{Path(args.image).name}"]
    for layer, r in zip(result.layers, result.correlation):
        captions.append(f"{layer}\nr = {r:.3f}")
    sheet = labelled_grid([result.original, *result.images], captions, columns=len(result.layers) + 1,
                          cell=min(size, 224))
    save_png(sheet, out / "sheet.png")
    files = {}
    for layer, im in zip(result.layers, result.images):
        fname = "".join(c if c.isalnum() or c in "._-" else "_" for c in layer) + ".png"
        save_png(im, out / fname)
        files[layer] = fname
    manifest = result.manifest()
    manifest.update({"model": model.name, "image": str(args.image), "seconds": round(elapsed, 1), "sheet": "sheet.png"})
    for row in manifest["layers"]:
        row["file"] = files[row["layer"]]
    atomic_write_json(out / "manifest.json", manifest)
    for row in manifest["layers"]:
        print(f"  {row['layer']:<12} r = {row['correlation']:.3f}  feature error {row['feature_error']:.4f}")
    print(f"wrote {out}/sheet.png and manifest.json ({elapsed:.1f} s)")
    return 0
