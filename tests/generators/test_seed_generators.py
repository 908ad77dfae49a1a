"""The seeds' generators without their weights: Caffe (DeePSiM fc6-style) and BigGAN.

A minimal protobuf writer here makes small caffemodels with random weights in
the real wire format; the converted network is checked against a direct numpy
implementation of the same layers. BigGAN runs on a small random config of
``pytorch-pretrained-biggan``.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from torch import nn

from neuronscope import load_model
from neuronscope.errors import NeuronscopeError
from neuronscope.generators import Generator
from neuronscope.generators.caffe_deepsim import MEAN_BGR, convert, fc6_layers
from neuronscope.generators.caffe_model import parse_caffemodel
from neuronscope.generators.caffe_prototxt import parse_prototxt, net_layers

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------- protobuf writer


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(field: int, wt: int) -> bytes:
    return _varint(field << 3 | wt)


def _ld(field: int, payload: bytes | str) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return _key(field, 2) + _varint(len(payload)) + payload


def _vi(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _blob(arr: np.ndarray, legacy: bool = False) -> bytes:
    data = _ld(5, np.ascontiguousarray(arr, dtype="<f4").tobytes())
    if legacy:  # BlobProto num/channels/height/width = fields 1-4
        dims = [1] * (4 - arr.ndim) + list(arr.shape)
        return b"".join(_vi(i + 1, d) for i, d in enumerate(dims)) + data
    return _ld(7, _ld(1, b"".join(_varint(d) for d in arr.shape))) + data


def write_caffemodel(layers: list[tuple[str, str, list[np.ndarray]]], *, v1: bool = False) -> bytes:
    """NetParameter with LayerParameter (field 100) or V1LayerParameter (field 2) entries."""
    v1_enum = {"InnerProduct": 14, "Deconvolution": 39, "Convolution": 4, "ReLU": 18, "Reshape": 0}
    out = _ld(1, "tiny_generator") + _vi(5, 1)  # name, force_backward
    for name, ltype, blobs in layers:
        if v1:
            body = _ld(2, "bottom") + _ld(3, "top") + _ld(4, name) + _vi(5, v1_enum[ltype])
            body += b"".join(_ld(6, _blob(b, legacy=True)) for b in blobs) + _key(7, 5) + struct.pack("<f", 1.0)
            out += _ld(2, body)
        else:
            body = _ld(1, name) + _ld(2, ltype) + _ld(3, "bottom") + _ld(4, "top")
            body += _ld(6, _vi(3, 1)) + _key(5, 5) + struct.pack("<f", 0.0)  # a ParamSpec and a loss_weight to skip
            body += b"".join(_ld(7, _blob(b)) for b in blobs) + _ld(106, _vi(1, 7))  # convolution_param to skip
            out += _ld(100, body)
    return out


# ----------------------------------------------------------------- a small fc6-style generator

STACK = (("deconv1", 6, 4), ("conv1_1", 5, 3), ("deconv0", 3, 4))  # 4 -> 8 -> 8 -> 16 px
CODE, FC, BASE = 8, 64, 4


def small_weights(seed: int = 0, layers=None):
    rng = np.random.default_rng(seed)
    inputs, layers = layers or fc6_layers(CODE, FC, BASE, STACK)
    shapes = {"feat": CODE}
    out = []
    prev_c = None
    for spec in layers:
        if spec["type"] == "InnerProduct":
            k = shapes.get(spec["bottom"][0], FC)
            out.append((spec["name"], "InnerProduct", [rng.normal(0, 1 / np.sqrt(k), (spec["num_output"], k)),
                                                       rng.normal(0, 0.1, spec["num_output"])]))
            shapes[spec["top"][0]] = spec["num_output"]
        elif spec["type"] == "Reshape":
            prev_c = BASE
        elif spec["type"] in ("Deconvolution", "Convolution"):
            k = spec["kernel"][0]
            shape = (prev_c, spec["num_output"], k, k) if spec["type"] == "Deconvolution" else (spec["num_output"], prev_c, k, k)
            out.append((spec["name"], spec["type"], [rng.normal(0, 1 / np.sqrt(prev_c * k), shape), rng.normal(0, 0.1, spec["num_output"])]))
            prev_c = spec["num_output"]
    out[-1][2][0] *= 300  # the last layer makes BGR pixel values in Caffe's 0-255 units
    out[-1][2][1] *= 300
    return out


def prototxt_text(layers) -> str:
    """The layers in the released prototxt's style (param blocks, engine, comments)."""
    lines = ['# a tiny generator', 'input: "feat"', "input_shape {", "  dim: 1", f"  dim: {CODE}", "}", "force_backward: true"]
    for s in layers:
        lines += ["layer {", f'  name: "{s["name"]}"', f'  type: "{s["type"]}"', f'  bottom: "{s["bottom"][0]}"', f'  top: "{s["top"][0]}"']
        if s["type"] == "InnerProduct":
            lines += ["  param { lr_mult: 1 decay_mult: 0 }", f"  inner_product_param {{ num_output: {s['num_output']} }}"]
        elif s["type"] == "ReLU":
            lines += [f"  relu_param {{ negative_slope: {s['negative_slope']} }}"]
        elif s["type"] == "Reshape":
            lines += ["  reshape_param {", "    shape { dim: 1 dim: %d dim: 4 dim: 4 }" % BASE, "  }"]
        else:
            lines += ["  convolution_param {", f"    num_output: {s['num_output']}", f"    pad: {s['pad'][0]}",
                      f"    kernel_size: {s['kernel'][0]}", f"    stride: {s['stride'][0]}", "    engine: CUDNN   # ignored", "  }"]
        lines.append("}")
    return "\n".join(lines) + "\n"


