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
from collections import OrderedDict
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import __version__
from ..errors import NeuronscopeError, closest
from ..models import Model
from ..signatures import takes_arguments_of
from . import protocol
from .compute import (
    BACKPROP_FILTERS,
    BACKPROP_MODES,
    Frame,
    FrameProcessor,
    ViewState,
    backprop_picture,
    default_layer as pick_default_layer,
    layer_table,
    viewable_layers,
)
from .examples import ExamplesPane, open_examples_store
from .frames import LatestSlot, encode, fit_square, image_to_tensor
from .patterns import PatternGrid, open_atlas
from .synth import SynthRenderer
from ..optim.presets import DEFAULT_PRESET

log = logging.getLogger("neuronscope.viewer")

LOCAL_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]", "testserver"]
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "neuronscope" / "viewer"
_STATIC = {"app.js": "application/javascript", "style.css": "text/css"}


def _static(name: str) -> bytes:
    return resources.files("neuronscope.viewer").joinpath("static", name).read_bytes()


@dataclass(frozen=True)
class FolderItem:
    """An image of the --inputs folder, asked for by its index."""

    seq: int
    data: bytes
    name: str
    index: int
    source: str = "folder"


class Viewer:
    """Everything the app shares between connections (the arguments are :func:`create_app`'s)."""

    def __init__(
        self,
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
        synth_preset: str = DEFAULT_PRESET,
        inputs=None,
        atlas=None,
        pattern_size: int = 48,
        pattern_steps: int = 48,
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
        self.default_layer = layer or pick_default_layer(self.layers, model.input_size)
        self.max_upload_bytes = int(max_upload_mb * (1 << 20))
        self.allowed_hosts = list(allowed_hosts or LOCAL_HOSTS)
        self.processor = FrameProcessor(model, self.layers, backward_view=backward_view)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neuronscope-model")
        self.store = open_examples_store(model, store=store, images=images)
        self.examples = ExamplesPane(model, self.store)
        cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
        self.synth = SynthRenderer(model, cache, size=synth_size, steps=synth_steps, preset=synth_preset) if synth else None
        self.atlas = open_atlas(atlas, model.name) if isinstance(atlas, (str, os.PathLike)) else atlas
        self.patterns = (
            PatternGrid(model, cache, self.layer_index, size=pattern_size, steps=pattern_steps, preset=synth_preset,
                        atlas=self.atlas)
            if synth or self.atlas is not None else None
        )
        self.inputs = self._list_inputs(inputs)
        self._example_views: OrderedDict = OrderedDict()  # backprop pictures of top-9 images
        self.connections = 0

    @staticmethod
    def _list_inputs(inputs) -> list[Path]:
        if inputs is None:
            return []
        if isinstance(inputs, (str, os.PathLike)):
            from ..images import list_images

            return list_images(inputs)
        return [Path(p) for p in inputs]

    def example_backprop(self, layer: str, unit: int, rank: int, mode: str, filter: str) -> bytes | None:
        """The backward view of the unit on its rank-th top image (deconv of the top-9, as in the 2015 toolbox)."""
        key = (layer, unit, rank, mode, filter)
        if key in self._example_views:
            return self._example_views[key]
        value = self.examples.get(layer, unit)
        if isinstance(value, str) or not 0 <= rank < len(value):
            return None
        x = image_to_tensor(fit_square(value[rank].image.convert("RGB"), self.model.input_size, "crop"))
        grad = self.processor._backward(self.model, x.to(self.model.device), layer, unit, mode)[0].float().cpu()
        data, _ = encode(backprop_picture(grad, filter), "jpeg", 88)
        self._example_views[key] = data
        while len(self._example_views) > 256:
            self._example_views.popitem(last=False)
        return data

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
            "synth_available": self.synth is not None,
            "examples_available": self.store is not None,
            "curated_layers": [l["name"] for l in layer_table(self.layers) if l["curated"]],
            "class_labels": [self.model.label(k) for k in range(len(self.model.labels))] if self.model.labels else None,
            "inputs": [p.name for p in self.inputs],
            "patterns_available": self.patterns is not None,
            "atlas": str(getattr(self.atlas, "path", "")) or None,
            "examples_store": str(getattr(self.store, "path", "")) or None,
        }

    def close(self) -> None:
        if self.synth is not None:
            self.synth.close()
        if self.patterns is not None:
            self.patterns.close()
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
        self.folder_seq = 0
        self.input: dict | None = None  # the --inputs image on screen
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
            if kind == "input":
                self.put_input(obj.get("index"))
                return
            if kind != "state":
                raise NeuronscopeError(f"unknown message type {kind!r} (valid: state, input, ping)")
            changes = {k: v for k, v in obj.items() if k != "type"}
            self.state = self.state.updated(changes, self.viewer.layer_index)
        except NeuronscopeError as e:
            self.malformed += 1
            await self.error(str(e), "message")
            return
        await self.send_json({"type": "state", "state": asdict(self.state)})
        self.slot.poke()

    def put_input(self, index) -> None:
        """Queue image ``index`` of the --inputs folder (the page never names a path)."""
        files = self.viewer.inputs
        if not files:
            raise NeuronscopeError("no input folder: start serve with --inputs DIR (or --images DIR) to step through images")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(files):
            raise NeuronscopeError(f"input index {index!r} is not valid; valid: 0..{len(files) - 1}")
        path = files[index]
        try:
            data = path.read_bytes()
        except OSError as e:
            raise NeuronscopeError(f"{path.name} cannot be read ({e.strerror or e})") from None
        self.folder_seq -= 1  # folder frames count down from -1: never confused with the page's own
        self.slot.put(FolderItem(self.folder_seq, data, path.name, index))

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
                            name={"upload": "the uploaded file", "folder": getattr(item, "name", "")}.get(
                                item.source, "the video frame"
                            ),
                            fit=self.state.fit,
                            max_bytes=self.viewer.max_upload_bytes,
                        ),
                    )
                except NeuronscopeError as e:
                    await self.error(str(e), item.source, item.seq)
                    continue
                self.frame_source = item.source
                self.input = (
                    {"index": item.index, "name": item.name, "count": len(self.viewer.inputs)}
                    if isinstance(item, FolderItem) else None
                )
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
            result.header["input"] = self.input
            await self.send_bytes(protocol.pack_result(result.header, result.blobs))


