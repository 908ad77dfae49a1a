"""The live toolbox's ASGI app: the page, a WebSocket for frames, a small JSON API.

``create_app(model)`` returns a FastAPI app; ``neuronscope serve`` runs it with
uvicorn on 127.0.0.1. Per connection, a receiver task puts each incoming frame
in a newest-wins slot and a worker task processes whatever is newest, so a slow
model drops frames instead of falling behind. All model work runs in one
worker thread shared by every connection (hooks on a shared model must not
interleave); synthetic images render in their own thread on a model copy.

Nothing the page sends becomes a server-side path: layers must be names from
the model's layer list, units integers in range, pictures are looked up by
(layer, unit, rank).
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import __version__
from ..errors import NeuronscopeError, closest
from ..models import Model
from . import protocol
from .compute import Frame, FrameProcessor, ViewState, default_layer as pick_default_layer, layer_table, viewable_layers
from .examples import ExamplesPane, open_examples_store
from .frames import LatestSlot
from .synth import SynthRenderer

log = logging.getLogger("neuronscope.viewer")

LOCAL_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]", "testserver"]
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "neuronscope" / "viewer"
_STATIC = {"app.js": "application/javascript", "style.css": "text/css"}


def _static(name: str) -> bytes:
    return resources.files("neuronscope.viewer").joinpath("static", name).read_bytes()


class Viewer:
    """Everything the app shares between connections."""

    def __init__(
        self,
        model: Model,
        *,
        store=None,
        images=None,
        cache_dir=None,
        layer: str | None = None,
        max_upload_mb: float = 20.0,
        backward_view="auto",
        synth: bool = True,
        synth_size: int = 128,
        synth_steps: int = 128,
        synth_preset: str = "lucid",
    ):
        self.model = model
        self.layers = viewable_layers(model)
        self.layer_index = {l.name: l for l in self.layers}
        if layer is not None and layer not in self.layer_index:
            hint = closest(layer, list(self.layer_index))
            raise NeuronscopeError(
                f"model {model.name!r} has no viewable layer {layer!r}"
                + (f"; closest: {', '.join(hint)}" if hint else "")
            )
        self.default_layer = layer or pick_default_layer(self.layers)
        self.max_upload_bytes = int(max_upload_mb * (1 << 20))
        self.processor = FrameProcessor(model, self.layers, backward_view=backward_view)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neuronscope-model")
        self.store = open_examples_store(model, store=store, images=images)
        self.examples = ExamplesPane(model, self.store)
        cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
        self.synth = SynthRenderer(model, cache, size=synth_size, steps=synth_steps, preset=synth_preset) if synth else None
        self.connections = 0

    def check_unit(self, layer: str, unit: int) -> None:
        info = self.layer_index.get(layer)
        if info is None:
            raise NeuronscopeError(f"no viewable layer {layer!r}; GET /api/info lists them")
        if not 0 <= unit < (info.channels or 0):
            raise NeuronscopeError(f"unit {unit} is not in layer {layer} (valid: 0..{(info.channels or 0) - 1})")

    def info(self) -> dict:
        return {
            "version": __version__,
            "model": self.model.name,
            "input_size": self.model.input_size,
            "layers": layer_table(self.layers),
            "default_layer": self.default_layer,
            "max_upload_bytes": self.max_upload_bytes,
            "backprop_available": self.processor.backprop_available,
            "synth_available": self.synth is not None and self.synth.available(),
            "examples_available": self.store is not None,
        }

    def close(self) -> None:
        if self.synth is not None:
            self.synth.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


class Session:
    """One page's connection: its view state, newest frame and worker."""

    def __init__(self, viewer: Viewer, ws: WebSocket):
        self.viewer, self.ws = viewer, ws
        self.state = ViewState(layer=viewer.default_layer)
        self.slot = LatestSlot()
        self.frame: Frame | None = None
        self.frame_source = "frame"
        self.processed = 0
        self.malformed = 0
        self._send_lock = asyncio.Lock()  # the receiver and the worker both send

    async def send_json(self, obj: dict) -> None:
        async with self._send_lock:
            await self.ws.send_json(obj)

    async def send_bytes(self, data: bytes) -> None:
        async with self._send_lock:
            await self.ws.send_bytes(data)

    async def error(self, message: str, source: str, seq: int | None = None) -> None:
        await self.send_json({"type": "error", "source": source, "seq": seq, "message": message})

    async def on_bytes(self, message: bytes) -> None:
        try:
            item = protocol.parse_incoming(message)
        except NeuronscopeError as e:
            self.malformed += 1
            await self.error(str(e), "message")
            return
        if len(item.data) > self.viewer.max_upload_bytes:
            await self.error(
                f"the file is {len(item.data) / 1e6:.1f} MB; the limit is {self.viewer.max_upload_bytes / 1e6:.0f} MB",
                item.source,
                item.seq,
            )
            return
        self.slot.put(item)

    async def on_text(self, message: str) -> None:
        try:
            obj = protocol.parse_text(message)
            kind = obj["type"]
            if kind == "ping":
                await self.send_json({"type": "pong"})
                return
            if kind != "state":
                raise NeuronscopeError(f"unknown message type {kind!r} (valid: state, ping)")
            changes = {k: v for k, v in obj.items() if k != "type"}
            self.state = self.state.updated(changes, self.viewer.layer_index)
        except NeuronscopeError as e:
            self.malformed += 1
            await self.error(str(e), "message")
            return
        await self.send_json({"type": "state", "state": asdict(self.state)})
        self.slot.poke()

    async def work(self) -> None:
        """Process the newest frame, again and again, until the connection ends."""
        loop = asyncio.get_running_loop()
        processor = self.viewer.processor
        while True:
            item = await self.slot.take()
            if item is not None:
                try:
                    self.frame = await loop.run_in_executor(
                        None,
                        lambda: processor.decode(
                            item.seq,
                            item.data,
                            name="the uploaded file" if item.source == "upload" else "the video frame",
                            fit=self.state.fit,
                            max_bytes=self.viewer.max_upload_bytes,
                        ),
                    )
                except NeuronscopeError as e:
                    await self.error(str(e), item.source, item.seq)
                    continue
                self.frame_source = item.source
            if self.frame is None:
                continue
            frame, state = self.frame, self.state
            try:
                result = await loop.run_in_executor(self.viewer.executor, processor.process, frame, state)
            except NeuronscopeError as e:
                await self.error(str(e), "frame", frame.seq)
                continue
            except RuntimeError as e:
                if "shutdown" in str(e):  # the executor stopped: the app is shutting down
                    return
                log.exception("processing a frame failed")
                await self.error(f"internal error while processing the frame: {e}", "frame", frame.seq)
                continue
            except Exception as e:  # noqa: BLE001 - one bad frame must not end the live view
                log.exception("processing a frame failed")
                await self.error(f"internal error while processing the frame: {type(e).__name__}: {e}", "frame", frame.seq)
                continue
            self.processed += 1
            result.header["stats"] = {
                "received": self.slot.received,
                "dropped": self.slot.dropped,
                "processed": self.processed,
                "malformed": self.malformed,
                "source": self.frame_source,
            }
            await self.send_bytes(protocol.pack_result(result.header, result.blobs))


