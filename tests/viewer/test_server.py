"""The live toolbox's server: frames, panes, protocol, robustness (no browser here).

Most tests talk to the app through FastAPI's TestClient WebSocket with the real
Lite0; the load test and the Ctrl-C test run ``neuronscope serve`` as a real
process on a free loopback port.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neuronscope.errors import NeuronscopeError
from neuronscope.viewer import frames as fr
from neuronscope.viewer import protocol
from neuronscope.viewer.compute import ViewState, default_layer, viewable_layers

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from neuronscope.viewer.server import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def jpeg_bytes(img: Image.Image, size: int | None = None, quality: int = 90) -> bytes:
    if size:
        img = img.resize((size, size))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: these tests share two busy cores with other suites (and a browser)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def layers(lite0):
    return viewable_layers(lite0)


@pytest.fixture(scope="module")
def photos(sample_photos):
    return {k: Image.open(p).convert("RGB") for k, p in sample_photos.items()}


@pytest.fixture(scope="module")
def client(lite0, tmp_path_factory):
    app = create_app(lite0, cache_dir=tmp_path_factory.mktemp("synth"), synth_steps=2, synth_size=32)
    with TestClient(app) as c:
        yield c


def receive_result(ws, want_seq: int | None = None, limit: int = 50):
    """The next result message (and the error messages met on the way)."""
    errors = []
    for _ in range(limit):
        msg = ws.receive()
        if msg.get("bytes") is not None:
            header, blobs = protocol.unpack_result(msg["bytes"])
            if want_seq is None or header["seq"] >= want_seq:
                return header, blobs, errors
        elif msg.get("text") is not None:
            obj = json.loads(msg["text"])
            if obj["type"] == "error":
                errors.append(obj)
    raise AssertionError(f"no result within {limit} messages; errors: {errors}")


def receive_json_type(ws, kind: str, limit: int = 20) -> dict:
    for _ in range(limit):
        msg = ws.receive()
        if msg.get("text") is not None:
            obj = json.loads(msg["text"])
            if obj["type"] == kind:
                return obj
    raise AssertionError(f"no {kind} message")


def decode_picture(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


# --------------------------------------------------------------------------- pure parts


def test_layer_grid_puts_every_channel_in_its_own_tile_scaled_over_the_whole_layer():
    c, h, w = 7, 3, 5
    act = torch.arange(c, dtype=torch.float32)[:, None, None].expand(c, h, w).clone()
    pic, geo, norm = fr.layer_grid(act, pad=2)
    assert (geo.cols, geo.rows) == (3, 3)  # near-square: 7 tiles in 3 x 3
    assert (geo.width, geo.height) == (2 + 3 * (w + 2), 2 + 3 * (h + 2)) == (pic.shape[1], pic.shape[0])
    for k in range(c):
        r, q = divmod(k, geo.cols)
        y, x = geo.pad + r * (geo.tile_h + geo.pad), geo.pad + q * (geo.tile_w + geo.pad)
        tile = pic[y : y + h, x : x + w]
        assert np.all(tile == int(k / (c - 1) * 255 + 0.5)), k  # whole layer 0..6 -> 0..255
    assert torch.allclose(norm[:, 0, 0], torch.arange(c) / (c - 1))


def test_layer_grid_boost_and_gamma_follow_the_toolbox_formulas():
    act = torch.zeros(2, 2, 2)
    act[0, 0, 0], act[1, 0, 0], act[1, 1, 1] = 1.0, 4.0, 2.0
    _, _, plain = fr.layer_grid(act)
    _, _, boosted = fr.layer_grid(act, boost=1.0)
    _, _, gamma = fr.layer_grid(act, gamma=0.5)
    assert plain[0, 0, 0] == pytest.approx(0.25)
    assert boosted[0, 0, 0] == pytest.approx(1.0)  # 0.25 * 0.25**-1: each channel to its own max
    assert boosted[1, 1, 1] == pytest.approx(0.5)
    assert gamma[0, 0, 0] == pytest.approx(0.5)


def test_layer_grid_shrinks_big_layers_by_an_integer_factor_and_shows_vectors():
    pic, geo, _ = fr.layer_grid(torch.rand(96, 112, 112), max_side=600)
    assert max(pic.shape) <= 600 and geo.tile_h == 56
    pic, geo, _ = fr.layer_grid(torch.rand(1000))
    assert geo.channels == 1000 and geo.tile_h == geo.tile_w == 1


def test_latest_slot_hands_over_only_the_newest_frame_and_counts_drops():
    async def scenario():
        slot = fr.LatestSlot()
        for k in range(5):
            slot.put(k)
        first = await slot.take()
        slot.poke()
        poked = await slot.take()
        slot.put(9)
        return first, poked, await slot.take(), slot.received, slot.dropped

    assert asyncio.run(scenario()) == (4, None, 9, 6, 4)


def test_decode_frame_checks_size_type_and_corruption(photos):
    good = jpeg_bytes(photos["coffee"])
    assert fr.decode_frame(good).size == photos["coffee"].size
    with pytest.raises(NeuronscopeError, match="limit is"):
        fr.decode_frame(good, max_bytes=1000)
    with pytest.raises(NeuronscopeError, match="not an image of an accepted type"):
        fr.decode_frame(b"#!/bin/sh\nrm -rf /\n")
    with pytest.raises(NeuronscopeError, match="corrupt|truncated"):
        fr.decode_frame(good[: len(good) // 3])
    with pytest.raises(NeuronscopeError, match="empty"):
        fr.decode_frame(b"")
    with pytest.raises(NeuronscopeError, match="megapixels"):
        fr.decode_frame(good, max_pixels=1000)


def test_fit_square_crops_the_centre_or_stretches():
    img = Image.new("RGB", (300, 100), (255, 0, 0))
    img.paste((0, 0, 255), (100, 0, 200, 100))  # blue centre third
    crop = np.asarray(fr.fit_square(img, 50, "crop"))
    assert crop.shape == (50, 50, 3) and crop[..., 2].mean() > 250
    stretch = np.asarray(fr.fit_square(img, 60, "stretch"))
    assert stretch[30, 5, 0] > 250 and stretch[30, 30, 2] > 250


def test_view_state_accepts_valid_changes_and_names_bad_ones(layers):
    layers = {l.name: l for l in layers}
    s = ViewState(layer="blocks.5")
    s2 = s.updated({"unit": 79, "backprop": "deconv", "boost": 0.5, "gamma": 0.7}, layers)
    assert (s2.unit, s2.backprop, s2.boost, s2.gamma) == (79, "deconv", 0.5, 0.7)
    assert s2.updated({"layer": "head"}, layers).unit is None  # a new layer clears the unit
    for bad, word in [
        ({"unit": 80}, "0..79"),
        ({"layer": "blocks.55"}, "closest"),
        ({"backprop": "magic"}, "gradient"),
        ({"gamma": 2}, "valid"),
        ({"colour": 1}, "unknown state field"),
        ({"unit": True}, "unit"),
    ]:
        with pytest.raises(NeuronscopeError, match=word):
            s.updated(bad, layers)


def test_default_layer_is_a_rectified_block_output_and_every_listed_layer_has_channels(layers):
    assert default_layer(layers) == "blocks.4.dw_act"
    names = [l.name for l in layers]
    assert {"stem", "blocks.0", "blocks.15", "head", "pool", "logits"} <= set(names)
    assert all(l.channels for l in layers)


def test_protocol_round_trips_and_rejects_malformed_messages():
    inc = protocol.parse_incoming(protocol.pack_incoming(2, 70000, b"abc"))
    assert (inc.kind, inc.seq, inc.data, inc.source) == (2, 70000, b"abc", "upload")
    header, blobs = protocol.unpack_result(protocol.pack_result({"seq": 3}, [("a", b"12", "x/y"), ("b", b"345", "x/z")]))
    assert header["seq"] == 3 and blobs == {"a": b"12", "b": b"345"}
    for bad in (b"", b"\x01\x00", b"\x07\x00\x00\x00\x01data"):
        with pytest.raises(NeuronscopeError, match="malformed"):
            protocol.parse_incoming(bad)
    for bad in ("{", "[1,2]", '{"no_type": 1}', "x" * 70000):
        with pytest.raises(NeuronscopeError):
            protocol.parse_text(bad)


# --------------------------------------------------------------------------- the app


def test_page_and_only_the_known_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "app.js" in page.text
    assert client.get("/static/app.js").headers["content-type"].startswith("application/javascript")
    assert client.get("/static/style.css").status_code == 200
    for path in ("/static/server.py", "/static/..%2Fserver.py", "/static/%2E%2E/frames.py", "/static/index.html"):
        assert client.get(path).status_code == 404, path


def test_info_lists_all_layers_with_a_curated_short_list_and_class_names(client, lite0, layers):
    info = client.get("/api/info").json()
    assert info["default_layer"] == "blocks.4.dw_act"
    assert info["curated_layers"] == ["stem.act", *[f"blocks.{i}.dw_act" for i in range(16)], "head.act", "logits"]
    assert info["class_labels"][281] == "tabby" and len(info["class_labels"]) == 1000
    assert info["model"] == lite0.name and info["input_size"] == 224
    assert [l["name"] for l in info["layers"]] == [l.name for l in layers]
    assert info["backprop_available"] is True


def test_uploaded_photo_gets_grid_input_and_top5(client, photos):
    with client.websocket_connect("/ws") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["state"]["layer"] == "blocks.4.dw_act"
        ws.send_bytes(protocol.pack_incoming(protocol.KIND_UPLOAD, 1, jpeg_bytes(photos["coffee"])))
        header, blobs, errors = receive_result(ws, 1)
    assert not errors
    assert header["top5"][0]["label"] == "espresso"
    assert len(header["top5"]) == 5 and sum(t["p"] for t in header["top5"]) <= 1.0
    assert header["shape"] == [240, 28, 28] and header["scale"] == "channel" and header["grid_kind"] == "activations"
    grid = decode_picture(blobs["grid"])
    assert grid.shape[:2] == (header["grid"]["height"], header["grid"]["width"])
    assert decode_picture(blobs["input"]).shape == (224, 224, 3)
    assert header["stats"]["source"] == "upload"


def test_choosing_a_unit_redraws_the_same_frame_with_unit_map_and_backprop(client, photos, lite0):
    from neuronscope.attribution import backward_view

    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_bytes(protocol.pack_incoming(protocol.KIND_UPLOAD, 1, jpeg_bytes(photos["chelsea"])))
        first, _, _ = receive_result(ws, 1)
        ws.send_text(json.dumps({"type": "state", "layer": "blocks.10", "unit": 7, "backprop": "guided"}))
        assert receive_json_type(ws, "state")["state"]["unit"] == 7
        header, blobs, errors = receive_result(ws)
    assert not errors
    assert header["seq"] == first["seq"] == 1  # no new frame: the last one was redone
    assert header["layer"] == "blocks.10" and header["unit"]["index"] == 7
    assert header["backprop"]["status"] == "ok"
    assert decode_picture(blobs["unit"]).shape == (224, 224, 3)
    assert decode_picture(blobs["backprop"]).shape == (224, 224, 3)
    # the pane shows the attribution module's guided backprop of this frame
    x = fr.image_to_tensor(fr.fit_square(Image.open(io.BytesIO(jpeg_bytes(photos["chelsea"]))), 224))
    g = backward_view(lite0, x, "blocks.10", 7, "guided")
    assert header["backprop"]["absmax"] == pytest.approx(float(g.abs().max()), rel=1e-4)
    # the unit's statistics are those of the real activation
    from neuronscope.taps import activations

    a = activations(lite0, x, ["blocks.10"])["blocks.10"][0, 7]
    assert header["unit"]["max"] == pytest.approx(float(a.max()), rel=1e-4)


def test_fit_toggle_redraws_a_non_square_upload_cropped_or_stretched(client, photos):
    rocket = photos["rocket"]  # landscape, 640 x 427
    assert rocket.width > 1.4 * rocket.height
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_bytes(protocol.pack_incoming(2, 1, jpeg_bytes(rocket)))
        _, crop, _ = receive_result(ws, 1)
        ws.send_text(json.dumps({"type": "state", "fit": "stretch"}))
        header, stretch, _ = receive_result(ws, 1)
    want_crop = np.asarray(fr.fit_square(rocket, 224, "crop"), dtype=float)
    want_stretch = np.asarray(fr.fit_square(rocket, 224, "stretch"), dtype=float)
    got_crop, got_stretch = decode_picture(crop["input"]).astype(float), decode_picture(stretch["input"]).astype(float)
    def err(a, b):
        return np.abs(a - b).mean()

    assert err(got_crop, want_crop) < 6 and err(got_stretch, want_stretch) < 6  # JPEG noise only
    assert err(got_crop, want_stretch) > 2 * err(got_crop, want_crop)
    assert err(got_stretch, want_crop) > 2 * err(got_stretch, want_stretch)
    assert header["seq"] == 1


def test_unknown_first_layer_is_refused_with_the_closest_names(lite0, tmp_path):
    with pytest.raises(NeuronscopeError, match="closest: .*blocks.9"):
        create_app(lite0, layer="blocks.99", cache_dir=tmp_path, synth=False)


def test_backprop_pane_says_unavailable_without_a_backward_view(lite0, photos, tmp_path):
    app = create_app(lite0, cache_dir=tmp_path, backward_view=None, synth=False)
    with TestClient(app) as c, c.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_text(json.dumps({"type": "state", "unit": 3, "backprop": "gradient"}))
        ws.send_bytes(protocol.pack_incoming(1, 1, jpeg_bytes(photos["rocket"], 224)))
        header, blobs, _ = receive_result(ws, 1)
    assert header["backprop"]["status"] == "unavailable" and "unavailable" in header["backprop"]["message"]
    assert "backprop" not in blobs and "unit" in blobs


def test_a_failing_backprop_is_reported_and_frames_keep_flowing(lite0, photos, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    app = create_app(lite0, cache_dir=tmp_path, backward_view=broken, synth=False)
    with TestClient(app) as c, c.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_text(json.dumps({"type": "state", "unit": 0, "backprop": "deconv"}))
        for seq in (1, 2):
            ws.send_bytes(protocol.pack_incoming(1, seq, jpeg_bytes(photos["astronaut"], 224)))
            header, _, _ = receive_result(ws, seq)
            assert header["backprop"]["status"] == "error" and "boom" in header["backprop"]["message"]


def test_bad_uploads_and_malformed_messages_get_clear_errors_and_the_session_goes_on(client, photos):
    good = jpeg_bytes(photos["coffee"], 224)
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        cases = [
            (protocol.pack_incoming(2, 1, b"just some text, not a picture"), "not an image of an accepted type"),
            (protocol.pack_incoming(2, 2, good[:300]), "corrupt or truncated"),
            (b"\x01", "malformed frame message"),
            ("{not json", "not valid JSON"),
            (json.dumps({"type": "state", "layer": "../../etc/passwd"}), "no viewable layer"),
            (json.dumps({"type": "state", "unit": 10**9}), "is not in layer"),
            (json.dumps({"type": "teleport"}), "unknown message type"),
        ]
        for message, words in cases:
            (ws.send_bytes if isinstance(message, bytes) else ws.send_text)(message)
            err = receive_json_type(ws, "error")
            assert words in err["message"], (words, err)
        ws.send_text(json.dumps({"type": "ping"}))
        assert receive_json_type(ws, "pong")["type"] == "pong"
        ws.send_bytes(protocol.pack_incoming(2, 3, good))
        header, _, _ = receive_result(ws, 3)
        assert header["stats"]["malformed"] >= 5 and header["top5"][0]["label"] == "espresso"


def test_upload_over_the_size_cap_is_refused_before_decoding(lite0, photos, tmp_path):
    app = create_app(lite0, cache_dir=tmp_path, max_upload_mb=0.01, synth=False)
    big = jpeg_bytes(photos["astronaut"], quality=98)
    assert len(big) > 0.01 * (1 << 20)
    with TestClient(app) as c, c.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_bytes(protocol.pack_incoming(2, 1, big))
        err = receive_json_type(ws, "error")
    assert err["source"] == "upload" and "the limit is" in err["message"]


def test_a_burst_of_frames_is_answered_for_the_newest_one_with_stale_ones_dropped(client, photos):
    frames = [jpeg_bytes(photos[k], 224) for k in ("coffee", "chelsea", "rocket")]
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        for seq in range(1, 41):
            ws.send_bytes(protocol.pack_incoming(1, seq, frames[seq % 3]))
        seen = []
        while True:
            header, _, _ = receive_result(ws)
            seen.append(header["seq"])
            if header["seq"] == 40:
                break
    assert seen == sorted(seen) and len(seen) < 40  # in order, and most stale frames skipped
    assert header["stats"]["dropped"] >= 40 - len(seen) - 1


def test_websocket_from_another_site_and_foreign_host_header_are_refused(client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_json()
    assert client.get("/api/info", headers={"host": "evil.example"}).status_code == 400


def test_api_rejects_unknown_layers_and_units_without_touching_paths(client):
    for params in ({"layer": "../../etc", "unit": 0}, {"layer": "blocks.5", "unit": 80}, {"layer": "blocks.5", "unit": -1}):
        r = client.get("/api/synth", params=params)
        assert r.status_code in (400, 422), params
    r = client.get("/api/examples", params={"layer": "blocks.5", "unit": 4})
    assert r.json()["status"] == "none" and "neuronscope topk" in r.json()["message"]


def test_synthetic_image_renders_once_in_the_background_and_is_cached(client):
    q = {"layer": "blocks.3", "unit": 5}
    first = client.get("/api/synth", params=q).json()
    assert first["status"] in ("queued", "rendering", "ready")
    deadline = time.time() + 60
    while client.get("/api/synth", params=q).json()["status"] != "ready":
        assert time.time() < deadline, "render did not finish"
        time.sleep(0.2)
    png = client.get("/api/synth.png", params=q)
    assert png.status_code == 200 and decode_picture(png.content).shape == (32, 32, 3)
    viewer = client.app.state.viewer
    path = viewer.synth.path("blocks.3", 5)
    assert path.exists() and path.is_relative_to(viewer.synth.cache_dir)
    mtime = path.stat().st_mtime_ns
    assert client.get("/api/synth", params=q).json()["status"] == "ready"
    assert path.stat().st_mtime_ns == mtime  # served from the cache, not rendered again


def test_dataset_examples_pane_shows_a_real_topk_stores_images_and_max_patches(lite0, sample_photos, tmp_path):
    from neuronscope.data.scan import run_topk
    from neuronscope.data.store import Store

    store_path = tmp_path / "store"
    run_topk(lite0, [str(p) for p in sample_photos.values()], ["blocks.5"], k=3, store=store_path, batch_size=4,
             size=96, progress=False)
    app = create_app(lite0, cache_dir=tmp_path / "synth", store=store_path, synth=False)
    with TestClient(app) as c, Store.open(store_path) as s:
        assert c.get("/api/info").json()["examples_available"] is True
        d = c.get("/api/examples", params={"layer": "blocks.5", "unit": 11}).json()
        want = s.entries("blocks.5", 11)
        assert d["status"] == "ok" and len(d["items"]) == len(want) == 3
        assert [it["score"] for it in d["items"]] == [round(e.value, 4) for e in want]
        assert [it["caption"] for it in d["items"]] == [Path(e.path).name for e in want]
        img = c.get("/api/examples/img", params={"layer": "blocks.5", "unit": 11, "rank": 0})
        assert img.status_code == 200 and decode_picture(img.content).shape == (96, 96, 3)
        patch = c.get("/api/examples/img", params={"layer": "blocks.5", "unit": 11, "rank": 0, "kind": "patch"})
        assert patch.status_code == 200 and decode_picture(patch.content).ndim == 3
        other = c.get("/api/examples", params={"layer": "blocks.10", "unit": 0}).json()
        assert other["status"] == "none" and "--layers blocks.10" in other["message"]


def test_serve_refuses_a_non_local_bind_unless_asked(capsys):
    from neuronscope.cli import main
    from neuronscope.cli.serve import is_local

    assert is_local("127.0.0.1") and is_local("localhost") and is_local("::1") and is_local("127.0.0.2")
    assert not is_local("0.0.0.0") and not is_local("192.168.1.4")
    assert main(["serve", "efficientnet_lite0", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--allow-remote" in err and "Traceback" not in err


# --------------------------------------------------------------------------- a real server process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server_process(tmp_path_factory):
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "neuronscope", "serve", "efficientnet_lite0", "--port", str(port), "--device", "cpu",
           "--no-synth", "--threads", "1", "--cache-dir", str(tmp_path_factory.mktemp("cache"))]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"neuronscope serve did not start: {proc.stdout.read()}")
            time.sleep(0.2)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_load_of_1000_frames_and_200_malformed_messages_leaves_the_server_up_with_bounded_memory(
    server_process, photos
):
    from websockets.sync.client import connect

    proc, port = server_process
    frames = [jpeg_bytes(photos[k], 224, quality=80) for k in ("coffee", "chelsea", "rocket", "astronaut")]
    bad = [
        b"\x01",
        b"\x09\x00\x00\x00\x01xyz",
        protocol.pack_incoming(2, 0, b"GIF89a but not really"),
        protocol.pack_incoming(2, 0, frames[0][:500]),
        "{oops",
        "[]",
        json.dumps({"type": "state", "layer": "nope"}),
        json.dumps({"type": "state", "unit": -3}),
        json.dumps({"type": "fly"}),
        "z" * 70_000,
    ]
    sent_frames = sent_bad = results = errors = 0
    rss = []
    seq = 0
    with connect(f"ws://127.0.0.1:{port}/ws", max_size=2**24, open_timeout=30) as ws:
        json.loads(ws.recv(timeout=30))  # hello
        for batch in range(20):
            for i in range(50):  # 50 frames back to back, 10 malformed messages among them
                seq += 1
                ws.send(protocol.pack_incoming(1, seq, frames[(seq + batch) % 4]))
                sent_frames += 1
                if i % 5 == 0:
                    ws.send(bad[(batch + i // 5) % len(bad)])
                    sent_bad += 1
            while True:  # the newest frame of the batch is always answered
                msg = ws.recv(timeout=60)
                if isinstance(msg, bytes):
                    header, _ = protocol.unpack_result(msg)
                    results += 1
                    if header["seq"] == seq:
                        break
                elif json.loads(msg)["type"] == "error":
                    errors += 1
            rss.append(_rss_mb(proc.pid))
    assert sent_frames == 1000 and sent_bad == 200
    assert proc.poll() is None, "server died"
    assert 20 <= results < 1000  # stale frames were dropped, every batch's newest was answered
    assert errors >= 150  # every malformed message is answered with an error (some corrupt frames are dropped first)
    growth = max(rss[10:]) - rss[5]
    assert growth < 60, f"RSS grew {growth:.0f} MB over the second half of the load: {rss}"
    assert json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read())["ok"]
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=30) as ws:  # a new page still works
        json.loads(ws.recv(timeout=30))
        ws.send(protocol.pack_incoming(2, 1, frames[0]))
        while isinstance(msg := ws.recv(timeout=60), str):
            pass
        assert protocol.unpack_result(msg)[0]["top5"][0]["label"] == "espresso"


def _state_and_cpu_seconds(pid: int) -> tuple[str, float]:
    """A process's state letter and CPU time (user + system) from /proc; an exited, unreaped one reads 'Z'."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds_to_exit(proc: subprocess.Popen, *, cpu_budget: float, stall: float) -> float:
    """Wait until ``proc`` exits (left unreaped, so its CPU time can still be read); return the CPU seconds
    it spent from now. Fails when it spends more than ``cpu_budget`` of them, or runs nothing for ``stall``
    seconds of wall time (a hang). Not a wall-clock limit: on a loaded machine the same work takes longer."""
    _, start = _state_and_cpu_seconds(proc.pid)
    last, since = start, time.monotonic()
    while True:
        state, cpu = _state_and_cpu_seconds(proc.pid)
        if state == "Z":
            return cpu - start
        if cpu - start > cpu_budget:
            proc.kill()
            pytest.fail(f"the server spent more than {cpu_budget:g} s of CPU time stopping")
        if cpu != last:
            last, since = cpu, time.monotonic()
        elif time.monotonic() - since > stall:
            proc.kill()
            pytest.fail(f"the server ran nothing for {stall:g} s while stopping: it hangs")
        time.sleep(0.05)


