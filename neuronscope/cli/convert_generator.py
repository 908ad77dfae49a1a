"""``neuronscope convert-generator SOURCE --arch ARCH --out FOLDER``: the seeds' generators as neuronscope generators.

Caffe (DGN-AM / PPGN, the DeePSiM "upconv" networks that invert CaffeNet):

  neuronscope convert-generator generator.caffemodel --arch deepsim-fc6 \\
      --prototxt generator.prototxt --act-range act_range/3x/fc6.txt --out fc6

SOURCE is the generator.caffemodel: fc6/generator.caffemodel (also pool5/,
fc7/) of release_deepsim_v0.zip, which DGN-AM's nets/upconv/download.sh
fetches from https://lmb.informatik.uni-freiburg.de/resources/binaries/arxiv2016_alexnet_inversion_with_gans/
or PPGN's fc6 generator http://s.anhnguyen.me/181007__generator.caffemodel. The
prototxt and act_range/3x/fc6.txt are in github.com/Evolving-AI-Lab/synthesizing
(nets/upconv/fc6/generator.prototxt, act_range/). The
prototxt is optional for deepsim-fc6 (the released layer list is built in) and
required for deepsim-fc7, deepsim-pool5 and caffe (any other feed-forward Caffe
generator, with --code-layer naming the CaffeNet layer it inverts). --act-range (DGN-AM's
act_range/3x/fc6.txt) gives the clipping box, --codes (an (N, D) array of real
codes) the measured mean/std and a box; one of them is required.

BigGAN (pytorch-pretrained-biggan, `pip install 'neuronscope[biggan]'`):

  neuronscope convert-generator biggan-deep-256 --arch biggan --truncation 0.4 --out biggan

SOURCE is a folder with pytorch_model.bin + config.json, or a released name
already in the package's download cache.

--out is a folder, like every verb's (default generator-ARCH): it receives
generator.pt and manifest.json (what was converted, from which files and with which
options), built next to it and renamed into place, so nothing of yours is
overwritten (a non-empty folder needs --overwrite) and an interrupted
conversion leaves nothing. The folder (or the generator.pt in it) works with
`dgn`, `sample` and `inpaint --generator FOLDER` for any classifier.
"""

from __future__ import annotations


from ._common import add_out_arguments, float_range


def add_parser(sub):
    from ..generators.caffe_deepsim import ARCHS

    archs = list(ARCHS) + ["biggan"]
    p = sub.add_parser("convert-generator", help="convert DGN-AM/PPGN Caffe generators or BigGAN for dgn / sample / inpaint",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("source", help="generator.caffemodel, or for --arch biggan a folder (pytorch_model.bin + config.json) "
                   "or a cached released name (biggan-deep-128/256/512)")
    p.add_argument("--arch", required=True, choices=archs, help="the generator's architecture")
    p.add_argument("--prototxt", default=None, help="the generator's .prototxt (optional for deepsim-fc6)")
    p.add_argument("--code-layer", default=None, help="the CaffeNet layer the code inverts, for --arch caffe (any other "
                   "feed-forward Caffe generator; its prototxt gives the code size)")
    p.add_argument("--act-range", default=None, help="per-unit upper bounds of the code (DGN-AM's act_range/3x/fc6.txt)")
    p.add_argument("--codes", default=None, help="real codes, an (N, D) .npy / .pt / text file: mean, std and box from them")
    p.add_argument("--no-crop", action="store_true", help="keep the Caffe generator's full 256 px output (default: the "
                   "centre 227 px crop the seeds' scripts use)")
    p.add_argument("--truncation", type=float_range(0.0, 1.0, lo_open=True), default=0.4, help="BigGAN truncation in (0, 1] (default 0.4)")
    p.add_argument("--full-precision", action="store_true", help="store float32 weights (default float16, half the file)")
    add_out_arguments(p, shown="generator-ARCH", what="folder to write generator.pt and manifest.json into",
                      overwrite="replace a non-empty --out folder")
    return p


def run(args):
    import hashlib
    import shlex
    from pathlib import Path

    from ..errors import NeuronscopeError
    from ..generators.base import GENERATOR_FILE
    from ..images import atomic_write_json
    from ..outdir import building_output_dir, check_output_dir

    out = Path(args.out or f"generator-{args.arch}")
    if out.suffix.lower() in (".pt", ".pth", ".bin") and not out.is_dir():
        raise NeuronscopeError(f"--out {out} looks like a file name; --out is a folder (like every verb's) that will "
                               f"hold {GENERATOR_FILE} and manifest.json, e.g. --out {out.with_suffix('')}")
    check_output_dir(out, overwrite=args.overwrite, in_place=False)  # before the (long) conversion
    if args.arch == "biggan":
        if args.prototxt or args.act_range or args.codes or args.code_layer:
            raise NeuronscopeError("--prototxt, --code-layer, --act-range and --codes are for Caffe generators, not --arch biggan")
        from ..generators.biggan import biggan_generator

        gen = biggan_generator(args.source, truncation=args.truncation)
    else:
        from ..generators.caffe_deepsim import convert

        gen = convert(args.source, arch=args.arch, prototxt=args.prototxt, act_range=args.act_range, codes=args.codes,
                      crop=None if args.no_crop else 227, code_layer=args.code_layer)
    m = gen.meta
    with building_output_dir(out, overwrite=args.overwrite) as tmp:
        written = gen.save(tmp / GENERATOR_FILE, half=not args.full_precision)
        data = written.read_bytes()
        atomic_write_json(tmp / "manifest.json", {
            "what": "a neuronscope generator converted by `neuronscope convert-generator`",
            "generator": GENERATOR_FILE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "weights": "float32" if args.full_precision else "float16",
            "arch": m.get("arch", args.arch), "source": str(args.source),
            "prototxt": args.prototxt, "act_range": args.act_range, "codes": args.codes, "code_layer": gen.spec.layer,
            "code_size": gen.code_dim, "image_size": m.get("image_size"),
            "truncation": args.truncation if args.arch == "biggan" else None,
            "crop": None if args.arch == "biggan" or args.no_crop else 227,
            "paper_dgn_lr": m.get("paper_dgn_lr"),
            "status": "complete",
        })
    print(f"wrote {out}/{GENERATOR_FILE} and manifest.json: {m['arch']} generator, code {gen.code_dim} values "
          f"({gen.spec.layer}), {m['image_size']} px images")
    if m.get("stats"):
        print(f"code statistics: {m['stats']}")
    if m.get("unused_caffemodel_layers"):
        print(f"caffemodel layers not in the prototxt (ignored): {', '.join(m['unused_caffemodel_layers'])}")
    if m.get("paper_dgn_lr"):
        print(f"DGN-AM's step of 8 is `neuronscope dgn ... --lr {m['paper_dgn_lr']:g}` with this generator")
    print(f"use it with: neuronscope dgn MODEL class:NAME --generator {shlex.quote(str(out))}")
    return 0
