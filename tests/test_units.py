"""Units: the one grammar every command reads, checked against the model; values from objective terms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuronscope.errors import NeuronscopeError
from neuronscope.optim import objectives as O
from neuronscope.taps import activations, channel_count, layer_shapes
from neuronscope.units import Unit, channel_indices, parse_unit, parse_units

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_form_of_the_grammar(lite0):
    got = parse_units(lite0, ["class:ostrich", "class:9", "logits:1", "blocks.10:5", "blocks.10:0-2,7",
                              "blocks.10:5@3,4", "blocks.10:1,2@0,0"])
    assert [u.name for u in got] == [
        "class:9", "class:9", "class:1", "blocks.10:5", "blocks.10:0", "blocks.10:1", "blocks.10:2", "blocks.10:7",
        "blocks.10:5@3,4", "blocks.10:1@0,0", "blocks.10:2@0,0",
    ]
    assert [u.kind for u in got[:4]] == ["class", "class", "class", "channel"] and got[8].kind == "neuron"
    assert got[0].label == "ostrich (class 9)" and got[0].class_name == "ostrich" and got[0].slug == "class_9_ostrich"
    assert got[8].position == (3, 4) and got[8].slug == "blocks.10_5_at_3_4" and got[3].position is None
    assert parse_unit(lite0, "blocks.10:5") == Unit("channel", "blocks.10", 5)


def test_whole_layers_only_where_asked(lite0):
    units = parse_units(lite0, "blocks.4", whole_layers=True)
    assert [u.index for u in units] == list(range(40)) and {u.layer for u in units} == {"blocks.4"}
    with pytest.raises(NeuronscopeError, match="valid forms: class:NAME"):
        parse_units(lite0, "blocks.4")


@pytest.mark.parametrize("spec, message", [
    ("blocks.44:0", "Closest valid names: blocks.4"),            # the layer, with closest names
    ("class:ostrisch", "did you mean: ostrich"),                    # the class, with the closest names
    ("class:1000", "classes 0..999"),
    ("logits:1000", "classes 0..999"),
    ("blocks.4:40", "channel 40 is out of range for layer 'blocks.4', which has channels 0..39"),
    ("blocks.4:0-50", "channels 0..39"),
    ("blocks.4:7-3", "write e.g. blocks.10:5, blocks.10:0-15"),
    ("blocks.4:x", "cannot read the channels"),
    ("blocks.4:-1", "negative"),
    ("blocks.4:", "no channels in target"),
    ("blocks.4:1@99,0", r"position \(99,0\) is outside layer 'blocks.4'"),
    ("blocks.4:1@1", "cannot read the position"),
    ("class:", "empty class"),
    ("ostrich", "valid forms"),
    ("input:0", "not a layer of units"),
    ("logits:3@1,1", "a class has no position"),
])
def test_bad_targets_name_the_problem_and_what_is_valid(lite0, spec, message):
    with pytest.raises(NeuronscopeError, match=message):
        parse_units(lite0, spec)


def test_positions_are_checked_at_the_size_asked(lite0):
    w = layer_shapes(lite0, ["blocks.10"], 224)["blocks.10"][-1]
    assert parse_unit(lite0, f"blocks.10:0@{w - 1},0").x == w - 1
    with pytest.raises(NeuronscopeError, match="outside"):
        parse_unit(lite0, f"blocks.10:0@{w - 1},0", size=64)


def test_one_unit_commands_refuse_ranges(lite0):
    with pytest.raises(NeuronscopeError, match="names 8 units; this command takes one, e.g. blocks.10:0"):
        parse_unit(lite0, "blocks.10:0-7")


def test_one_short_forward_pass_for_all_targets(lite0):
    calls = []
    h = lite0.net.blocks[4].register_forward_hook(lambda *a: calls.append("blocks.4"))
    h2 = lite0.net.blocks[12].register_forward_hook(lambda *a: calls.append("blocks.12"))
    try:
        parse_units(lite0, ["blocks.4:0", "blocks.4:1-3", "blocks.10:5@1,1", "class:9"])
    finally:
        h.remove(), h2.remove()
    assert calls == ["blocks.4"]  # one pass, stopped after blocks.10 (class names need no pass)


def test_layer_shapes_and_channel_counts_are_public(lite0):
    shapes = layer_shapes(lite0, ["input", "blocks.4", "logits"], 96)
    assert shapes["input"] == (3, 96, 96) and shapes["logits"] == (1000,)
    assert shapes["blocks.4"][0] == 40 and shapes["blocks.4"][1:] == (12, 12)
    assert [channel_count(s) for s in [(40, 12, 12), (197, 768), (1000,), (1, 2, 3, 4)]] == [40, 768, 1000, None]


def test_values_come_from_the_objective_terms(lite0):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    acts = activations(lite0, x, ["blocks.10", "logits"])
    a, logits = acts["blocks.10"], acts["logits"]
    cls, ch, nr = parse_units(lite0, ["class:9", "blocks.10:5", "blocks.10:5@1,2"], size=64)
    assert torch.equal(cls.value(acts), logits[:, 9])
    assert torch.allclose(cls.value(acts, log_prob=True), logits.log_softmax(1)[:, 9])
    assert torch.allclose(ch.value(acts), a[:, 5].mean((1, 2)))
    assert torch.equal(nr.value(acts), a[:, 5, 2, 1])
    # PPGN's hidden-unit condition: the softmax over channels at the unit's position (default the centre)
    assert torch.allclose(nr.value(acts, log_prob=True), F.log_softmax(a[:, :, 2, 1], 1)[:, 5])
    h, w = a.shape[-2:]
    assert torch.allclose(ch.value(acts, log_prob=True), F.log_softmax(a[:, :, h // 2, w // 2], 1)[:, 5])
    assert torch.allclose(O.class_log_softmax(9)(acts, x), logits.log_softmax(1)[:, 9])


def test_a_channel_list_alone_reads_like_a_targets_channels():
    """The same list grammar for a target's channels and for an option such as ``topk --units``."""
    assert channel_indices("0-3, 9") == (0, 1, 2, 3, 9)
    assert channel_indices("5") == (5,) and channel_indices("0-7,12") == (*range(8), 12)
    for bad, message in [("7-3", "cannot read the channels '7-3'; write e.g. 5, 0-63"), ("-1", "channel -1 is negative"),
                         (",", "no channels in ','")]:
        with pytest.raises(NeuronscopeError, match=message):
            channel_indices(bad)
    with pytest.raises(NeuronscopeError, match="of target 'blocks.4:7-3'"):
        channel_indices("7-3", "blocks.4:7-3")
