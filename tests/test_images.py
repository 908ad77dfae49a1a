"""The image loader on every kind of file, and the atomic / no-clobber output helpers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from neuronscope.errors import NeuronscopeError
from neuronscope.images import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_batch,
    load_image,
    load_image_bytes,
    prepare_output_dir,
    save_png,
)
from tests.odd_images import H, W, write_bad_files, write_good_images

GOOD_KINDS = [
    "jpeg", "png", "webp", "bmp", "tiff", "gif", "grayscale", "rgba", "gray_alpha", "palette",
    "palette_transparent", "cmyk_jpeg", "gray16", "rgb16_tiff", "exif_rotated",
]
BAD_KINDS = ["truncated_jpeg", "corrupt_jpeg", "empty", "text", "folder", "missing"]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return write_good_images(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return write_bad_files(tmp_path_factory.mktemp("bad"))


def test_every_good_kind_is_written_by_the_helper(good):
    assert sorted(good) == sorted(GOOD_KINDS)


@pytest.mark.parametrize("kind", GOOD_KINDS)
def test_load_image_gives_the_expected_rgb_picture(good, kind):
    item = good[kind]
    img = load_image(item.path)
    assert img.mode == "RGB"
    got = np.asarray(img).astype(np.float64)
    assert got.shape == item.expected.shape
    diff = np.abs(got - item.expected).mean()
    assert diff <= item.tolerance, f"{kind}: mean abs difference {diff:.2f} > {item.tolerance}"


def test_fully_transparent_pixels_become_white(good):
    got = np.asarray(load_image(good["rgba"].path))
    assert (got[:, : W // 2] == 255).all()  # were black with alpha 0
    assert got[:, W // 2 :].mean() < 200  # the opaque photo half is untouched


def test_transparent_palette_index_becomes_white(good):
    path = good["palette_transparent"].path
    with Image.open(path) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
        clear = np.asarray(raw) == raw.info["transparency"]
    got = np.asarray(load_image(path))
    assert clear.any() and (got[clear] == 255).all()


def test_sixteen_bit_gray_is_scaled_not_clipped(good, tmp_path):
    path = good["gray16"].path
    with Image.open(path) as raw:
        assert raw.mode.startswith("I;16")
    got = np.asarray(load_image(path))[..., 0].astype(int)
    assert got.min() == 0 and got.max() == 255
    assert abs(got[:, W // 2].mean() - 128) <= 2  # the middle of the 0..65535 ramp is mid-gray
    assert (np.diff(got[0]) >= 0).all() and len(np.unique(got[0])) > W * 0.9  # a ramp, not a step

    # A dark 16-bit picture (values <= 255 of 65535) must stay dark, not be taken for 8-bit.
    dark = np.tile(np.arange(W, dtype=np.uint16) * 2, (H, 1))
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    assert np.asarray(load_image(tmp_path / "dark16.png")).max() <= 1


def test_sixteen_bit_rgb_tiff_keeps_colours(good):
    import tifffile

    stored = tifffile.imread(good["rgb16_tiff"].path)
    assert stored.dtype == np.uint16 and stored.shape == (H, W, 3) and stored.max() > 255
    got = np.asarray(load_image(good["rgb16_tiff"].path)).astype(int)
    assert np.abs(got - good["rgb16_tiff"].expected).max() <= 1


def test_exif_orientation_six_turns_the_picture_upright(good):
    path = good["exif_rotated"].path
    with Image.open(path) as raw:
        assert raw.size == (W, H) and raw.getexif()[0x0112] == 6
    img = load_image(path)
    assert img.size == (H, W)  # transposed
    got = np.asarray(img).astype(float)
    upright = good["exif_rotated"].expected.astype(float)
    wrong_way = np.rot90(upright, 2)  # rotated the other way round would be 180 deg off
    assert np.abs(got - upright).mean() < np.abs(got - wrong_way).mean() / 3


def test_cmyk_jpeg_colours_match_the_photo(good):
    path = good["cmyk_jpeg"].path
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    got = np.asarray(load_image(path)).astype(float).mean(axis=(0, 1))
    want = good["cmyk_jpeg"].expected.astype(float).mean(axis=(0, 1))
    assert np.abs(got - want).max() < 10  # not inverted, not a colour cast


@pytest.mark.parametrize(
    "kind, words",
    [
        ("truncated_jpeg", "corrupt or truncated"),
        ("corrupt_jpeg", "corrupt or truncated"),
        ("empty", "empty"),
        ("text", "not an image"),
        ("folder", "folder"),
        ("missing", "not found"),
    ],
)
def test_unreadable_files_give_an_error_naming_the_file(bad, kind, words):
    path = bad[kind]
    with pytest.raises(NeuronscopeError) as err:
        load_image(path)
    message = str(err.value)
    assert str(path) in message and words in message
    assert "\n" not in message


def test_unreadable_file_without_permission_is_named(tmp_path, good, monkeypatch):
    p = tmp_path / "locked.png"
    p.write_bytes(good["png"].path.read_bytes())
    p.chmod(0)
    if os.access(p, os.R_OK):  # root reads anything: make the open fail as it would for a user
        def denied(fp, *a, **k):
            raise PermissionError(13, "Permission denied", str(fp))

        monkeypatch.setattr("neuronscope.images.Image.open", denied)
    with pytest.raises(NeuronscopeError, match="permission denied") as err:
        load_image(p)
    assert str(p) in str(err.value)


def test_load_image_bytes_reads_uploads_and_rejects_junk(good):
    img = load_image_bytes(good["rgba"].path.read_bytes(), "cat.png")
    assert img.mode == "RGB" and img.size == (W, H)
    with pytest.raises(NeuronscopeError, match="cat.png is empty"):
        load_image_bytes(b"", "cat.png")
    with pytest.raises(NeuronscopeError, match="not an image"):
        load_image_bytes(b"hello", "cat.png")
    data = good["jpeg"].path.read_bytes()
    with pytest.raises(NeuronscopeError, match="corrupt or truncated"):
        load_image_bytes(data[: len(data) // 2], "cat.jpg")


def test_load_batch_mixes_kinds_into_one_tensor(good):
    x = load_batch([good[k].path for k in ("gray16", "cmyk_jpeg", "exif_rotated")], size=32)
    assert x.shape == (3, 3, 32, 32) and x.dtype.is_floating_point
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


# ------------------------------------------------------------------ outputs


def test_prepare_output_dir_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "out"
    assert prepare_output_dir(out) == out and out.is_dir()  # created
    assert prepare_output_dir(out) == out  # empty: fine
    (out / "old.png").write_bytes(b"x")
    with pytest.raises(NeuronscopeError) as err:
        prepare_output_dir(out)
    assert str(out) in str(err.value) and "--overwrite" in str(err.value)
    assert (out / "old.png").read_bytes() == b"x"  # untouched
    assert prepare_output_dir(out, overwrite=True) == out
    assert prepare_output_dir(out, resume=True) == out
    with pytest.raises(NeuronscopeError, match="is a file"):
        prepare_output_dir(out / "old.png")


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "sub" / "b.txt", "hello")
    atomic_write_json(tmp_path / "c.json", {"k": [1, 2]})
    save_png(Image.new("RGB", (4, 4), (1, 2, 3)), tmp_path / "d.png")
    atomic_write_text(tmp_path / "b2.txt", "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "b2.txt", "not bytes")  # fails mid-write
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["a.bin", "b2.txt", "c.json", "d.png", os.path.join("sub", "b.txt")]
    assert (tmp_path / "b2.txt").read_text() == "old"  # the old file survives a failed write
    assert json.loads((tmp_path / "c.json").read_text()) == {"k": [1, 2]}
    assert Image.open(tmp_path / "d.png").getpixel((0, 0)) == (1, 2, 3)


def test_atomic_writes_create_files_like_any_new_file(tmp_path):
    """Readable by others as the umask allows, not private like a temporary file (mkstemp's 0600)."""
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "sheet.html", "<p>hi</p>")
    finally:
        os.umask(old)
    assert (tmp_path / "sheet.html").stat().st_mode & 0o777 == 0o644