def test_ctrl_c_stops_the_server_cleanly_even_with_a_page_connected(server_process):
    # Stopping costs ~1 s of CPU here, most of it the interpreter unloading torch at exit; at a load of
    # 10-12 on 2 cores a niced test's server got so little of it that this took over 20 s of wall time,
    # the limit this test used to have. So the limits are the server's own CPU time and a stall.
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    proc, port = server_process
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=30) as ws:
        json.loads(ws.recv(timeout=30))
        proc.send_signal(signal.SIGINT)
        _cpu_seconds_to_exit(proc, cpu_budget=20, stall=20)
        code = proc.wait(timeout=30)
        with pytest.raises(ConnectionClosed) as closed:  # the server closed the page's connection itself
            ws.recv(timeout=30)
    out = proc.stdout.read()
    assert code == 0, out
    assert "stopped" in out and "Traceback" not in out
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012, closed.value  # "service restart"


# --------------------------------------------------------------------------- first sight and the 2015 toolbox's modes


def tile_contrast(pic: np.ndarray, geo) -> float:
    """Mean over tiles of the standard deviation inside each tile: how much structure shows."""
    out = []
    for k in range(geo.channels):
        r, q = divmod(k, geo.cols)
        y, x = geo.pad + r * (geo.tile_h + geo.pad), geo.pad + q * (geo.tile_w + geo.pad)
        out.append(pic[y : y + geo.tile_h, x : x + geo.tile_w].astype(float).std())
    return float(np.mean(out))


