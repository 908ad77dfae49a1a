"""The command line: `layers`, `classify` on every image kind, and errors without tracebacks."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from neuronscope.cli import main
from tests.odd_images import write_bad_files, write_good_images


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m neuronscope ARGS` in a fresh process, as a user would run it."""
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="100")
    return subprocess.run(
        [sys.executable, "-m", "neuronscope", *args], capture_output=True, text=True, env=env, timeout=120
    )


def one_paragraph(text: str) -> bool:
    text = text.strip()
    return bool(text) and "\n\n" not in text and "Traceback" not in text


def layer_rows(stdout: str) -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in stdout.splitlines()[2:]:
        parts = line.split()
        if len(parts) == 4:
            rows[parts[0]] = (parts[1], parts[2], parts[3])
    return rows


def test_layers_lists_every_block_with_shapes(capsys):
    assert main(["layers", "efficientnet_lite0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("efficientnet_lite0: ")
    rows = layer_rows(out)
    for i in range(16):
        assert rows[f"blocks.{i}"][0] == "MBConv" and re.fullmatch(r"\d+x\d+x\d+", rows[f"blocks.{i}"][1])
    assert rows["blocks.10"] == ("MBConv", "112x14x14", "112")
    assert rows["blocks.5.dw_act"] == ("ReLU6", "240x14x14", "240")
    assert rows["head"] == ("Sequential", "1280x7x7", "1280")
    assert rows["input"][1] == "3x224x224" and rows["logits"][1] == "1000"
    assert "(not run)" not in out


def test_layers_can_show_chosen_layers_at_another_size(capsys):
    assert main(["layers", "efficientnet_lite0", "blocks.10", "fc", "--size", "128"]) == 0
    rows = layer_rows(capsys.readouterr().out)
    assert rows["blocks.10"][1] == "112x8x8" and rows["fc"][1] == "1000"
    assert "blocks.10.dw_act" in rows and "blocks.9" not in rows and "input" not in rows


def test_layer_names_may_follow_the_options_and_an_unknown_option_is_still_a_usage_error(capsys):
    assert main(["layers", "efficientnet_lite0", "--size", "128", "blocks.10", "--depth", "1", "fc"]) == 0
    rows = layer_rows(capsys.readouterr().out)
    assert set(rows) == {"blocks.10", "fc"} and rows["blocks.10"][1] == "112x8x8"
    assert main(["layers", "efficientnet_lite0", "--size", "128", "blocks.10", "--colour"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_wrong_layer_name_in_process_returns_2_with_suggestions(capsys):
    assert main(["layers", "efficientnet_lite0", "block.10"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_paragraph(captured.err) and "blocks.10" in captured.err and "'block.10'" in captured.err


def test_wrong_layer_name_as_a_command_exits_2_without_traceback():
    proc = run_cli("layers", "efficientnet_lite0", "blocks.10.dw")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert one_paragraph(proc.stderr), proc.stderr
    assert proc.stderr.startswith("neuronscope: error: ")
    assert "blocks.10.dw_act" in proc.stderr and "blocks.10.dw_conv" in proc.stderr


def test_wrong_model_name_returns_2_with_the_valid_names(capsys):
    assert main(["layers", "efficientnet_lite9"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and one_paragraph(captured.err)
    assert "efficientnet_lite9" in captured.err and "efficientnet_lite0" in captured.err


def test_classify_prints_top5_for_good_images_and_errors_for_bad(tmp_path, sample_photos):
    good = write_good_images(tmp_path / "good")
    bad = write_bad_files(tmp_path / "bad")
    paths = [str(sample_photos["coffee"])] + [str(g.path) for g in good.values()] + [str(p) for p in bad.values()]
    proc = run_cli("classify", "efficientnet_lite0", *paths)
    assert proc.returncode == 2, proc.stderr  # some files could not be read
    assert "Traceback" not in proc.stdout + proc.stderr

    blocks = {}
    current = None
    for line in proc.stdout.splitlines():
        if not line.startswith("  "):
            current = line
            blocks[current] = []
        else:
            blocks[current].append(line.strip())
    assert list(blocks) == paths  # every file reported, in order

    label = re.compile(r"^\d+\.\d%\s+.+ \(\d+\)$")
    coffee = blocks[str(sample_photos["coffee"])]
    assert len(coffee) == 5 and all(label.match(line) for line in coffee)
    assert coffee[0].endswith("espresso (967)")
    for kind, g in good.items():
        lines = blocks[str(g.path)]
        assert len(lines) == 5 and all(label.match(line) for line in lines), (kind, lines)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("neuronscope: error: ")]
    assert len(errors) == len(bad)  # the reasons go to stderr, one line per file
    for kind, p in bad.items():
        lines = blocks[str(p)]
        assert lines == ["error (see stderr)"], (kind, lines)
        assert any(str(p) in e for e in errors), (kind, errors)


def test_classify_top_option(capsys, sample_photos):
    assert main(["classify", "efficientnet_lite0", str(sample_photos["chelsea"]), "--top", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and re.search(r"cat \((281|282|285)\)$", out[1])
    assert main(["classify", "efficientnet_lite0", str(sample_photos["chelsea"]), "--top", "0"]) == 2
    assert "argument --top: 0 is not valid; give a whole number of classes from 1 to 1000" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    assert main(["no-such-verb"]) == 2
    assert main(["classify", "efficientnet_lite0"]) == 2  # no image given
    assert "the following arguments are required: images" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["--version"])
    assert err.value.code == 0


def test_every_verb_that_loads_a_model_takes_its_preprocessing_and_input_size():
    from neuronscope.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.choices and "classes" in a.choices)
    takes_model = {verb: p for verb, p in sub.choices.items()
                   if any(a.dest == "model" for a in p._actions)}
    assert "classes" in takes_model and "render" in takes_model
    lacking = sorted(verb for verb, p in takes_model.items()
                     if not {"--preprocess", "--input-size"} <= {s for a in p._actions for s in a.option_strings})
    assert lacking == []


LABELLED_NET = '''
import torch.nn as nn

def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
build.labels = ["red fox", "grey wolf", "blue whale"]
'''


def test_classes_lists_your_own_models_labels_with_its_preprocessing(tmp_path, monkeypatch, capsys):
    (tmp_path / "labelled_ns_test.py").write_text(LABELLED_NET)
    monkeypatch.chdir(tmp_path)
    assert main(["classes", "--model", "./labelled_ns_test.py:build"]) == 2  # not declared: asked for
    assert "--preprocess" in capsys.readouterr().err
    assert main(["classes", "--model", "./labelled_ns_test.py:build", "--preprocess", "none", "wolf"]) == 0
    out = capsys.readouterr().out
    assert "./labelled_ns_test.py:build: 1 classes match 'wolf'" in out and "1  grey wolf" in out
