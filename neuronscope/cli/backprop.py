"""``neuronscope backprop MODEL IMAGE TARGET``: gradient, DeconvNet and guided backprop views."""

from __future__ import annotations

from pathlib import Path

from ._common import add_model_argument, add_out_arguments, non_negative_float, size_px


def add_parser(sub):
    p = sub.add_parser(
        "backprop",
        help="send one unit back to the image: plain gradient, DeconvNet or guided backprop",
        description=(
            "Writes OUT/sheet.png (the input as the network sees it, then one view per mode and display filter), "
            "one PNG per view and OUT/manifest.json. "
            "TARGET is LAYER:CHANNEL (blocks.10:5), LAYER:CHANNEL@X,Y for one neuron (blocks.10:5@3,4) "
            "or class:NAME|INDEX (class:espresso, class:967)."
        ),
    )
    add_model_argument(p)
    p.add_argument("image", help="image file")
    p.add_argument("target", help="LAYER:CHANNEL, LAYER:CHANNEL@X,Y or class:NAME|INDEX")
    p.add_argument("--mode", choices=["gradient", "deconv", "guided", "all"], default="all",
                   help="backward rule at the ReLUs (default all three)")
    p.add_argument("--filter", nargs="+", choices=["raw", "gray", "norm", "normblur"], default=["raw"],
                   help="display filters of the 2015 toolbox's back pane (default raw)")
    p.add_argument("--seed", choices=["activation", "ones"], default=None,
                   help="start signal: the unit's own activation map (toolbox default for layers) "
                        "or ones (default for class targets, whose logit may be negative)")
    p.add_argument("--size", type=size_px, default=None, help="input size in pixels (default: the model's)")
    p.add_argument("--blur", type=non_negative_float, default=4.0, help="Gaussian sigma in pixels for normblur (default 4)")
    add_out_arguments(p, shown="backprop-IMAGE-TARGET", overwrite="replace a non-empty output folder")
    return p


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


def _default_out(image: str, target: str) -> Path:
    return Path(f"backprop-{Path(image).stem}-{_safe(target)}")


def run(args):
    import torch

    from ..attribution import MODES, backward_view, render_view
    from ..errors import NeuronscopeError
    from ..images import atomic_write_json, center_crop_resize, labelled_grid, load_image, pil_to_tensor, save_png
    from ..outdir import building_output_dir, check_output_dir
    from ..units import parse_unit
    from ._common import load

    out = Path(args.out) if args.out else _default_out(args.image, args.target)
    if out.suffix.lower() in (".png", ".jpg", ".jpeg") and not out.is_dir():
        raise NeuronscopeError(f"--out {out} looks like a file name; --out is a folder (like every verb's), "
                               f"e.g. --out {out.with_suffix('')}")
    check_output_dir(out, overwrite=args.overwrite, in_place=False)
    img = load_image(args.image)
    model = load(args)
    size = args.size or model.input_size
    target = parse_unit(model, args.target, size=size)
    layer, unit, position = target.layer, target.index, target.position
    x = pil_to_tensor(center_crop_resize(img, size, model.info.eval_resize)).unsqueeze(0)
    seed = args.seed or ("ones" if layer == "logits" else "activation")
    modes = MODES if args.mode == "all" else (args.mode,)
    name = target.class_name if target.is_class else target.name
    cells, captions, views = [x[0]], [f"input {size}px\n{name}"], []
    for mode in modes:
        g = backward_view(model, x, layer, unit, mode=mode, position=position, seed=seed)
        empty = not bool(torch.any(g != 0))
        for f in args.filter:
            cells.append(render_view(g, f, blur_sigma=args.blur)[0])
            captions.append(f"{mode} / {f}\n{'(all zero)' if empty else f'seed {seed}'}")
            views.append({"mode": mode, "filter": f, "all_zero": empty, "file": f"{mode}_{f}.png"})
    sheet = labelled_grid(cells, captions, columns=len(cells), cell=min(size, 256))
    with building_output_dir(out, overwrite=args.overwrite) as tmp:
        save_png(sheet, tmp / "sheet.png")
        for v, cell in zip(views, cells[1:]):
            save_png(cell, tmp / v["file"])
        save_png(x[0], tmp / "input.png")
        atomic_write_json(tmp / "manifest.json", {
            "model": model.name, "image": str(args.image), "target": args.target, "unit": name, "size": size,
            "seed": seed, "blur": args.blur, "input": "input.png", "sheet": "sheet.png", "views": views,
            "status": "complete"})
    print(f"wrote {out}/sheet.png ({len(cells) - 1} views of {name} on {args.image}) and manifest.json")
    return 0