def test_per_channel_and_robust_scaling_show_a_photos_structure_where_layer_scaling_is_flat(lite0, photos):
    from neuronscope.taps import activations

    x = fr.image_to_tensor(fr.fit_square(photos["chelsea"], 224))
    act = activations(lite0, x, ["blocks.5"])["blocks.5"][0]  # a signed linear block output: the old grey default
    flat_pic, geo, _ = fr.layer_grid(act, scale="layer")
    chan_pic, _, chan = fr.layer_grid(act, scale="channel")
    rob_pic, _, rob = fr.layer_grid(act, scale="robust")
    flat = tile_contrast(flat_pic, geo)
    assert tile_contrast(chan_pic, geo) > 1.6 * flat and tile_contrast(rob_pic, geo) > 1.3 * flat  # measured 44.7, 36.9 vs 23.8
    # per channel: each live channel spans its own 0..1
    live = (act.amax((1, 2)) - act.amin((1, 2))) > 0.1 * float(act.max() - act.min())
    assert torch.allclose(chan[live].amax((1, 2)), torch.ones(int(live.sum())), atol=1e-5)
    assert float(rob.min()) == 0.0 and float(rob.max()) == 1.0


def test_signed_diffs_are_green_positive_red_negative_and_zero_black():
    d = torch.zeros(2, 1, 3)
    d[0, 0, 0], d[0, 0, 2], d[1, 0, 1] = 2.0, -1.0, 0.5
    col = fr.signed_colors(d, scale="layer")
    assert col.shape == (2, 3, 1, 3)
    assert torch.allclose(col[0, :, 0, 0], fr.NEG_POS[1]) and torch.allclose(col[0, :, 0, 2], fr.NEG_POS[0] * 0.5)
    assert float(col[0, :, 0, 1].abs().sum()) == 0.0
    pic, geo, _ = fr.layer_grid(d, signed=True, scale="layer", pad=1)
    assert pic.shape == (geo.height, geo.width, 3)


