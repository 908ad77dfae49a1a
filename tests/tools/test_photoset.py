"""Tests for the Qt rcc reader and the offline photo set."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neuronscope.errors import NeuronscopeError
from tools import photoset
from tools.photoset import (
    DebianCopyright,
    build_photoset,
    default_photoset_dir,
    ensure_photoset,
    imagenet_class_for,
    label_from_name,
    list_photos,
    looks_drawn,
)
from tools.rcc import RccError, RccReader, iter_rcc

MANIFEST_KEYS = {"file", "source", "package", "licence", "original_path", "label", "imagenet_class"}


# --------------------------------------------------------------------------
# A minimal rcc writer, independent of the reader


def make_rcc(files: dict[str, tuple[bytes, bool]], version: int = 3) -> bytes:
    """A Qt binary resource bundle holding ``files`` (path -> (data, zlib?))."""
    root: dict = {}
    for path, content in files.items():
        *dirs, name = path.split("/")
        node = root
        for d in dirs:
            node = node.setdefault(d, {})
        node[name] = content

    # Number nodes breadth first, so that a directory's children are contiguous.
    nodes = [("", root)]  # (name, dict for a directory | (data, compressed) for a file)
    first_child = {}
    i = 0
    while i < len(nodes):
        _, content = nodes[i]
        if isinstance(content, dict):
            first_child[i] = len(nodes)
            nodes.extend(sorted(content.items()))
        i += 1

    names, name_offsets = bytearray(), []
    data, data_offsets = bytearray(), []
    for name, content in nodes:
        name_offsets.append(len(names))
        encoded = name.encode("utf-16-be")
        names += struct.pack(">HI", len(name), 0) + encoded
        if isinstance(content, dict):
            data_offsets.append(None)
        else:
            payload, compressed = content
            if compressed:
                payload = struct.pack(">I", len(payload)) + zlib.compress(payload)
            data_offsets.append(len(data))
            data += struct.pack(">I", len(payload)) + payload

    tree = bytearray()
    for index, (name, content) in enumerate(nodes):
        if isinstance(content, dict):
            tree += struct.pack(">IHII", name_offsets[index], 0x02, len(content), first_child[index])
        else:
            flags = 0x01 if content[1] else 0x00
            tree += struct.pack(">IHHHI", name_offsets[index], flags, 0, 0, data_offsets[index])
        if version >= 2:
            tree += struct.pack(">Q", 0)

    header_size = 20 + (4 if version >= 3 else 0)
    data_offset = header_size
    names_offset = data_offset + len(data)
    tree_offset = names_offset + len(names)
    header = b"qres" + struct.pack(">IIII", version, tree_offset, data_offset, names_offset)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + bytes(data) + bytes(names) + bytes(tree)


SAMPLE_FILES = {
    "top.txt": (b"hello", False),
    "pics/a.png": (b"\x89PNG fake" * 50, True),
    "pics/deeper/b.webp": (b"RIFF....WEBP", False),
    "pics/deeper/c.bin": (bytes(range(256)) * 8, True),
    "empty.dat": (b"", False),
}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_round_trip(version, tmp_path):
    path = tmp_path / "sample.rcc"
    path.write_bytes(make_rcc(SAMPLE_FILES, version))
    read = dict(iter_rcc(path))
    assert read == {p: data for p, (data, _) in SAMPLE_FILES.items()}
    kinds = {e.path: e.compression for e in RccReader.open(path).entries()}
    assert kinds == {p: "zlib" if z else "none" for p, (_, z) in SAMPLE_FILES.items()}


def test_rcc_rejects_other_files():
    with pytest.raises(RccError):
        RccReader(b"PK\x03\x04 not a bundle at all")
    broken = make_rcc(SAMPLE_FILES)[:-30]  # tree cut short
    with pytest.raises(RccError):
        list(RccReader(broken).entries())


# --------------------------------------------------------------------------
# Labels, ImageNet classes, licences, drawings


def test_labels_from_file_names():
    assert label_from_name("goldfish.png") == "goldfish"
    assert label_from_name("tajMahal2.webp") == "taj mahal"
    assert label_from_name("heron_greatblue-flying.png") == "heron greatblue flying"
    assert label_from_name("1234.jpg") is None


@pytest.mark.parametrize(
    "name, index",
    [
        ("goldfish.png", 1),
        ("tabby", 281),
        ("pink_flamingo.png", 130),
        ("hammer8.webp", 587),
        ("screwDriver2.webp", 784),  # camelCase split, then run together again
        ("binoculars.png", 447),  # plural 's' on both sides
        ("polar_bear.webp", 296),
        ("unknown_thing", None),
        ("mouse.png", None),  # ImageNet's mouse is a computer mouse
        ("crowned_crane.png", None),  # "crane" names two classes
        ("", None),
    ],
)
def test_imagenet_class_for(name, index):
    assert imagenet_class_for(name) == index


def test_debian_copyright_lookup():
    text = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: Someone
License: GPL-3+

Files: src/pics/*
Copyright: 2020 Photographer
License: CC-BY-SA-4.0
 Long licence text.

Files: src/pics/fish1.jpg
       src/pics/fish2.png
Copyright: Diver
License: CC0-1.0
"""
    c = DebianCopyright(text)
    assert c.lookup("src/pics/fish1.webp") == ("CC0-1.0", "Diver")  # extension converted
    assert c.lookup("src/pics/shark.webp") == ("CC-BY-SA-4.0", "2020 Photographer")
    assert c.lookup("README") == ("GPL-3+", "Someone")
    assert DebianCopyright("").lookup("x") == ("unknown", None)


