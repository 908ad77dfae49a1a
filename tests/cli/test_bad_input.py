"""Every verb against every class of bad input: exit code 2, a message naming the option and what is valid.

One test per verb x class (output folder, numbers, NaN/inf, images, other);
each runs its table of command lines in-process through ``main()`` and asserts
for every one: exit code 2, no traceback, the message names the option (or the
file) and what would be valid, and no file was written anywhere under the
working folder. Most cases stop while the arguments are parsed, before any
model loads, which keeps the whole table fast. Verbs that take no input of a
class (``layers`` has no output folder, ``render`` reads no image) have no cell
there; :data:`NOT_APPLICABLE` lists them so the table's coverage is explicit.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from pathlib import Path

import pytest

from neuronscope.cli import build_parser, main

M = "efficientnet_lite0"


def png_header_only(width: int, height: int, bit_depth: int = 16, color: int = 0) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A working folder with the inputs the cases refer to (paths relative to it)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # importing badinput_net.py must not count as a file written
    Path("afile").write_text("not a folder\n")
    Path("full").mkdir()
    Path("full/old.txt").write_text("earlier results\n")
    Path("text.jpg").write_text("this is text, not a JPEG\n")
    Path("empty.png").write_bytes(b"")
    Path("bomb.png").write_bytes(png_header_only(9000, 9000))  # 81 megapixels, 16-bit, 100 bytes
    Path("huge.png").write_bytes(png_header_only(20000, 20000))  # beyond Pillow's own bomb limit too
    Path("nopics").mkdir()
    Path("nopics/a.jpg").write_text("text\n")
    Path("nopics/b.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    Path("emptydir").mkdir()
    Path("badinput_net.py").write_text("from torch import nn\n\n\ndef build():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())\n")
    Path("run1").mkdir()  # a train-generator run recorded at one thread
    Path("run1/checkpoint.pt").write_bytes(b"")
    Path("run1/config.json").write_text('{"layer": "head.act", "conditions": {"threads": 1, "precision": "float32"}}')
    Path("pics").mkdir()
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 120, 40)).save("ok.png")
    Image.new("RGB", (40, 30), (20, 120, 240)).save("pics/blue.png")
    return tmp_path


UNWRITABLE = "/sys/neuronscope-bad-input/out"  # read-only even for root

# verb -> class -> [(argv, [substrings the message must contain])]
CASES: dict[str, dict[str, list[tuple[list[str], list[str]]]]] = {
    "render": {
        "out": [
            ([M, "class:1", "--out", "afile"], ["--out", "afile", "is a file"]),
            ([M, "class:1", "--out", "afile/sub"], ["--out", "afile", "is a file"]),
            ([M, "class:1", "--out", "full"], ["--out", "full", "not empty", "--overwrite"]),
            ([M, "class:1", "--out", UNWRITABLE], ["--out", "cannot be created", "permission denied"]),
        ],
        "numbers": [
            ([M, "class:1", "--size", "0"], ["--size", "from 16 to 4096"]),
            ([M, "class:1", "--size", "100000"], ["--size", "from 16 to 4096"]),
            ([M, "class:1", "--seeds", "0"], ["--seeds", "1 or more"]),
            ([M, "class:1", "--batch", "-3"], ["--batch", "1 or more"]),
            ([M, "class:1", "--steps", "0"], ["--steps", "1 or more"]),
            ([M, "class:1", "--steps", "2.5"], ["--steps", "whole number"]),
        ],
        "nonfinite": [
            ([M, "class:1", "--size", "nan"], ["--size", "whole number"]),
            ([M, "class:1", "--steps", "inf"], ["--steps", "whole number"]),
        ],
        "other": [
            ([M, "class:-1", "--out", "r"], ["class -1", "0..999"]),
            # your own model: the hint is a command that loads it (with the preprocessing given)
            (["./badinput_net.py:build", "nosuch:0", "--preprocess", "minus_one_one", "--input-size", "64", "--out", "r"],
             ["no layer 'nosuch'", "`neuronscope layers ./badinput_net.py:build --preprocess minus_one_one --input-size 64`"]),
        ],
    },
    "demo": {
        "out": [
            (["--out", "afile/sub"], ["--out", "is a file"]),
            (["--out", UNWRITABLE], ["--out", "permission denied"]),
        ],
        "numbers": [
            (["--steps", "0"], ["--steps", "1 or more"]),
            (["--size", "8"], ["--size", "from 16 to 4096"]),
        ],
        "nonfinite": [(["--size", "inf"], ["--size", "whole number"])],
    },
    "dgn": {
        "out": [
            ([M, "class:1", "--out", "afile"], ["--out", "is a file"]),
            ([M, "class:1", "--out", "full"], ["--out", "not empty", "--overwrite"]),
            ([M, "class:1", "--out", UNWRITABLE], ["--out", "permission denied"]),
        ],
        "numbers": [
            ([M, "class:1", "--n", "0"], ["--n", "1 or more"]),
            ([M, "class:1", "--steps", "-1"], ["--steps", "1 or more"]),
            ([M, "class:1", "--size", "0"], ["--size", "from 16"]),
            ([M, "class:1", "--threads", "0"], ["--threads", "from 1 to 256"]),
            ([M, "class:1", "--decay", "1.5"], ["--decay", "from 0 to 1"]),
            ([M, "class:1", "--prior", "2"], ["--prior", "from 0 to 1"]),
            ([M, "class:1", "--refine", "-1"], ["--refine", "0 or more"]),
        ],
        "nonfinite": [
            ([M, "class:1", "--lr", "nan"], ["--lr", "finite number", "greater than 0"]),
            ([M, "class:1", "--decay", "inf"], ["--decay", "finite number"]),
            ([M, "class:1", "--lr-end=-inf"], ["--lr-end", "finite number", "0 or more"]),
            ([M, "class:1", "--prior", "nan"], ["--prior", "finite number"]),
        ],
        "other": [
            ([M, "class:1", "--generator", "full"], ["full is a folder without generator.pt", "convert-generator"]),
            ([M, "class:1", "--generator", "none.pt"], ["generator file not found: none.pt", "train-generator"]),
        ],
    },
    "sample": {
        "out": [
            ([M, "class:1", "--out", "afile/x"], ["--out", "is a file"]),
            ([M, "class:1", "--out", UNWRITABLE], ["--out", "permission denied"]),
        ],
        "numbers": [
            ([M, "class:1", "--n", "0"], ["--n", "1 or more"]),
            ([M, "class:1", "--save-every", "0"], ["--save-every", "1 or more"]),
            ([M, "class:1", "--reset-every", "-5"], ["--reset-every", "1 or more"]),
            ([M, "class:1", "--refine", "1.5"], ["--refine", "whole number", "0 or more"]),
        ],
        "nonfinite": [
            ([M, "class:1", "--eps1", "nan"], ["--eps1", "finite number"]),
            ([M, "class:1", "--eps3", "inf"], ["--eps3", "finite number"]),
            ([M, "class:1", "--lr", "-1"], ["--lr", "greater than 0"]),
            ([M, "class:1", "--prior", "inf"], ["--prior", "finite number"]),
        ],
        "other": [([M, "class:1", "--generator", "emptydir"], ["emptydir is a folder without generator.pt"])],
    },
    "inpaint": {
        "out": [
            ([M, "ok.png", "--mask", "box:0.3,0.3,0.7,0.7", "--out", "afile"], ["--out", "is a file"]),
            ([M, "ok.png", "--mask", "box:0.3,0.3,0.7,0.7", "--out", UNWRITABLE], ["--out", "permission denied"]),
        ],
        "numbers": [([M, "ok.png", "--mask", "box:0,0,1,1", "--n", "0"], ["--n", "1 or more"])],
        "nonfinite": [([M, "ok.png", "--mask", "box:0,0,1,1", "--context-weight", "nan"], ["--context-weight", "finite"]),
                      ([M, "ok.png", "--mask", "box:0,0,1,1", "--prior", "-0.5"], ["--prior", "from 0 to 1"])],
        "images": [
            ([M, "text.jpg", "--mask", "box:0,0,1,1"], ["text.jpg", "valid: JPEG, PNG"]),
            ([M, "bomb.png", "--mask", "box:0,0,1,1"], ["bomb.png", "9000x9000", "the limit is 64 megapixels"]),
        ],
        "other": [([M, "ok.png", "--mask", "box:0,0,1,1", "--generator", "full"], ["full is a folder without generator.pt"])],
    },
    "invert": {
        "out": [
            ([M, "ok.png", "--layers", "blocks.2", "--out", "afile"], ["--out", "is a file"]),
            ([M, "ok.png", "--layers", "blocks.2", "--out", "full"], ["--out", "not empty"]),
            ([M, "ok.png", "--layers", "blocks.2", "--out", UNWRITABLE], ["--out", "permission denied"]),
        ],
        "numbers": [
            ([M, "ok.png", "--layers", "blocks.2", "--steps", "0"], ["--steps", "from 1 to 100000"]),
            ([M, "ok.png", "--layers", "blocks.2", "--size", "5000"], ["--size", "from 16 to 1024"]),
        ],
        "nonfinite": [
            ([M, "ok.png", "--layers", "blocks.2", "--tv", "nan"], ["--tv", "finite number"]),
            ([M, "ok.png", "--layers", "blocks.2", "--lr", "inf"], ["--lr", "finite number"]),
        ],
        "images": [
            ([M, "empty.png", "--layers", "blocks.2"], ["empty.png", "empty"]),
            ([M, "bomb.png", "--layers", "blocks.2"], ["bomb.png", "the limit is"]),
            ([M, "missing.png", "--layers", "blocks.2"], ["missing.png", "not found"]),
        ],
    },
    "backprop": {
        "out": [
            ([M, "ok.png", "class:1", "--out", "afile"], ["--out", "is a file"]),
            ([M, "ok.png", "class:1", "--out", "sheet.png"], ["--out", "is a folder", "sheet"]),
            ([M, "ok.png", "class:1", "--out", "full"], ["--out", "not empty"]),
            ([M, "ok.png", "class:1", "--out", UNWRITABLE], ["--out", "permission denied"]),
        ],
        "numbers": [([M, "ok.png", "class:1", "--size", "3"], ["--size", "from 16 to 4096"])],
        "nonfinite": [([M, "ok.png", "class:1", "--blur", "nan"], ["--blur", "finite number", "0 or more"])],
        "images": [
            ([M, "text.jpg", "class:1"], ["text.jpg", "valid: JPEG, PNG"]),
            ([M, "bomb.png", "class:1"], ["bomb.png", "the limit is 64 megapixels"]),
            ([M, "huge.png", "class:1"], ["huge.png", "the limit is 64 megapixels"]),
        ],
    },
    "classify": {
        "numbers": [([M, "ok.png", "--top", "0"], ["--top", "from 1 to 1000"])],
        "nonfinite": [([M, "ok.png", "--top", "nan"], ["--top", "whole number"])],
        "images": [([M, "bomb.png", "huge.png", "text.jpg"], ["bomb.png", "9000x9000", "huge.png", "text.jpg",
                                                              "the limit is 64 megapixels", "valid: JPEG"])],
    },
    "classes": {
        "numbers": [(["cat", "--limit", "0"], ["--limit", "1 or more"]), (["-n", "-2"], ["-n/--limit", "1 or more"])],
        "nonfinite": [(["cat", "--limit", "inf"], ["--limit", "whole number"])],
        "other": [(["--model", "efficientnet_lite9"], ["efficientnet_lite9", "efficientnet_lite0"])],
    },
    "layers": {
        "numbers": [([M, "--size", "0"], ["--size", "from 16 to 4096"]), ([M, "--depth", "-1"], ["--depth", "0 or more"])],
        "nonfinite": [([M, "--size", "inf"], ["--size", "whole number"])],
        "other": [(["badinput_net:build", "nosuch", "--preprocess", "none"],
                   ["no layer 'nosuch'", "`neuronscope layers badinput_net:build --preprocess none`"])],
    },
    "topk": {
        "out": [
            ([M, "--images", "nopics", "--layers", "blocks.2", "--out", "afile"], ["--out", "is a file"]),
            ([M, "--images", "nopics", "--layers", "blocks.2", "--out", UNWRITABLE], ["--out", "permission denied"]),
        ],
        "numbers": [
            ([M, "--images", "nopics", "--layers", "blocks.2", "--k", "0"], ["--k", "from 1 to 100"]),
            ([M, "--images", "nopics", "--layers", "blocks.2", "--batch-size", "0"], ["--batch-size", "1 or more"]),
            ([M, "--images", "nopics", "--layers", "blocks.2", "--units", "7-3"], ["--units", "'7-3'", "0-63"]),
            ([M, "--images", "nopics", "--layers", "blocks.2", "--units", "1,x"], ["--units", "'1,x'", "1,5,9"]),
            ([M, "--images", "nopics", "--layers", "blocks.2", "--units", "-1"], ["--units", "negative", "count from 0"]),
        ],
        "nonfinite": [([M, "--images", "nopics", "--layers", "blocks.2", "--checkpoint-seconds", "nan"],
                       ["--checkpoint-seconds", "finite number", "0 or more"])],
        "images": [
            ([M, "--images", "nopics", "--layers", "blocks.2"], ["--images", "no readable image", "valid"]),
            ([M, "--images", "emptydir", "--layers", "blocks.2"], ["no images in emptydir", "looked for"]),
        ],
    },
    "atlas": {
        "out": [
            ([M, "--out", "afile"], ["--out", "is a file"]),
            ([M, "--out", "full"], ["--out", "holds no atlas"]),
            ([M, "--out", UNWRITABLE], ["--out", "permission denied"]),
        ],
        "numbers": [
            ([M, "--workers", "0"], ["--workers", "from 1 to 1024"]),
            ([M, "--threads", "0"], ["--threads", "from 1 to 256"]),
            ([M, "--k", "0"], ["--k", "from 1 to 100"]),
            ([M, "--batch", "0"], ["--batch", "1 or more"]),
        ],
        "nonfinite": [([M, "--size", "nan"], ["--size", "whole number"])],
        "images": [([M, "--images", "nopics", "--out", "a"], ["--images", "no readable image"])],
        "other": [([M, "--site-only", "--out", "a"], ["--site-only", "no atlas store"])],
    },
    "facets": {
        "out": [
            ([M, "class:1", "--out", "afile"], ["--out", "is a file"]),
            ([M, "class:1", "--out", UNWRITABLE], ["--out", "permission denied"]),
        ],
        "numbers": [
            ([M, "class:1", "--k", "0"], ["--k", "from 1 to 64"]),
            ([M, "class:1", "--views", "0"], ["--views", "from 1 to 256"]),
            ([M, "class:1", "--max-k", "0"], ["--max-k", "from 1 to 10"]),
        ],
        "nonfinite": [
            ([M, "class:1", "--iter-scale", "nan"], ["--iter-scale", "finite number"]),
            ([M, "class:1", "--anchor", "inf"], ["--anchor", "finite number"]),
        ],
        "images": [([M, "class:1", "--images", "nopics"], ["--images", "no readable image"])],
    },
    "dissect": {
        "out": [
            ([M, "--layer", "blocks.2", "--data", "emptydir", "--out", "afile"], ["--out", "is a file"]),
            ([M, "--layer", "blocks.2", "--data", "emptydir", "--out", UNWRITABLE], ["--out", "permission denied"]),
        ],
        "numbers": [
            ([M, "--layer", "blocks.2", "--data", "emptydir", "--top", "0"], ["--top", "from 1 to 100"]),
            ([M, "--layer", "blocks.2", "--data", "emptydir", "--batch-size", "0"], ["--batch-size", "1 or more"]),
        ],
        "nonfinite": [
            ([M, "--layer", "blocks.2", "--data", "emptydir", "--quantile", "nan"], ["--quantile", "finite number"]),
            ([M, "--layer", "blocks.2", "--data", "emptydir", "--iou-threshold", "2"], ["--iou-threshold", "at most 1"]),
        ],
    },
    "train-generator": {
        "out": [
            (["--images", "nopics", "--out", "afile"], ["--out", "is a file"]),
            (["--images", "nopics", "--out", "full"], ["--out", "not empty"]),
            (["--images", "nopics", "--out", UNWRITABLE], ["--out", "permission denied"]),
        ],
        "numbers": [
            (["--images", "nopics", "--steps", "0"], ["--steps", "1 or more"]),
            (["--images", "nopics", "--batch", "0"], ["--batch", "1 or more"]),
            (["--images", "nopics", "--grid", "-1"], ["--grid", "from 0 to 64"]),
            (["--images", "nopics", "--code-size", "0"], ["--code-size", "from 16"]),
            (["--images", "nopics", "--full-every", "0"], ["--full-every", "1 or more"]),
        ],
        "nonfinite": [
            (["--images", "nopics", "--hours", "nan"], ["--hours", "finite number"]),
            (["--images", "nopics", "--lr", "inf"], ["--lr", "finite number"]),
        ],
        "other": [
            (["--images", "nopics", "--out", "norun", "--resume"], ["--resume", "no training run"]),
            (["--images", "pics", "--out", "run1", "--resume", "--threads", "2"],
             ["--resume", "run1", "trained with 1 torch thread", "--threads 2", "Leave out --threads", "--threads 1"]),
        ],
    },
    "train-prior": {
        "out": [
            (["--images", "pics", "--out", "afile"], ["--out", "afile", "is a file"]),
            (["--images", "pics", "--out", "afile/sub"], ["--out", "afile", "is a file"]),
            (["--images", "pics", "--out", "full"], ["--out", "full", "not empty"]),
            (["--images", "pics", "--out", UNWRITABLE], ["--out", "permission denied"]),
        ],
        "numbers": [
            (["--images", "nopics", "--out", "p", "--steps", "0"], ["--steps", "1 or more"]),
            (["--images", "nopics", "--out", "p", "--patch", "2"], ["--patch", "from 8 to 1024"]),
            (["--images", "nopics", "--out", "p", "--threads", "0"], ["--threads", "from 1 to 256"]),
        ],
        "nonfinite": [
            (["--images", "nopics", "--out", "p", "--lr", "nan"], ["--lr", "finite number"]),
            (["--images", "nopics", "--out", "p", "--sigma-max", "inf"], ["--sigma-max", "finite number"]),
            (["--images", "nopics", "--out", "p", "--hours", "-1"], ["--hours", "greater than 0"]),
        ],
    },
    "convert-generator": {
        "out": [
            (["x.caffemodel", "--arch", "deepsim-fc6", "--out", "full"], ["--out", "full", "not empty", "--overwrite"]),
            (["x.caffemodel", "--arch", "deepsim-fc6", "--out", "afile"], ["--out", "afile", "is a file"]),
            (["x.caffemodel", "--arch", "deepsim-fc6", "--out", "afile/sub"], ["--out", "afile", "is a file"]),
            (["x.caffemodel", "--arch", "deepsim-fc6", "--out", "g.pt"], ["--out g.pt", "is a folder", "--out g"]),
            (["x.caffemodel", "--arch", "deepsim-fc6", "--out", UNWRITABLE], ["--out", "permission denied"]),
        ],
        "nonfinite": [(["biggan-deep-128", "--arch", "biggan", "--truncation", "nan", "--out", "conv"],
                       ["--truncation", "finite number", "greater than 0 and at most 1"])],
        "numbers": [(["biggan-deep-128", "--arch", "biggan", "--truncation", "0", "--out", "conv"],
                     ["--truncation", "greater than 0 and at most 1"])],
        "other": [(["x.caffemodel", "--arch", "deepsim-fc6", "--out", "conv"], ["x.caffemodel"])],
    },
    "serve": {
        "out": [([M, "--cache-dir", "afile"], ["--cache-dir", "is a file"])],
        "numbers": [([M, "--port", "70000"], ["--port", "from 0 to 65535"]), ([M, "--synth-steps", "0"], ["--synth-steps", "1 or more"])],
        "nonfinite": [([M, "--max-upload-mb", "nan"], ["--max-upload-mb", "finite number"]),
                      ([M, "--max-upload-mb", "inf"], ["--max-upload-mb", "finite number"])],
        "images": [([M, "--images", "ok.png"], ["--images", "is not a folder"])],
    },
}

CLASSES = ("out", "numbers", "nonfinite", "images", "other")
# cells with no case, and why
NOT_APPLICABLE = {
    ("classify", "out"): "writes no files", ("layers", "out"): "writes no files", ("classes", "out"): "writes no files",
    ("classes", "images"): "reads no image",
    ("layers", "images"): "reads no image", ("render", "images"): "reads no image",
    ("demo", "images"): "reads no image", ("dgn", "images"): "reads no image", ("sample", "images"): "reads no image",
    ("dissect", "images"): "its images are a dataset folder, checked by the dissection loader",
    ("train-generator", "images"): "its folder is read by the trainer after the model loads",
}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: the option types
        code = e.code
    captured = capsys.readouterr()
    return code, captured.err


def test_every_verb_is_in_the_table():
    verbs = set(build_parser()._subparsers._group_actions[0].choices)
    assert set(CASES) <= verbs, sorted(set(CASES) - verbs)  # the table names real verbs
    missing = sorted(verbs - set(CASES))
    if missing:  # a verb added since: visible in the test summary until it has its rows
        import warnings

        warnings.warn(f"verbs without bad-input cases: {', '.join(missing)}", stacklevel=1)
    assert len(set(CASES) & verbs) >= 15


@pytest.mark.parametrize("verb,kind", [(v, k) for v in CASES for k in CLASSES if k in CASES[v]])
def test_bad_input_is_refused_with_a_clear_message(verb, kind, place, capsys):
    before = _files(place)
    for argv, needles in CASES[verb][kind]:
        code, err = _run([verb, *argv], capsys)
        shown = f"{verb} {' '.join(argv)}:\n{err}"
        assert code == 2, shown
        assert "Traceback" not in err, shown
        flat = " ".join(err.split())  # messages are wrapped to the terminal
        for needle in needles:
            assert needle in flat, (needle, shown)
        assert _files(place) == before, (shown, _files(place) ^ before)
        assert not Path(UNWRITABLE).exists()


def test_every_cell_is_covered_or_explained():
    for verb in CASES:
        for kind in ("out", "numbers", "nonfinite"):
            assert kind in CASES[verb] or (verb, kind) in NOT_APPLICABLE, (verb, kind)


def case_count() -> int:
    return sum(len(cases) for classes in CASES.values() for cases in classes.values())


if __name__ == "__main__":  # pragma: no cover
    print(f"{case_count()} cases in {sum(len(c) for c in CASES.values())} verb x class tests")
    os._exit(0)
