"""``neuronscope convert-generator SOURCE --arch ARCH --out G.pt``: the seeds' generators as neuronscope generators.

Caffe (DGN-AM / PPGN, the DeePSiM "upconv" networks that invert CaffeNet):

  neuronscope convert-generator generator.caffemodel --arch deepsim-fc6 \\
      --prototxt generator.prototxt --act-range act_range/3x/fc6.txt --out fc6.pt

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

  neuronscope convert-generator biggan-deep-256 --arch biggan --truncation 0.4 --out biggan.pt

SOURCE is a folder with pytorch_model.bin + config.json, or a released name
already in the package's download cache. The written file works with
`dgn`, `sample` and `inpaint --generator G.pt` for any classifier.
"""

from __future__ import annotations


from ._common import float_range


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
    p.add_argument("--out", required=True, help="the generator file to write (.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return p


def run(args):
    from pathlib import Path

    from ..errors import NeuronscopeError

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise NeuronscopeError(f"{out} exists; pass --overwrite to replace it or choose another --out")
    if out.exists() and out.is_dir():
        raise NeuronscopeError(f"--out {out} is a folder; give a file name such as fc6.pt")
    if args.arch == "biggan":
        if args.prototxt or args.act_range or args.codes or args.code_layer:
            raise NeuronscopeError("--prototxt, --code-layer, --act-range and --codes are for Caffe generators, not --arch biggan")
        from ..generators.biggan import biggan_generator

        gen = biggan_generator(args.source, truncation=args.truncation)
    else:
        from ..generators.caffe_deepsim import convert

        gen = convert(args.source, arch=args.arch, prototxt=args.prototxt, act_range=args.act_range, codes=args.codes,
                      crop=None if args.no_crop else 227, code_layer=args.code_layer)
    path = gen.save(out, half=not args.full_precision)
    m = gen.meta
    print(f"wrote {path}: {m['arch']} generator, code {gen.code_dim} values ({gen.spec.layer}), "
          f"{m['image_size']} px images")
    if m.get("stats"):
        print(f"code statistics: {m['stats']}")
    if m.get("unused_caffemodel_layers"):
        print(f"caffemodel layers not in the prototxt (ignored): {', '.join(m['unused_caffemodel_layers'])}")
    if m.get("paper_dgn_lr"):
        print(f"DGN-AM's step of 8 is `neuronscope dgn ... --lr {m['paper_dgn_lr']:g}` with this generator")
    print(f"use it with: neuronscope dgn MODEL class:NAME --generator {path}")
    return 0