def test_robust_backprop_contrast_makes_guided_backprop_visible(lite0, photos):
    from neuronscope.attribution import backward_view
    from neuronscope.viewer.compute import backprop_picture

    x = fr.image_to_tensor(fr.fit_square(photos["chelsea"], 224))
    g = backward_view(lite0, x, "logits", 281, "guided")[0]
    plain = backprop_picture(g, "raw", "max").astype(float)
    robust = backprop_picture(g, "raw", "robust").astype(float)
    # distance from mid-gray: the plain max scaling leaves almost every pixel grey
    assert np.abs(robust - 127.5).mean() > 2 * np.abs(plain - 127.5).mean()
    n_plain, n_robust = backprop_picture(g, "norm", "max"), backprop_picture(g, "norm", "robust")
    assert n_robust.mean() > 2 * n_plain.mean()


def test_grid_diffs_and_a_frozen_backprop_unit(client, photos, lite0):
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_bytes(protocol.pack_incoming(protocol.KIND_UPLOAD, 1, jpeg_bytes(photos["chelsea"])))
        receive_result(ws, 1)
        ws.send_text(json.dumps({"type": "state", "layer": "blocks.4.dw_act", "unit": 3, "backprop": "guided",
                                 "bp_frozen": ["logits", 281], "show_back": True}))
        receive_json_type(ws, "state")
        header, blobs, errors = receive_result(ws)
        assert not errors
        assert header["grid_kind"] == "diffs" and header["backprop"]["source"] == "logits:281"
        assert header["backprop"]["frozen"] is True and header["backprop"]["label"] == "tabby"
        assert header["unit"]["index"] == 3  # the selection is independent of the frozen unit
        grid = decode_picture(blobs["grid"]).astype(int)
        assert grid.ndim == 3 and np.abs(grid[..., 1] - grid[..., 0]).mean() > 1  # red and green
        ws.send_text(json.dumps({"type": "state", "layer": "head.act", "bp_frozen": ["blocks.4.dw_act", 3]}))
        receive_json_type(ws, "state")
        header, _, _ = receive_result(ws)
        assert header["grid_kind"] == "activations" and "comes after the backprop unit" in header["grid_note"]
        for bad in (["logits", 5000], ["nope", 1], [1, 2], "logits:3"):
            ws.send_text(json.dumps({"type": "state", "bp_frozen": bad}))
            assert "bp_frozen" in receive_json_type(ws, "error")["message"]
    # the diffs are the gradient of the frozen unit at the layer (guided rules), seeded with its own activation
    from neuronscope.viewer.backward import layer_diffs

    x = fr.image_to_tensor(fr.fit_square(photos["chelsea"], 224))
    d = layer_diffs(lite0, x, "logits", 281, "gradient", "head.act")
    with torch.enable_grad():
        from neuronscope.taps import tap

        with tap(lite0, ["head.act"]) as taps:
            logits = taps.run(x.clone().requires_grad_(True))
            h = taps["head.act"]
        (want,) = torch.autograd.grad(logits[0, 281], h, grad_outputs=logits[0, 281].detach())
    assert torch.allclose(d, want[0], rtol=1e-4, atol=1e-7)


