"""Layer taps: the right layer, pseudo-layers, tuple/dict outputs, errors, and no hook left behind."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from neuronscope import NeuronscopeError, activations, describe_layers, load_model, tap
from neuronscope.taps import module_names


def hooks_left(model) -> list[str]:
    """Every module (the adapter included) that still carries a hook of any kind."""
    found = []
    for name, m in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(m, attr, None):
                found.append(f"{name or '<model>'}.{attr}")
    return found


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.rand(2, 3, 96, 96)


@pytest.fixture
def clean(lite0):
    """Lite0, checked to carry no hooks before and after the test."""
    assert hooks_left(lite0) == []
    yield lite0
    assert hooks_left(lite0) == []


class _Encoder(nn.Module):
    """Returns a tuple: (features, a side output)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        f = self.conv(x)
        return f, f.mean((2, 3))


class _Heads(nn.Module):
    """Returns a dict of two outputs."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, v):
        return {"logits": self.fc(v), "norm": v.norm(dim=1)}


class _TupleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = _Encoder()
        self.heads = _Heads()

    def forward(self, x):
        _, pooled = self.enc(x)
        return self.heads(pooled)["logits"]


@pytest.fixture
def tuple_model():
    torch.manual_seed(0)
    return load_model(_TupleNet(), preprocess="none", device="cpu")


def test_tapped_block_equals_a_manual_forward(clean, x):
    with torch.no_grad(), tap(clean, ["blocks.3"]) as taps:
        taps.run(x)
        tapped = taps["blocks.3"]
        manual = clean.net.blocks[:4](clean.net.stem(clean.preprocess(x)))
    assert tapped.shape == (2, 40, 12, 12)
    assert torch.allclose(tapped, manual, atol=1e-5)
    # and it is not the neighbouring block
    assert not torch.allclose(tapped, clean.net.blocks[:5](clean.net.stem(clean.preprocess(x))), atol=1e-3)


def test_pseudo_layers_input_and_logits(clean, x):
    with torch.no_grad(), tap(clean, ["input", "logits", "blocks.15"]) as taps:
        logits = taps.run(x)
        assert torch.equal(taps["input"], x)
        assert torch.equal(taps["logits"], logits)
        assert torch.allclose(taps["logits"], clean(x), atol=1e-5)
        assert taps["blocks.15"].shape == (2, 320, 3, 3)


def test_activations_returns_the_requested_layers(clean, x):
    acts = activations(clean, x, ["blocks.10", "head.act", "blocks.10.dw_act"])
    assert list(acts) == ["blocks.10", "head.act", "blocks.10.dw_act"]
    assert acts["blocks.10"].shape == (2, 112, 6, 6)
    assert acts["head.act"].shape == (2, 1280, 3, 3)
    assert acts["blocks.10.dw_act"].min() >= 0 and acts["blocks.10.dw_act"].max() <= 6  # ReLU6


def test_tuple_and_dict_outputs_are_addressable(tuple_model):
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad(), tap(tuple_model, ["enc[0]", "enc[1]", "heads[norm]", "enc"]) as taps:
        taps.run(x)
        f = tuple_model.net.enc.conv(x)
        assert torch.allclose(taps["enc[0]"], f)
        assert torch.allclose(taps["enc[1]"], f.mean((2, 3)))
        assert torch.allclose(taps["heads[norm]"], f.mean((2, 3)).norm(dim=1))
        with pytest.raises(NeuronscopeError, match=r"tuple of 2 elements.*enc\[0\]"):
            taps["enc"]
        with pytest.raises(NeuronscopeError, match="not tapped here"):
            taps["heads"]
    assert hooks_left(tuple_model) == []


def test_a_dict_or_tuple_layer_is_refused_with_its_keys_or_indexes_and_an_address_that_works(tuple_model):
    x = torch.rand(1, 3, 8, 8)
    with tap(tuple_model, ["heads", "enc"]) as taps:
        taps.run(x)
        with pytest.raises(NeuronscopeError) as dict_err:
            taps["heads"]
        with pytest.raises(NeuronscopeError) as tuple_err:
            taps["enc"]
    hint = str(dict_err.value)
    assert "dict with keys logits, norm" in hint and "heads[0]" not in hint
    example = re.search(r"e\.g\. (heads\[\w+\])", hint).group(1)
    assert "tuple of 2 elements; address one by its index in brackets: enc[0] to enc[1]" in str(tuple_err.value)
    with tap(tuple_model, [example, "enc[1]"]) as taps:  # what the hints propose is a tensor
        taps.run(x)
        assert isinstance(taps[example], torch.Tensor) and isinstance(taps["enc[1]"], torch.Tensor)


def test_a_missing_tuple_element_lists_the_valid_ones(tuple_model):
    with tap(tuple_model, ["enc[2]"]) as taps:
        with pytest.raises(NeuronscopeError, match=r"no element \[2\].*0\.\.1"):
            taps.run(torch.rand(1, 3, 8, 8))
    with tap(tuple_model, ["heads[probs]"]) as taps:
        with pytest.raises(NeuronscopeError, match=r"no element \[probs\].*logits.*norm"):
            taps.run(torch.rand(1, 3, 8, 8))
    assert hooks_left(tuple_model) == []


def test_unknown_layer_names_suggest_the_closest_valid_names(clean):
    with pytest.raises(NeuronscopeError) as err:
        with tap(clean, ["blocks.3", "blocks.10.dw"]):
            pass
    message = str(err.value)
    assert "'blocks.10.dw'" in message
    assert "blocks.10.dw_act" in message and "blocks.10.dw_conv" in message
    assert "neuronscope layers efficientnet_lite0" in message and "\n" not in message
    with pytest.raises(NeuronscopeError, match="blocks.10"):
        activations(clean, torch.rand(1, 3, 32, 32), ["block10"])
    with pytest.raises(NeuronscopeError, match="malformed layer address"):
        activations(clean, torch.rand(1, 3, 32, 32), ["blocks.3[0"])


def test_no_hook_remains_after_the_with_block(clean, x):
    with torch.no_grad(), tap(clean, ["input", "stem", "blocks.5.dw_act", "logits"]) as taps:
        assert len(hooks_left(clean)) == 4  # exactly the requested layers are hooked
        taps.run(x)
    assert hooks_left(clean) == []


def test_no_hook_remains_when_the_forward_pass_raises(clean):
    bad = torch.rand(1, 3, 32, 32, dtype=torch.float64)  # float64 meets float32 weights in stem.conv
    with pytest.raises(RuntimeError):
        with tap(clean, ["input", "blocks.3", "logits"]) as taps:
            taps.run(bad)
    assert "input" in taps and "blocks.3" not in taps  # the hooks were live until the failure
    assert hooks_left(clean) == []


def test_no_hook_remains_when_the_block_body_raises(clean, x):
    with pytest.raises(KeyError):
        with tap(clean, ["blocks.2"]) as taps:
            taps.run(x[:1])
            raise KeyError("user code failed")
    assert hooks_left(clean) == []


def test_no_hook_remains_when_a_hook_raises_midway(tuple_model):
    with tap(tuple_model, ["enc[7]", "heads"]):
        with pytest.raises(NeuronscopeError):
            tuple_model(torch.rand(1, 3, 8, 8))
    assert hooks_left(tuple_model) == []


def test_stop_early_skips_the_later_layers(clean, x):
    calls = []
    counter = clean.net.head.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            with tap(clean, ["blocks.3"], stop_early=True) as taps:
                assert taps.run(x) is None
                assert taps["blocks.3"].shape == (2, 40, 12, 12)
            assert calls == []
            with tap(clean, ["blocks.3"], stop_early=False) as taps:
                assert taps.run(x).shape == (2, 1000)
            assert calls == [1]
            with tap(clean, ["blocks.3", "logits"], stop_early=True) as taps:  # logits need the full pass
                assert taps.run(x).shape == (2, 1000)
            assert calls == [1, 1]
            with tap(clean, ["blocks.3"], stop_early=True) as taps:  # the user's own forward runs whole
                assert clean(x).shape == (2, 1000)
                assert taps["blocks.3"].shape == (2, 40, 12, 12)
            assert calls == [1, 1, 1]
    finally:
        counter.remove()


def test_describe_layers_lists_every_block_with_its_shape(clean):
    rows = {r.name: r for r in describe_layers(clean, 224)}
    for i in range(16):
        assert rows[f"blocks.{i}"].shape is not None and rows[f"blocks.{i}"].kind == "MBConv"
    assert "blocks.16" not in rows
    assert rows["blocks.10"].shape == (112, 14, 14) and rows["blocks.10"].channels == 112
    assert rows["blocks.15"].shape == (320, 7, 7)
    assert rows["head"].shape == (1280, 7, 7)
    assert rows["pool"].shape == (1280,)
    assert rows["input"].shape == (3, 224, 224) and rows["logits"].shape == (1000,)
    assert set(module_names(clean)) <= set(rows)
    assert next(iter(rows)) == "input" and list(rows)[-1] == "logits"


def test_describe_layers_names_tuple_and_dict_outputs(tuple_model):
    rows = {r.name: r for r in describe_layers(tuple_model, 8)}
    assert rows["enc[0]"].shape == (4, 8, 8) and rows["enc[1]"].shape == (4,)
    assert rows["heads[logits]"].shape == (3,) and rows["heads[norm]"].shape == ()
    assert hooks_left(tuple_model) == []


_OWN_MODEL = '''
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
'''


@pytest.mark.parametrize("spec", ["./taps_net.py:build", "taps_net:build"])  # a module name no other test imports
def test_the_unknown_layer_hint_for_your_own_model_is_a_command_that_works(tmp_path, monkeypatch, capsys, spec):
    """A factory model needs its preprocessing on every command line: the hint carries what was given."""
    import re
    import shlex

    from neuronscope.cli import main

    (tmp_path / "taps_net.py").write_text(_OWN_MODEL)
    monkeypatch.chdir(tmp_path)
    given = ["--preprocess", "minus_one_one", "--input-size", "64"]
    assert main(["render", spec, "nosuch:0", *given, "--steps", "2", "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert "no layer 'nosuch'" in err and "Traceback" not in err and not (tmp_path / "o").exists()
    command = re.search(r"Run `([^`]+)`", " ".join(err.split())).group(1)
    assert command == f"neuronscope layers {spec} --preprocess minus_one_one --input-size 64"
    words = shlex.split(command)
    assert main(words[1:]) == 0  # the hint runs as given
    listing = capsys.readouterr().out
    assert listing.startswith(f"{spec}: 7 addressable layers") and "\n0 " in listing and "\n4 " in listing
    assert main(words[1:3]) == 2  # what the hint used to say: without the preprocessing it cannot load
    assert "does not declare its preprocessing" in capsys.readouterr().err


def test_the_unknown_layer_hint_names_the_preprocessing_it_finds(tmp_path, monkeypatch):
    from neuronscope.taps import layers_command, list_layers_hint

    (tmp_path / "taps_net.py").write_text(_OWN_MODEL)
    monkeypatch.chdir(tmp_path)
    for pre in ("imagenet", "minus_one_one", "none"):
        m = load_model("./taps_net.py:build", preprocess=pre)
        assert layers_command(m) == f"neuronscope layers ./taps_net.py:build --preprocess {pre}"
    odd = load_model("./taps_net.py:build", preprocess=lambda t: t * 2)  # only a factory attribute can declare this
    assert layers_command(odd) == "neuronscope layers ./taps_net.py:build"
    wrapped = load_model(nn.Sequential(nn.Conv2d(3, 4, 3)), preprocess="imagenet")  # no command line loads it
    assert layers_command(wrapped) is None
    with pytest.raises(NeuronscopeError) as err:
        activations(wrapped, torch.rand(1, 3, 16, 16), ["nosuch"])
    assert "`neuronscope.describe_layers(model)` lists all 3 layers" in str(err.value)
    assert list_layers_hint(wrapped) == "`neuronscope.describe_layers(model)` lists its layers."