def _origin_ok(ws: WebSocket) -> bool:
    """Browsers send Origin; it must be this server (blocks other sites' pages)."""
    origin = ws.headers.get("origin")
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == ws.headers.get("host", "").lower()


def create_app(
    model: Model,
    *,
    store=None,
    images=None,
    cache_dir=None,
    layer: str | None = None,
    max_upload_mb: float = 20.0,
    allowed_hosts: list[str] | None = None,
    backward_view="auto",
    synth: bool = True,
    synth_size: int = 128,
    synth_steps: int = 128,
    synth_preset: str = "lucid",
) -> FastAPI:
    """The live toolbox app for ``model``.

    ``store``/``images``: the top-k store (path or object) and the folder it was
    computed over, for the top-9 pane. ``cache_dir``: where synthetic images are
    cached (default ``~/.cache/neuronscope/viewer``). ``layer``: the layer shown
    first (default ``blocks.5`` or a middle block). ``allowed_hosts``: Host
    header values accepted (default: local names only; ``["*"]`` for a
    deliberate non-local bind). ``backward_view``: the backprop function
    (default: ``neuronscope.attribution.backward_view`` when present).
    """
    viewer = Viewer(
        model,
        store=store,
        images=images,
        cache_dir=cache_dir,
        layer=layer,
        max_upload_mb=max_upload_mb,
        backward_view=backward_view,
        synth=synth,
        synth_size=synth_size,
        synth_steps=synth_steps,
        synth_preset=synth_preset,
    )

    @asynccontextmanager
    async def lifespan(app):
        yield
        viewer.close()

    app = FastAPI(title="neuronscope viewer", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.viewer = viewer
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOCAL_HOSTS)

    @app.exception_handler(NeuronscopeError)
    async def _user_error(request, exc: NeuronscopeError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    page_headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse(_static("index.html"), headers=page_headers)

    @app.get("/static/{name}")
    def static(name: str):
        if name not in _STATIC:  # a fixed set of files: no path is built from the request
            return JSONResponse({"error": f"no static file {name!r}"}, status_code=404)
        return Response(_static(name), media_type=_STATIC[name], headers=page_headers)

    @app.get("/healthz")
    def healthz():
        return {"ok": True, "connections": viewer.connections}

    @app.get("/api/info")
    def info():
        return viewer.info()

    @app.get("/api/synth")
    def synth_status(layer: str, unit: int = Query(ge=0)):
        viewer.check_unit(layer, unit)
        if viewer.synth is None:
            return {"status": "unavailable", "message": "synthetic images are turned off (--no-synth)"}
        return viewer.synth.status(layer, unit)

    @app.get("/api/synth.png")
    def synth_image(layer: str, unit: int = Query(ge=0)):
        viewer.check_unit(layer, unit)
        path = viewer.synth.path(layer, unit) if viewer.synth is not None else None
        if path is None or not path.exists():
            return JSONResponse({"error": "not rendered yet"}, status_code=404)
        return Response(path.read_bytes(), media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/examples")
    def examples(layer: str, unit: int = Query(ge=0)):
        viewer.check_unit(layer, unit)
        return viewer.examples.describe(layer, unit)

    @app.get("/api/examples/img")
    def example_image(layer: str, unit: int = Query(ge=0), rank: int = Query(ge=0, le=99), kind: str = "image"):
        viewer.check_unit(layer, unit)
        if kind not in ("image", "patch"):
            raise NeuronscopeError(f"kind {kind!r} is not valid; valid: image, patch")
        data = viewer.examples.picture(layer, unit, rank, kind)
        if data is None:
            return JSONResponse({"error": "no such example"}, status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.websocket("/ws")
    async def ws_endpoint(ws: WebSocket):
        if not _origin_ok(ws):
            await ws.close(code=1008)
            return
        await ws.accept()
        session = Session(viewer, ws)
        viewer.connections += 1
        worker = asyncio.create_task(session.work())
        try:
            await session.send_json(
                {"type": "hello", "state": asdict(session.state), "model": model.name, "input_size": model.input_size}
            )
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                if worker.done():  # the worker died: report it and stop this connection
                    exc = worker.exception()
                    log.error("frame worker stopped: %r", exc)
                    break
                if msg.get("bytes") is not None:
                    await session.on_bytes(msg["bytes"])
                elif msg.get("text") is not None:
                    await session.on_text(msg["text"])
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            viewer.connections -= 1
            worker.cancel()
            try:
                await worker
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - connection is over either way
                pass

    return app

