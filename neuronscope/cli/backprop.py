"""``neuronscope backprop MODEL IMAGE TARGET``: gradient, DeconvNet and guided backprop views."""

from __future__ import annotations

from pathlib import Path

from ._common import add_model_argument


def add_parser(sub):
    p = sub.add_parser(
        "backprop",
        help="send one unit back to the image: plain gradient, DeconvNet or guided backprop",
        description=(
            "Writes a PNG: the input as the network sees it, then one view per mode and display filter. "
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
    p.add_argument("--size", type=int, default=None, help="input size in pixels (default: the model's)")
    p.add_argument("--blur", type=float, default=4.0, help="Gaussian sigma in pixels for normblur (default 4)")
    p.add_argument("--out", default=None, help="output PNG (default backprop-IMAGE-TARGET.png)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return p


def _default_out(image: str, target: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in target)
    return Path(f"backprop-{Path(image).stem}-{safe}.png")


def run(args):
    import torch

    from ..attribution import MODES, backward_view, render_view
    from ..errors import NeuronscopeError
    from ..images import center_crop_resize, labelled_grid, load_image, pil_to_tensor, save_png
    from ..units import parse_unit
    from ._common import load

    out = Path(args.out) if args.out else _default_out(args.image, args.target)
    if out.suffix.lower() != ".png":
        raise NeuronscopeError(f"--out {out} must end in .png")
    if out.exists() and not args.overwrite:
        raise NeuronscopeError(f"output file {out} already exists; choose another --out or pass --overwrite")
    if out.is_dir():
        raise NeuronscopeError(f"--out {out} is a folder; give a .png file name")
    if args.size is not None and not 16 <= args.size <= 2048:
        raise NeuronscopeError(f"--size {args.size} is out of range; valid 16..2048 pixels")
    if args.blur < 0:
        raise NeuronscopeError(f"--blur {args.blur} must be >= 0")
    img = load_image(args.image)
    model = load(args)
    size = args.size or model.input_size
    target = parse_unit(model, args.target, size=size)
    layer, unit, position = target.layer, target.index, target.position
    x = pil_to_tensor(center_crop_resize(img, size, model.info.eval_resize)).unsqueeze(0)
    seed = args.seed or ("ones" if layer == "logits" else "activation")
    modes = MODES if args.mode == "all" else (args.mode,)
    name = target.class_name if target.is_class else target.name
    cells, captions = [x[0]], [f"input {size}px\n{name}"]
    for mode in modes:
        g = backward_view(model, x, layer, unit, mode=mode, position=position, seed=seed)
        empty = not bool(torch.any(g != 0))
        for f in args.filter:
            cells.append(render_view(g, f, blur_sigma=args.blur)[0])
            captions.append(f"{mode} / {f}\n{'(all zero)' if empty else f'seed {seed}'}")
    sheet = labelled_grid(cells, captions, columns=len(cells), cell=min(size, 256))
    save_png(sheet, out)
    print(f"wrote {out} ({len(cells) - 1} views of {name} on {args.image})")
    return 0
