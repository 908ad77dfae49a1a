"""``neuronscope invert MODEL IMAGE --layers L1 L2 ...``: reconstruct a photo from each layer's code."""

from __future__ import annotations

from pathlib import Path

from ._common import add_model_argument, add_out_arguments, add_seed_argument, int_range, non_negative_float, positive_float


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
    p.add_argument("--steps", type=int_range(1, 100_000), default=300, help="optimization steps (default 300)")
    p.add_argument("--size", type=int_range(16, 1024, "pixels"), default=None, help="image size in pixels (default: the model's)")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                   help="adam (default) or the paper's SGD with momentum and step schedule")
    p.add_argument("--lr", type=positive_float, default=None, help="step size (default 0.05 adam, 0.004 sgd)")
    p.add_argument("--tv", type=non_negative_float, default=None,
                   help="one TV weight lambda_V for all layers (default: the paper's 1/10/100 by depth)")
    add_seed_argument(p)
    add_out_arguments(p, shown="invert-IMAGE", overwrite="replace a non-empty output folder")
    return p


def run(args):
    import time

    from ..errors import NeuronscopeError
    from ..images import atomic_write_json, center_crop_resize, labelled_grid, load_image, pil_to_tensor, save_png
    from ..inversion import invert
    from ..outdir import building_output_dir, check_output_dir
    from ..taps import resolve
    from ._common import load

    out = check_output_dir(args.out or f"invert-{Path(args.image).stem}", overwrite=args.overwrite, in_place=False)
    img = load_image(args.image)
    model = load(args)
    for name in args.layers:
        if resolve(model, name).path == "input":
            raise NeuronscopeError("layer 'input' is the image itself; choose network layers to invert")
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
    files = {layer: "".join(c if c.isalnum() or c in "._-" else "_" for c in layer) + ".png" for layer in result.layers}
    manifest = result.manifest()
    manifest.update({"model": model.name, "image": str(args.image), "seconds": round(elapsed, 1), "sheet": "sheet.png",
                     "status": "complete"})
    for row in manifest["layers"]:
        row["file"] = files[row["layer"]]
    with building_output_dir(out, overwrite=args.overwrite) as tmp:
        save_png(sheet, tmp / "sheet.png")
        for layer, im in zip(result.layers, result.images):
            save_png(im, tmp / files[layer])
        atomic_write_json(tmp / "manifest.json", manifest)
    for row in manifest["layers"]:
        print(f"  {row['layer']:<12} r = {row['correlation']:.3f}  feature error {row['feature_error']:.4f}")
    print(f"wrote {out}/sheet.png and manifest.json ({elapsed:.1f} s)")
    return 0