def np_deconv(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    _, o, k, _ = w.shape
    full = np.zeros((n, o, (h - 1) * stride + k, (wd - 1) * stride + k))
    for i in range(h):
        for j in range(wd):
            full[:, :, i * stride : i * stride + k, j * stride : j * stride + k] += np.einsum("nc,cokl->nokl", x[:, :, i, j], w)
    return full[:, :, pad : full.shape[2] - pad, pad : full.shape[3] - pad] + b[None, :, None, None]


def np_conv(x, w, b, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    o, c, k, _ = w.shape
    h, wd = x.shape[2] - k + 1, x.shape[3] - k + 1
    out = np.zeros((x.shape[0], o, h, wd))
    for i in range(h):
        for j in range(wd):
            out[:, :, i, j] = np.einsum("nckl,ockl->no", x[:, :, i : i + k, j : j + k], w)
    return out + b[None, :, None, None]


def np_generator(h, weights, layers, crop):
    """The same network in numpy, from the layer list and the raw weight arrays."""
    w = {name: blobs for name, _, blobs in weights}
    x = h.astype(np.float64)
    for s in layers:
        t = s["type"]
        if t == "InnerProduct":
            W, b = w[s["name"]]
            x = x.reshape(x.shape[0], -1) @ W.T + b
        elif t == "ReLU":
            x = np.where(x > 0, x, s["negative_slope"] * x)
        elif t == "Reshape":
            x = x.reshape(x.shape[0], BASE, 4, 4)
        elif t == "Deconvolution":
            x = np_deconv(x, *w[s["name"]], s["stride"][0], s["pad"][0])
        elif t == "Convolution":
            x = np_conv(x, *w[s["name"]], s["pad"][0])
    top = (x.shape[2] - crop) // 2
    x = x[:, :, top : top + crop, top : top + crop]
    x = x + np.array(MEAN_BGR)[None, :, None, None]
    return np.clip(x[:, ::-1] / 255.0, 0, 1)


@pytest.fixture(scope="module")
def caffe_files(tmp_path_factory):
    """(dir, layer list, weights): a prototxt with one Convolution layer and its caffemodel; an act_range file."""
    d = tmp_path_factory.mktemp("caffe")
    _, layers = fc6_layers(CODE, FC, BASE, STACK)
    layers = [dict(s, type="Convolution") if s["name"] == "conv1_1" else s for s in layers]
    weights = small_weights(0, ({"feat": [1, CODE]}, layers))
    (d / "generator.prototxt").write_text(prototxt_text(layers))
    (d / "generator.caffemodel").write_bytes(write_caffemodel(weights))
    (d / "fc6.txt").write_text(" ".join(f"{v:.3f}" for v in np.linspace(2, 5, CODE)) + "\n")
    return d, layers, weights


def test_caffemodel_reader_reads_names_types_shapes_and_floats_in_both_layer_formats():
    rng = np.random.default_rng(1)
    layers = [("fc", "InnerProduct", [rng.normal(size=(4, 6)), rng.normal(size=4)]), ("relu", "ReLU", []),
              ("up", "Deconvolution", [rng.normal(size=(4, 2, 3, 3)), rng.normal(size=2)])]
    for v1 in (False, True):
        got = parse_caffemodel(write_caffemodel(layers, v1=v1))
        assert [(l.name, l.type) for l in got] == [(n, t) for n, t, _ in layers]
        for (_, _, blobs), layer in zip(layers, got):
            assert len(layer.blobs) == len(blobs)
            for a, b in zip(blobs, layer.blobs):
                assert b.size == a.size and np.allclose(b.reshape(a.shape), a.astype(np.float32))
                if not v1:
                    assert b.shape == a.shape
    with pytest.raises(NeuronscopeError, match="not a readable Caffe model"):
        parse_caffemodel(write_caffemodel(layers)[:-7])
    with pytest.raises(NeuronscopeError, match="no Caffe layers"):
        parse_caffemodel(_ld(1, "empty"))


def test_prototxt_reader_keeps_the_layer_list_and_sizes(caffe_files):
    d, layers, _ = caffe_files
    inputs, got = net_layers(parse_prototxt((d / "generator.prototxt").read_text()))
    assert inputs == {"feat": [1, CODE]}
    assert [(s["name"], s["type"], s["bottom"], s["top"]) for s in got] == [(s["name"], s["type"], s["bottom"], s["top"]) for s in layers]
    deconv = next(s for s in got if s["name"] == "deconv1")
    assert (deconv["num_output"], deconv["kernel"], deconv["stride"], deconv["pad"]) == (6, (4, 4), (2, 2), (1, 1))
    assert next(s for s in got if s["type"] == "ReLU")["negative_slope"] == pytest.approx(0.3)
    assert next(s for s in got if s["type"] == "Reshape")["dims"] == [1, BASE, 4, 4]


def test_converted_caffe_generator_matches_a_numpy_implementation(caffe_files, tmp_path):
    d, layers, weights = caffe_files
    gen = convert(d / "generator.caffemodel", arch="caffe", code_layer="fc6", prototxt=d / "generator.prototxt", act_range=d / "fc6.txt", crop=12)
    assert gen.code_dim == CODE and gen.image_size == 12 and gen.meta["any_classifier"]
    h = torch.rand(3, CODE) * 4
    want = np_generator(h.numpy(), weights, layers, crop=12)
    got = gen(h).double().numpy()
    assert got.shape == (3, 3, 12, 12)
    assert 0.05 < float(((want > 0) & (want < 1)).mean()), "the test images should not be all clipped"
    assert np.abs(got - want).max() < 1e-4
    # the act_range box: [0, upper bound] per unit, as DGN-AM
    assert torch.equal(gen.code_lo, torch.zeros(CODE)) and torch.allclose(gen.code_hi, torch.linspace(2, 5, CODE), atol=1e-3)
    path = gen.save(tmp_path / "g.pt", half=False)
    g2 = Generator.load(path)
    assert torch.allclose(g2(h), gen(h), atol=1e-6) and g2.meta["arch"] == "caffe" and g2.spec.layer == "fc6"


def test_builtin_fc6_layer_list_and_stats_from_user_codes(tmp_path, monkeypatch):
    weights = small_weights(2)
    cm = tmp_path / "g.caffemodel"
    cm.write_bytes(write_caffemodel(weights, v1=True))  # legacy V1 layers, 4-D legacy blob shapes
    codes = np.abs(np.random.default_rng(3).normal(2, 1, (50, CODE))).astype(np.float32)
    np.save(tmp_path / "codes.npy", codes)
    # the built-in list is the full-size fc6 generator: a small caffemodel must be refused, naming the layer
    with pytest.raises(NeuronscopeError, match=r"defc7.*shape \(4096, 4096\).*\(1, 1, 64, 8\)"):
        convert(cm, codes=tmp_path / "codes.npy")
    from neuronscope.generators import caffe_deepsim

    # the same code path with the built-in list's sizes shrunk to the test's
    monkeypatch.setattr(caffe_deepsim, "fc6_layers", lambda: fc6_layers(CODE, FC, BASE, STACK))
    monkeypatch.setitem(caffe_deepsim.ARCHS["deepsim-fc6"], "code_shape", (CODE,))
    gen = convert(cm, codes=tmp_path / "codes.npy", crop=None)
    assert gen.spec.layer == "fc6" and gen.image_size == 16
    _, layers = fc6_layers(CODE, FC, BASE, STACK)
    h = torch.rand(2, CODE)
    assert np.abs(gen(h).double().numpy() - np_generator(h.numpy(), weights, layers, crop=16)).max() < 1e-4
    assert torch.allclose(gen.code_mean, torch.from_numpy(codes).mean(0), atol=1e-5)
    assert torch.allclose(gen.code_hi, torch.from_numpy(codes).mean(0) + 3 * torch.from_numpy(codes).std(0), atol=1e-4)


def test_prototxt_and_caffemodel_disagreeing_raise_naming_the_layer(caffe_files, tmp_path):
    d, layers, weights = caffe_files
    pt, ar = d / "generator.prototxt", d / "fc6.txt"
    missing = tmp_path / "missing.caffemodel"
    missing.write_bytes(write_caffemodel([w for w in weights if w[0] != "deconv0"]))
    with pytest.raises(NeuronscopeError, match="'deconv0' has no weights in the caffemodel"):
        convert(missing, arch="caffe", prototxt=pt, act_range=ar)
    bad = [(n, t, [b[0][:, :3] if n == "conv1_1" else b[0]] + b[1:]) for n, t, b in weights]
    (tmp_path / "bad.caffemodel").write_bytes(write_caffemodel(bad))
    with pytest.raises(NeuronscopeError, match=r"'conv1_1' \(Convolution\) weights should have shape \(5, 6, 3, 3\).*\(5, 3, 3, 3\)"):
        convert(tmp_path / "bad.caffemodel", arch="caffe", prototxt=pt, act_range=ar)
    nobias = [(n, t, b[:1]) if n == "defc6" else (n, t, b) for n, t, b in weights]
    (tmp_path / "nobias.caffemodel").write_bytes(write_caffemodel(nobias))
    with pytest.raises(NeuronscopeError, match="'defc6' needs 2 blob"):
        convert(tmp_path / "nobias.caffemodel", arch="caffe", prototxt=pt, act_range=ar)
    with pytest.raises(NeuronscopeError, match="takes 9216"):
        convert(d / "generator.caffemodel", arch="deepsim-pool5", prototxt=pt, act_range=ar)
    (tmp_path / "short.txt").write_text("1 2 3")
    with pytest.raises(NeuronscopeError, match="3 upper bounds.*8 units"):
        convert(d / "generator.caffemodel", arch="caffe", prototxt=pt, act_range=tmp_path / "short.txt")


def test_missing_files_say_where_the_seeds_published_them(caffe_files, tmp_path, capsys):
    from neuronscope.cli import main

    d, _, _ = caffe_files
    cases = [
        (["convert-generator", str(tmp_path / "generator.caffemodel"), "--arch", "deepsim-fc6"], "release_deepsim_v0.zip"),
        (["convert-generator", str(d / "generator.caffemodel"), "--arch", "deepsim-fc6", "--prototxt", str(tmp_path / "g.prototxt")],
         "nets/upconv/fc6/generator.prototxt"),
        (["convert-generator", str(d / "generator.caffemodel"), "--arch", "deepsim-fc6", "--prototxt", str(d / "generator.prototxt"),
          "--act-range", str(tmp_path / "fc6.txt")], "act_range/3x/fc6.txt in https://github.com/Evolving-AI-Lab/synthesizing"),
        (["convert-generator", str(d / "generator.caffemodel"), "--arch", "deepsim-fc6", "--prototxt", str(d / "generator.prototxt")],
         "give --act-range"),
        (["convert-generator", str(tmp_path), "--arch", "biggan"], "biggan-deep-256-pytorch_model.bin"),
        (["dgn", "efficientnet_lite0", "class:9", "--generator", str(tmp_path / "fc6.pt")], "convert-generator"),
    ]
    for argv, needle in cases:
        code = main(argv + ["--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.replace("\n", " ").replace("  ", " ")
        assert code == 2 and needle.replace(" ", "") in err.replace(" ", ""), (argv, err)
    assert not (tmp_path / "o").exists() and not any(p.name.startswith(".o.") for p in tmp_path.iterdir())


# ----------------------------------------------------------------- BigGAN


def small_biggan(seed: int = 0):
    pkg = pytest.importorskip("pytorch_pretrained_biggan")
    torch.manual_seed(seed)
    cfg = pkg.BigGANConfig(output_dim=32, z_dim=16, class_embed_dim=16, channel_width=4, num_classes=10,
                           layers=[(True, 16, 8), (False, 8, 8), (True, 8, 4), (True, 4, 2), (False, 2, 1)], attention_layer_position=2)
    model = pkg.BigGAN(cfg)
    with torch.no_grad():
        model.embeddings.weight.normal_(0, 0.5)
        model.generator.bn.weight.fill_(1.0)  # the package leaves the last batch norm's affine parameters uninitialised
        model.generator.bn.bias.zero_()
        model.train()  # power iterations, so that spectral norm's random u, v estimate sigma (the released weights carry theirs)
        for _ in range(10):
            model(torch.zeros(1, 16), torch.eye(10)[:1], 0.5)
        model.eval()
    return model


def test_biggan_adapter_code_is_noise_plus_class_embedding(tmp_path):
    from neuronscope.generators.biggan import biggan_generator, class_codes

    model = small_biggan()
    gen = biggan_generator(model, truncation=0.5, name="tiny-biggan")
    assert gen.code_dim == 32 and gen.image_size == 32
    # the box: z within BigGAN's truncation [-2t, 2t]; the embedding part covers every class embedding
    assert torch.allclose(gen.code_lo[:16], torch.full((16,), -1.0)) and torch.allclose(gen.code_hi[:16], torch.ones(16))
    emb = model.embeddings.weight.t()
    assert torch.all(emb >= gen.code_lo[16:]) and torch.all(emb <= gen.code_hi[16:])
    h = class_codes(gen, [3, 7], seed=1)
    assert torch.all(h[:, :16].abs() <= 1.0) and torch.equal(h[:, 16:], emb[[3, 7]])
    with torch.no_grad():
        want = (model(h[:, :16], torch.eye(10)[[3, 7]], 0.5) + 1) / 2
        got = gen(h)
    assert got.shape == (2, 3, 32, 32) and torch.allclose(got, want.clamp(0, 1), atol=1e-6)
    path = gen.save(tmp_path / "b.pt", half=False)
    g2 = Generator.load(path)
    assert torch.allclose(g2(h), got, atol=1e-6) and g2.meta["truncation"] == 0.5


def test_biggan_missing_weights_name_the_file_and_url(tmp_path):
    from neuronscope.generators.biggan import load_pretrained

    pytest.importorskip("pytorch_pretrained_biggan")
    with pytest.raises(NeuronscopeError, match=r"pytorch_model.bin.*s3.amazonaws.com/models.huggingface.co/biggan/biggan-deep-256-pytorch_model.bin"):
        load_pretrained(tmp_path)
    with pytest.raises(NeuronscopeError, match="not in pytorch-pretrained-biggan's cache"):
        load_pretrained("biggan-deep-128", cache_dir=tmp_path)
    model = small_biggan()
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    loaded = load_pretrained(tmp_path)
    assert torch.equal(loaded.embeddings.weight, model.embeddings.weight)


class Tiny(nn.Module):
    """A small classifier the generators were never made for."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.feat = nn.ReLU()
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            self.conv.weight.mul_(5)
            self.fc.weight.mul_(5)

    def forward(self, x):
        return self.fc(self.feat(self.conv(x)).mean((2, 3)))


def test_dgn_am_and_ppgn_gauss_steer_both_generators_with_another_classifier(caffe_files):
    from neuronscope.generators.biggan import biggan_generator
    from neuronscope.generators.conditions import Condition
    from neuronscope.generators.dgn_am import dgn_am
    from neuronscope.generators.ppgn import sample

    torch.manual_seed(0)
    model = load_model(Tiny(), preprocess="none", input_size=16, labels=list("abcd"), name="tiny")
    d, _, _ = caffe_files
    gens = [convert(d / "generator.caffemodel", arch="caffe", code_layer="fc6", prototxt=d / "generator.prototxt", act_range=d / "fc6.txt", crop=12),
            biggan_generator(small_biggan(), truncation=0.5)]
    for gen in gens:
        init = gen.random_codes(2, seed=3)
        cond = Condition(model, ["class:2", "class:0"], size=16)
        with torch.no_grad():
            before = cond(gen(init))
        res, _ = dgn_am(gen, model, ["class:2", "class:0"], steps=25, lr=0.5, lr_end=0.01, init=init, size=16, progress=False, refine=0)
        assert torch.all(res.values > before), (gen.meta["arch"], before, res.values)
        assert torch.all(res.codes >= gen.code_lo - 1e-5) and torch.all(res.codes <= gen.code_hi + 1e-5)
        res, rows = sample(gen, model, ["class:1"], n=2, variant="ppgn-gauss", steps=6, burn_in=0, save_every=3, size=16, progress=False, refine=0)
        assert len(rows) == 2 and len(res.frames) == 2 and res.images.shape[-1] == gen.image_size


def test_dgn_sample_and_inpaint_run_end_to_end_with_both_generators(caffe_files, tmp_path, capsys, sample_photos):
    from neuronscope.cli import main
    from neuronscope.generators.biggan import biggan_generator

    d, _, _ = caffe_files
    fc6 = tmp_path / "fc6"  # --out is a folder: generator.pt and manifest.json
    convert = ["convert-generator", str(d / "generator.caffemodel"), "--arch", "caffe", "--code-layer", "fc6", "--prototxt",
               str(d / "generator.prototxt"), "--act-range", str(d / "fc6.txt"), "--out", str(fc6)]
    assert main(convert) == 0
    assert "--lr" in capsys.readouterr().out
    assert sorted(p.name for p in fc6.iterdir()) == ["generator.pt", "manifest.json"]
    man = json.loads((fc6 / "manifest.json").read_text())
    assert man["status"] == "complete" and man["arch"] == "caffe" and man["code_size"] == CODE and man["weights"] == "float16"
    assert man["bytes"] == (fc6 / "generator.pt").stat().st_size
    before = (fc6 / "generator.pt").read_bytes()
    assert main(convert) == 2  # never over the user's folder without --overwrite
    assert "not empty" in capsys.readouterr().err and (fc6 / "generator.pt").read_bytes() == before
    assert main([*convert[:-1], str(tmp_path / "g.pt")]) == 2  # the old file form is refused with the folder form
    assert "--out is a folder" in capsys.readouterr().err and not (tmp_path / "g.pt").exists()
    assert main([*convert, "--overwrite", "--full-precision"]) == 0
    assert json.loads((fc6 / "manifest.json").read_text())["weights"] == "float32"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no build folder or backup left
    big = tmp_path / "biggan.pt"
    biggan_generator(small_biggan(), truncation=0.5).save(big)
    for i, g in enumerate((fc6, big, fc6 / "generator.pt")):  # a folder or the file in it
        out = tmp_path / f"dgn{i}"
        assert main(["dgn", "efficientnet_lite0", "class:9", "--generator", str(g), "--steps", "3", "--size", "32",
                     "--refine", "0", "--out", str(out), "--quiet"]) == 0
        rec = json.loads((out / "dgn.json").read_text())
        assert len(rec["targets"]) == 1 and rec["targets"][0].startswith("ostrich") and np.isfinite(rec["values"][0]) and (out / "dgn_000.png").exists()
        out = tmp_path / f"sample{i}"
        assert main(["sample", "efficientnet_lite0", "class:9", "--generator", str(g), "--n", "2", "--steps", "4",
                     "--save-every", "2", "--size", "32", "--refine", "0", "--out", str(out), "--quiet"]) == 0
        assert "using ppgn-gauss" in capsys.readouterr().err
        rec = json.loads((out / "sample.json").read_text())
        assert rec["variant"] == "ppgn-gauss" and len(rec["p"]) == 2
    out = tmp_path / "inpaint"
    assert main(["inpaint", "efficientnet_lite0", str(sample_photos["coffee"]), "--mask", "box:0.3,0.3,0.7,0.7",
                 "--generator", str(fc6), "--n", "2", "--steps", "5", "--size", "32", "--out", str(out), "--quiet"]) == 0
    rec = json.loads((out / "inpaint.json").read_text())
    assert len(rec["context_error_end"]) == 2
