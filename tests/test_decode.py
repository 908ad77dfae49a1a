"""Decoding is bounded: header checked before decoding, crops resample only the crop, a budget across threads."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from neuronscope import decode
from neuronscope.errors import NeuronscopeError
from neuronscope.images import center_crop_resize, load_image, load_image_bytes


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_extreme_aspect_ratios_cost_what_their_crop_costs(tmp_path):
    for w, h in [(60000, 1), (1, 60000), (10000, 1)]:
        p = tmp_path / f"strip_{w}x{h}.png"
        Image.new("RGB", (w, h), (10, 200, 30)).save(p)
        out = center_crop_resize(load_image(p), 224)  # the old transform scaled the whole strip: 3.9 G pixels
        assert out.size == (224, 224)
        assert np.abs(np.asarray(out, dtype=int) - [10, 200, 30]).max() <= 1


def test_crop_first_matches_resize_then_crop():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).filter(
        __import__("PIL.ImageFilter", fromlist=["x"]).GaussianBlur(3))
    short = round(224 / 0.875)
    big = img.resize((round(400 * short / 300), short), Image.BICUBIC)
    left, top = (big.size[0] - 224) // 2, (big.size[1] - 224) // 2
    ref = np.asarray(big.crop((left, top, left + 224, top + 224)), dtype=float)
    got = np.asarray(center_crop_resize(img, 224), dtype=float)
    assert np.abs(ref - got).mean() < 2.0


def test_header_over_the_pixel_limit_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(decode, "MAX_PIXELS", 10_000)
    data = png(Image.new("I;16", (200, 100)))
    with pytest.raises(NeuronscopeError, match=r"200x100 pixels .* the limit is 0 megapixels"):
        load_image_bytes(data, "the upload")


def test_sixteen_bit_decodes_keep_their_depth():
    a = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    rgb = np.asarray(load_image_bytes(png(Image.fromarray(a))))
    assert rgb.shape == (64, 64, 3)
    assert np.abs(rgb[..., 0].astype(int) - np.rint(a / 65535 * 255)).max() <= 1


def test_concurrent_decodes_stay_within_the_budget(monkeypatch):
    data = png(Image.fromarray(np.full((500, 500), 40000, np.uint16)))
    cost = decode.decode_cost((500, 500), "I;16")
    budget = decode.DecodeBudget(int(2.5 * cost))
    monkeypatch.setattr(decode, "BUDGET", budget)
    results, errors = [], []

    def work():
        try:
            results.append(load_image_bytes(data, "an upload").size)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [(500, 500)] * 6
    assert cost <= budget.peak <= 2 * cost and budget.in_use == 0
    with pytest.raises(NeuronscopeError, match="needs about .* MB to decode; the limit is"):
        decode.DecodeBudget(cost // 2).acquire(cost, "one upload")