def _origin_ok(ws: WebSocket) -> bool:
    """Browsers send Origin; it must be this server, scheme included (blocks other sites' pages)."""
    origin = ws.headers.get("origin")
    if not origin:
        return True
    parts = urlsplit(origin)
    scheme = "https" if ws.url.scheme == "wss" else "http"  # the page's scheme for this socket's
    return parts.scheme.lower() == scheme and parts.netloc.lower() == ws.headers.get("host", "").lower()


@takes_arguments_of(Viewer)
def create_app(model: Model, **settings) -> FastAPI:
    """The live toolbox app for ``model``.

    ``store``/``images``: the top-k store (path or object) and the folder it was
    computed over, for the top-9 pane. ``cache_dir``: where synthetic images are
    cached (default ``~/.cache/neuronscope/viewer``). ``layer``: the layer shown
    first (default ``blocks.5`` or a middle block). ``allowed_hosts``: Host
    header values accepted (default: local names only; ``["*"]`` for a
    deliberate non-local bind). ``backward_view``: the backprop function
    (default ``"auto"``: ``neuronscope.attribution.backward_view``; ``None`` turns backprop off).
    ``inputs``: a folder (or list) of images to step through. ``atlas``: an
    atlas store (or its site folder) whose unit images feed pattern mode;
    without one, pattern tiles of ``pattern_size`` px are rendered with
    ``pattern_steps`` steps in the background (off with ``synth=False``).
    The settings are declared once, by :class:`Viewer`.
    """
    viewer = Viewer(model, **settings)

    @asynccontextmanager
    async def lifespan(app):
        yield
        viewer.close()

    app = FastAPI(title="neuronscope viewer", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.viewer = viewer
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=viewer.allowed_hosts)

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

    @app.get("/api/patterns")
    def patterns_status(layer: str):
        viewer.check_unit(layer, 0)
        if viewer.patterns is None:
            return {"status": "unavailable", "message": "pattern mode is off (--no-synth and no --atlas)"}
        return viewer.patterns.status(layer)

    @app.get("/api/patterns.png")
    def patterns_image(layer: str):
        viewer.check_unit(layer, 0)
        if viewer.patterns is None:
            return JSONResponse({"error": "pattern mode is off"}, status_code=404)
        return Response(viewer.patterns.picture(layer), media_type="image/png", headers={"Cache-Control": "no-cache"})

    @app.get("/api/examples/backprop.jpg")
    async def example_backprop(
        layer: str, unit: int = Query(ge=0), rank: int = Query(ge=0, le=99), mode: str = "deconv", filter: str = "raw"
    ):
        viewer.check_unit(layer, unit)
        if mode not in BACKPROP_MODES[1:]:
            raise NeuronscopeError(f"mode {mode!r} is not valid; valid: {', '.join(BACKPROP_MODES[1:])}")
        if filter not in BACKPROP_FILTERS:
            raise NeuronscopeError(f"filter {filter!r} is not valid; valid: {', '.join(BACKPROP_FILTERS)}")
        if viewer.processor._backward is None:
            return JSONResponse({"error": "backprop is turned off in this viewer (started without a backward view)"}, status_code=404)
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(viewer.executor, viewer.example_backprop, layer, unit, rank, mode, filter)
        if data is None:
            return JSONResponse({"error": "no such example"}, status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

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