def test_a_folder_of_inputs_is_stepped_through_by_index_only(lite0, photos, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for name in ("coffee", "rocket"):
        photos[name].save(folder / f"{name}.jpg", "JPEG", quality=90)
    app = create_app(lite0, cache_dir=tmp_path / "synth", inputs=folder, synth=False)
    with TestClient(app) as c:
        assert c.get("/api/info").json()["inputs"] == ["coffee.jpg", "rocket.jpg"]
        with c.websocket_connect("/ws") as ws:
            ws.receive_json()
            ws.send_text(json.dumps({"type": "input", "index": 1}))
            header, _, errors = receive_result(ws)
            assert not errors and header["input"] == {"index": 1, "name": "rocket.jpg", "count": 2}
            assert header["stats"]["source"] == "folder"
            ws.send_text(json.dumps({"type": "input", "index": 0}))
            header, _, _ = receive_result(ws)
            assert header["input"]["name"] == "coffee.jpg" and header["top5"][0]["label"] == "espresso"
            for bad in (2, -1, "../etc/passwd", True):
                ws.send_text(json.dumps({"type": "input", "index": bad}))
                assert "input index" in receive_json_type(ws, "error")["message"]


def test_pattern_mode_renders_a_layer_in_the_background_and_reads_an_atlas_store(lite0, tmp_path):
    from neuronscope.atlas.store import AtlasStore, UnitResult
    from neuronscope.images import png_bytes

    app = create_app(lite0, cache_dir=tmp_path / "cache", synth=True, pattern_size=16, pattern_steps=2)
    with TestClient(app) as c:
        q = {"layer": "stem.act"}
        first = c.get("/api/patterns", params=q).json()
        assert first["total"] == 32 and first["status"] in ("queued", "rendering") and first["source"] == "rendered"
        deadline = time.time() + 120
        while (d := c.get("/api/patterns", params=q).json())["status"] != "ready":
            assert time.time() < deadline, d
            time.sleep(0.3)
        pic = decode_picture(c.get("/api/patterns.png", params=q).content)
        assert pic.shape == (d["geometry"]["height"], d["geometry"]["width"], 3)
        assert d["geometry"]["cols"] == fr.grid_shape(32)[0]
        folder = app.state.viewer.patterns.folder("stem.act")
        assert len(list(folder.glob("*.png"))) == 32  # cached: one file per unit
    # an atlas store covering the layer is used as it is, nothing rendered
    store = AtlasStore.open_or_create(tmp_path / "site" / "store", {"format": 1, "model": lite0.name})
    store.add_layers([("stem.act", 32, (32, 112, 112))])
    red = Image.new("RGB", (20, 20), (255, 0, 0))
    store.put_units([UnitResult("stem.act", u, png_bytes(red), 1.0) for u in range(32)])
    store.close()
    app = create_app(lite0, cache_dir=tmp_path / "cache2", synth=False, atlas=tmp_path / "site", pattern_size=16)
    with TestClient(app) as c:
        d = c.get("/api/patterns", params={"layer": "stem.act"}).json()
        assert d["status"] == "ready" and d["source"] == "atlas" and d["done"] == 32
        pic = decode_picture(c.get("/api/patterns.png", params={"layer": "stem.act"}).content)
        assert tuple(pic[5, 5]) == (255, 0, 0)


def test_backward_views_of_the_top9_images(lite0, sample_photos, tmp_path):
    from neuronscope.attribution import backward_view
    from neuronscope.data.scan import run_topk
    from neuronscope.data.store import Store
    from neuronscope.viewer.compute import backprop_picture

    store_path = tmp_path / "store"
    run_topk(lite0, [str(p) for p in sample_photos.values()], ["blocks.5"], k=3, store=store_path, batch_size=4,
             size=96, progress=False)
    app = create_app(lite0, cache_dir=tmp_path / "synth", store=store_path, synth=False)
    with TestClient(app) as c, Store.open(store_path) as s:
        q = {"layer": "blocks.5", "unit": 11, "rank": 0, "mode": "deconv", "filter": "norm"}
        r = c.get("/api/examples/backprop.jpg", params=q)
        assert r.status_code == 200
        got = decode_picture(r.content).astype(float)
        img = s.view(s.entries("blocks.5", 11)[0].image_id).convert("RGB")
        x = fr.image_to_tensor(fr.fit_square(img, 224))
        want = backprop_picture(backward_view(lite0, x, "blocks.5", 11, "deconv")[0], "norm").astype(float)
        assert got.shape == want.shape == (224, 224, 3) and np.abs(got - want).mean() < 4  # JPEG noise
        assert c.get("/api/examples/backprop.jpg", params={**q, "mode": "magic"}).status_code == 400
        assert c.get("/api/examples/backprop.jpg", params={**q, "rank": 50}).status_code == 404


def test_serve_hint_is_a_working_command_and_the_store_it_makes_is_found(lite0, photos, tmp_path, monkeypatch):
    import shlex

    from neuronscope.cli import main
    from neuronscope.cli.serve import store_hint

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("coffee", "chelsea"):
        photos[name].resize((96, 96)).save(folder / f"{name}.jpg")
    hint = store_hint(lite0.name, "efficientnet_lite0", "blocks.4.dw_act", str(folder), None)
    assert str(tmp_path / "topk-efficientnet_lite0" / "store") in hint  # the absolute place it looks
    topk_cmd = next(l.strip() for l in hint.splitlines() if l.strip().startswith("neuronscope topk"))
    assert main(shlex.split(topk_cmd)[1:] + ["--no-sheets"]) == 0  # the hint runs as printed (sheets skipped: time)
    app = create_app(lite0, cache_dir=tmp_path / "synth", images=folder, synth=False)
    with TestClient(app) as c:
        info = c.get("/api/info").json()
        assert info["examples_available"] is True
        assert info["examples_store"].endswith("topk-efficientnet_lite0/store")
        d = c.get("/api/examples", params={"layer": "blocks.4.dw_act", "unit": 0}).json()
        assert d["status"] == "ok" and len(d["items"]) == 2
