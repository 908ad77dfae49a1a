"""The released Caffe generators of DGN-AM and PPGN (DeePSiM "upconv" nets) as neuronscope generators.

DGN-AM (Nguyen et al. 2016) and PPGN (Nguyen et al. 2017) search the code space
of generators by Dosovitskiy & Brox (2016) that invert a CaffeNet layer. The
fc6 generator, from its released prototxt: the 4,096-d fc6 code goes through
three 4,096-unit fully connected layers (defc7, defc6, defc5), is reshaped to
256 x 4 x 4 and upsampled by deconvolutions (4x4, stride 2, pad 1) with
3x3 stride-1 layers between them (deconv5 256, conv5_1 512, deconv4 256,
conv4_1 256, deconv3 128, conv3_1 128, deconv2 64, deconv1 32, deconv0 3),
every layer but the last followed by a leaky ReLU of slope 0.3. deconv0 is a
256 x 256 BGR image with the ImageNet channel mean (104, 117, 123) subtracted,
in 0-255 units; the seeds' scripts crop its centre 227 x 227 for CaffeNet.
Here the output is that crop, in RGB, mapped to [0, 1].

:func:`convert` builds the network from the prototxt (or the built-in fc6
layer list), checks it against the caffemodel and attaches the code statistics
and clipping box: DGN-AM's ``act_range/3x/fc6.txt`` (per-unit upper bounds,
lower bound 0) and/or codes the user computed (mean, std and the box
[0, mu + 3 sigma] per unit). The generator can drive any classifier (DGN-AM
visualised other networks than CaffeNet with it); only the cycle prior and
encoding photos need CaffeNet itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import NeuronscopeError
from .base import CodeSpec, CodeStats, Generator
from .caffe_model import layers_by_name, read_caffemodel
from .caffe_net import CaffeNet, check_caffe_weights, infer_shapes, load_caffe_weights
from .caffe_prototxt import read_prototxt

DEEPSIM_ZIP = "https://lmb.informatik.uni-freiburg.de/resources/binaries/arxiv2016_alexnet_inversion_with_gans/release_deepsim_v0.zip"
PPGN_GENERATOR = "http://s.anhnguyen.me/181007__generator.caffemodel"
SYNTHESIZING = "https://github.com/Evolving-AI-Lab/synthesizing"
PPGN_REPO = "https://github.com/Evolving-AI-Lab/ppgn"
MEAN_BGR = (104.0, 117.0, 123.0)

# arch -> what the released generator inverts and where the seeds' code published its files.
ARCHS: dict[str, dict[str, Any]] = {
    "deepsim-fc6": dict(layer="fc6", code_shape=(4096,), builtin=True,
                        caffemodel=f"fc6/generator.caffemodel in {DEEPSIM_ZIP} (DGN-AM: {SYNTHESIZING} nets/upconv/download.sh), "
                                   f"or PPGN's fc6 generator {PPGN_GENERATOR} ({PPGN_REPO} nets/generator/noiseless/download.sh)",
                        prototxt=f"nets/upconv/fc6/generator.prototxt in {SYNTHESIZING} (or nets/generator/noiseless/generator.prototxt in {PPGN_REPO})",
                        act_range=f"act_range/3x/fc6.txt in {SYNTHESIZING}"),
    "deepsim-fc7": dict(layer="fc7", code_shape=(4096,), builtin=False,
                        caffemodel=f"fc7/generator.caffemodel in {DEEPSIM_ZIP} ({SYNTHESIZING} nets/upconv/download.sh)",
                        prototxt=f"fc7/generator.prototxt in {DEEPSIM_ZIP}",
                        act_range=f"act_range/3x/fc7.txt in {SYNTHESIZING}"),
    "deepsim-pool5": dict(layer="pool5", code_shape=(256, 6, 6), builtin=False,
                          caffemodel=f"pool5/generator.caffemodel in {DEEPSIM_ZIP} ({SYNTHESIZING} nets/upconv/download.sh)",
                          prototxt=f"pool5/generator.prototxt in {DEEPSIM_ZIP}",
                          act_range=f"act_range/2x/pool5.txt (1x/ and 2x/ only) in {SYNTHESIZING}"),
    # Any other feed-forward Caffe generator (e.g. the DeePSiM conv-layer inversions): the prototxt
    # is required and gives the code size; --code-layer names the layer it inverts.
    "caffe": dict(layer=None, code_shape=None, builtin=False,
                  caffemodel="its release (the DeePSiM ones in " + DEEPSIM_ZIP + ")",
                  prototxt="its release, next to the caffemodel",
                  act_range=f"act_range/3x/LAYER.txt in {SYNTHESIZING} for CaffeNet layers"),
}


def _arch(name: str) -> dict[str, Any]:
    if name not in ARCHS:
        raise NeuronscopeError(f"unknown Caffe generator architecture {name!r}; valid: {', '.join(ARCHS)}")
    return ARCHS[name]


def fc6_layers(code_dim: int = 4096, fc: int = 4096, base: int = 256,
               stack: tuple[tuple[str, int, int], ...] | None = None) -> tuple[dict[str, list[int]], list[dict]]:
    """The fc6 generator's layer list, as the released prototxt defines it (sizes overridable for tests).

    ``stack`` lists (name, channels, kernel) of the deconvolution stack; kernel 4
    is a stride-2 upsampling, kernel 3 a stride-1 layer; all have pad 1.
    """
    if stack is None:
        stack = (("deconv5", 256, 4), ("conv5_1", 512, 3), ("deconv4", 256, 4), ("conv4_1", 256, 3),
                 ("deconv3", 128, 4), ("conv3_1", 128, 3), ("deconv2", 64, 4), ("deconv1", 32, 4), ("deconv0", 3, 4))
    layers: list[dict] = []

    def relu(blob):
        layers.append(dict(name=f"relu_{blob}", type="ReLU", bottom=[blob], top=[blob], negative_slope=0.3))

    prev = "feat"
    for name in ("defc7", "defc6", "defc5"):
        layers.append(dict(name=name, type="InnerProduct", bottom=[prev], top=[name], num_output=fc, bias_term=True, axis=1, transpose=False))
        relu(name)
        prev = name
    layers.append(dict(name="reshape", type="Reshape", bottom=[prev], top=["reshape_defc5"], dims=[1, base, 4, 4], axis=0, num_axes=-1))
    prev = "reshape_defc5"
    for i, (name, ch, k) in enumerate(stack):
        layers.append(dict(name=name, type="Deconvolution", bottom=[prev], top=[name], num_output=ch, kernel=(k, k),
                           stride=(2, 2) if k == 4 else (1, 1), pad=(1, 1), dilation=1, group=1, bias_term=True))
        if i < len(stack) - 1:
            relu(name)
        prev = name
    return {"feat": [1, code_dim]}, layers


def read_act_range(path: str | os.PathLike, dim: int, *, arch: str = "deepsim-fc6") -> torch.Tensor:
    """Per-unit upper bounds from a DGN-AM ``act_range`` text file (whitespace-separated numbers)."""
    p = Path(path)
    if not p.is_file():
        raise NeuronscopeError(f"act-range file not found: {p}; the seeds' code published it as {_arch(arch)['act_range']}")
    try:
        hi = np.array(p.read_text().split(), dtype=np.float32)
    except ValueError:
        raise NeuronscopeError(f"{p} is not an act_range file (whitespace-separated numbers, one upper bound per code unit)") from None
    if hi.size != dim:
        raise NeuronscopeError(f"{p} has {hi.size} upper bounds, the generator's code has {dim} units")
    if (hi <= 0).any():
        raise NeuronscopeError(f"{p}: upper bounds must be positive (lower bounds are 0, as DGN-AM's ReLU codes)")
    return torch.from_numpy(hi)


def read_codes(path: str | os.PathLike, dim: int) -> torch.Tensor:
    """An (N, dim) array of real codes from .npy, .pt/.pth (a tensor) or a text file (one code per line)."""
    p = Path(path)
    if not p.is_file():
        raise NeuronscopeError(f"codes file not found: {p}")
    try:
        if p.suffix == ".npy":
            arr = torch.from_numpy(np.load(p, allow_pickle=False)).float()
        elif p.suffix in (".pt", ".pth"):
            arr = torch.as_tensor(torch.load(p, map_location="cpu", weights_only=True)).float()
        else:
            arr = torch.from_numpy(np.loadtxt(p, ndmin=2)).float()
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise NeuronscopeError(f"cannot read codes from {p} ({type(e).__name__}: {e}); give an (N, {dim}) .npy, .pt or text file") from None
    arr = arr.reshape(arr.shape[0], -1) if arr.dim() > 1 else arr[None]
    if arr.shape[1] != dim or arr.shape[0] < 2:
        raise NeuronscopeError(f"{p} holds codes of shape {tuple(arr.shape)}; expected (N >= 2, {dim})")
    return arr


def code_stats(dim: int, *, act_range: str | os.PathLike | None = None, codes: str | os.PathLike | torch.Tensor | None = None,
               arch: str = "deepsim-fc6", k: float = 3.0) -> tuple[CodeStats, str]:
    """(stats, how they were made) from an act_range file, real codes, or both.

    * codes: mean and std per unit; box [0, mu + k sigma] (lower bound min(code) if codes go negative);
    * act_range: the box [0, upper bound] as DGN-AM; without codes, mean = 0 and
      std = upper / k (the spread the box implies around 0, for starting codes and step sizes);
    * both: the act_range box with the measured mean and std.
    """
    if act_range is None and codes is None:
        raise NeuronscopeError(
            "the generator needs code statistics and a clipping box: give --act-range (the seeds' "
            f"{_arch(arch)['act_range']}) or --codes (an (N, {dim}) array of the code layer's activations on real images)"
        )
    if codes is not None:
        arr = codes if isinstance(codes, torch.Tensor) else read_codes(codes, dim)
        stats = CodeStats.from_codes(arr, k=k, ceiling=float("inf"))
        how = f"mean/std of {arr.shape[0]} user codes"
    if act_range is not None:
        hi = read_act_range(act_range, dim, arch=arch)
        if codes is None:
            stats = CodeStats(torch.zeros(dim), hi / k, torch.zeros(dim), hi)
            how = f"box [0, act_range] from {Path(act_range).name}; mean 0, std = upper / {k:g}"
        else:
            stats = CodeStats(stats.mean, stats.std, torch.zeros(dim), hi)
            how += f"; box [0, act_range] from {Path(act_range).name}"
    else:
        how += f"; box [0 or min, mu + {k:g} sigma]"
    return stats, how


def convert(caffemodel: str | os.PathLike, *, arch: str = "deepsim-fc6", prototxt: str | os.PathLike | None = None,
            act_range=None, codes=None, crop: int | None = 227, code_layer: str | None = None) -> Generator:
    """A :class:`Generator` from a released Caffe generator (see the module doc).

    ``prototxt`` None uses the built-in fc6 layer list (``deepsim-fc6`` only).
    ``crop`` is the output's centre crop (227 as the seeds' scripts; None keeps the full output).
    ``code_layer`` names the CaffeNet layer the code inverts (arch ``caffe``; default: the arch's).
    """
    a = _arch(arch)
    layer_name = code_layer or a["layer"] or "code"
    cm = Path(caffemodel)
    if not cm.is_file():
        raise NeuronscopeError(f"caffemodel file not found: {cm}; the seeds' code published the {arch} generator as {a['caffemodel']}")
    if prototxt is not None and not Path(prototxt).is_file():
        raise NeuronscopeError(f"prototxt file not found: {prototxt}; the seeds' code published it as {a['prototxt']}")
    if act_range is not None and not Path(act_range).is_file():
        raise NeuronscopeError(f"act-range file not found: {act_range}; the seeds' code published it as {a['act_range']}")
    if act_range is None and codes is None:
        code_stats(0, arch=arch)  # raises: says which files would do
    if prototxt is not None:
        pt = Path(prototxt)
        inputs, layers = read_prototxt(pt)
        ptname = str(pt)
    elif a["builtin"]:
        inputs, layers = fc6_layers()
        ptname = "the built-in fc6 layer list"
    else:
        raise NeuronscopeError(f"--arch {arch} needs --prototxt (published as {a['prototxt']})")
    post = {"crop": crop, "mean_bgr": list(MEAN_BGR), "bgr": True}
    first = next(iter(inputs))
    shapes = infer_shapes({first: inputs[first]}, layers, source=ptname)
    code_dim = int(np.prod(inputs[first][1:]))
    want = int(np.prod(a["code_shape"])) if a["code_shape"] else code_dim
    if code_dim != want:
        raise NeuronscopeError(f"{ptname}: input {first!r} has {code_dim} values per code, an {arch} generator takes "
                               f"{want} ({a['layer']}, shape {a['code_shape']}); is --arch right?")
    out = shapes[layers[-1]["top"][0]][1:]
    if len(out) != 3 or out[0] != 3:
        raise NeuronscopeError(f"{ptname}: output blob {layers[-1]['top'][0]!r} has shape {tuple(out)}, not a 3-channel image")
    caffe_layers = layers_by_name(read_caffemodel(cm))
    check_caffe_weights(layers, shapes, caffe_layers, source=str(cm), prototxt=ptname)  # before building a big net
    net = CaffeNet(inputs, layers, post=post, source=ptname)
    unused = load_caffe_weights(net, caffe_layers, source=str(cm), prototxt=ptname)
    out = net.output_shape()
    stats, how = code_stats(want, act_range=act_range, codes=codes, arch=arch)
    size = out[-1]
    spec = CodeSpec(model="caffenet", layer=layer_name, grid=0, size=227)
    meta = {
        "image_size": size, "arch": arch, "any_classifier": True, "source": cm.name, "prototxt": Path(ptname).name if prototxt else ptname,
        "stats": how, "unused_caffemodel_layers": unused,
        "command": f"convert-generator {cm.name} --arch {arch}",
        # DGN-AM's step of 8 (in units of mean |d|) in neuronscope's step unit, the mean code std.
        "paper_dgn_lr": round(8.0 / max(float(stats.std.mean()), 1e-6), 4),
        "encoder": "CaffeNet (bvlc_reference_caffenet) " + layer_name,
    }
    return Generator(net, spec, stats, output_range=(0.0, 255.0), meta=meta)