def test_looks_drawn():
    flat = Image.new("RGBA", (120, 120), (0, 0, 0, 0))
    flat.paste((200, 30, 30, 255), (10, 10, 110, 110))
    assert looks_drawn(flat)
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (120, 120, 4), dtype=np.uint8)
    noisy[..., 3] = 255
    assert not looks_drawn(Image.fromarray(noisy, "RGBA"))


# --------------------------------------------------------------------------
# Building


def check_set(root: Path, max_side: int) -> list[dict]:
    """Assert the set at ``root`` is complete and consistent; return its manifest."""
    manifest = json.loads((root / "manifest.json").read_text())
    assert isinstance(manifest, list) and manifest
    files = [e["file"] for e in manifest]
    assert len(set(files)) == len(files)
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(Path(f).name for f in files)
    for e in manifest:
        assert MANIFEST_KEYS <= e.keys()
        assert e["file"] == f"images/{e['source']}__{Path(e['file']).stem.split('__', 1)[1]}.jpg"
        assert e["imagenet_class"] is None or 0 <= e["imagenet_class"] < 1000
        assert e["label"] is None or isinstance(e["label"], str)
        assert e["package"] and e["licence"] and e["original_path"]
        with Image.open(root / e["file"]) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert max(im.size) <= max_side and im.size == (e["width"], e["height"])
    return manifest


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return build_photoset(tmp_path_factory.mktemp("photos") / "set", sources=("skimage", "sklearn"),
                          max_side=256, progress=False)


def test_small_set_builds_with_a_valid_manifest(small_set):
    manifest = check_set(small_set, 256)
    by_source = {s: [e for e in manifest if e["source"] == s] for s in ("skimage", "sklearn")}
    assert sorted(Path(e["file"]).stem for e in by_source["skimage"]) == [
        "skimage__astronaut", "skimage__chelsea", "skimage__coffee", "skimage__motorcycle", "skimage__rocket"]
    assert sorted(Path(e["file"]).stem for e in by_source["sklearn"]) == ["sklearn__china", "sklearn__flower"]
    coffee = next(e for e in manifest if e["file"].endswith("coffee.jpg"))
    assert coffee["imagenet_class"] == 967  # espresso
    assert [p.name for p in small_set.parent.iterdir()] == ["set"]  # no temporary folder left
    photos = list_photos(small_set)
    assert len(photos) == len(manifest) and all(Path(p["path"]).is_file() for p in photos)


def test_building_twice_returns_the_existing_set(small_set):
    manifest = small_set / "manifest.json"
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns)
    assert build_photoset(small_set, sources=("skimage",), progress=False) == small_set
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before


def test_default_dir_and_ensure_photoset(small_set, monkeypatch):
    monkeypatch.setenv("NEURONSCOPE_PHOTOS", str(small_set))
    assert default_photoset_dir() == small_set
    assert ensure_photoset() == small_set  # complete already: nothing is built
    assert len(list_photos()) == 7


def test_a_foreign_folder_is_refused(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(NeuronscopeError, match="not a photo set"):
        build_photoset(foreign, sources=("sklearn",), progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    (foreign / "manifest.json").write_text("{broken")
    with pytest.raises(NeuronscopeError):
        build_photoset(foreign, sources=("sklearn",), progress=False)
    with pytest.raises(NeuronscopeError):
        list_photos(foreign)


def test_an_empty_folder_is_filled(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert build_photoset(empty, sources=("sklearn",), progress=False) == empty
    assert len(check_set(empty, 512)) == 2


def test_unknown_source_is_refused(tmp_path):
    with pytest.raises(NeuronscopeError, match="did you mean 'gcompris'"):
        build_photoset(tmp_path / "x", sources=("gcompri",), progress=False)
    assert not (tmp_path / "x").exists()


def test_missing_apt_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(photoset.shutil, "which", lambda name: None)
    with pytest.raises(NeuronscopeError, match="apt-get/dpkg-deb are missing"):
        photoset.download_deb("gcompris-qt-data", tmp_path / "debs")


def test_full_set_from_debian_packages(tmp_path):
    """The whole default set; needs apt-get (runs apt-get update if needed)."""
    try:
        root = build_photoset(tmp_path / "full", progress=False)
    except NeuronscopeError as exc:
        pytest.fail(f"building the full photo set failed (are apt-get and dpkg-deb usable?): {exc}")
    manifest = check_set(root, 512)
    counts = {s: sum(e["source"] == s for e in manifest) for s in ("skimage", "sklearn", "gcompris", "tuxpaint")}
    assert counts["skimage"] == 5 and counts["sklearn"] == 2
    assert counts["gcompris"] >= 200 and counts["tuxpaint"] >= 200, counts
    assert sum(e["imagenet_class"] is not None for e in manifest) >= 80
    assert all(e["licence"] != "unknown" for e in manifest)
    hammers = [e for e in manifest if e["label"] == "hammer"]
    assert hammers and all(e["imagenet_class"] == 587 for e in hammers)
