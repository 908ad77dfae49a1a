"""``neuronscope serve MODEL``: the live toolbox in the browser.

Binds 127.0.0.1 unless ``--host`` names another address *and* ``--allow-remote``
is given (then it warns: anyone who can reach the port can use the model and
see what is sent to it). Ctrl-C stops it cleanly.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

from ..errors import NeuronscopeError
from ._common import add_model_argument, add_threads_argument, count, float_range, int_range, load, size_px


def add_parser(sub):
    p = sub.add_parser("serve", help="the live toolbox: a layer's activations for an image, a video or the webcam")
    add_model_argument(p)
    p.add_argument("--images", metavar="DIR", help="image folder whose top-k store (neuronscope topk) feeds the top-9 pane")
    p.add_argument("--store", metavar="PATH", help="top-k store to read (default: the one made for --images)")
    p.add_argument("--inputs", metavar="DIR",
                   help="folder of input images to step through with n / p (default: the --images folder)")
    p.add_argument("--atlas", metavar="PATH",
                   help="atlas store (or site folder) of `neuronscope atlas`: its unit images feed pattern mode")
    p.add_argument("--pattern-size", type=int, default=48, help="pattern-mode tile size when rendered here (default 48)")
    p.add_argument("--pattern-steps", type=int, default=48, help="pattern-mode render steps (default 48)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int_range(0, 65535), default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument(
        "--allow-remote", action="store_true", help="allow a --host other than this machine (prints a warning)"
    )
    p.add_argument("--layer", help="layer shown first (default: a rectified block output about input/8 wide; Lite0: blocks.4.dw_act)")
    p.add_argument("--cache-dir", help="where synthetic images are cached (default ~/.cache/neuronscope/viewer)")
    p.add_argument("--max-upload-mb", type=float_range(0.0, 1024.0, lo_open=True, what="megabytes"), default=20.0, help="largest accepted upload (default 20 MB)")
    add_threads_argument(p, help="torch CPU threads (default: torch's choice, one per core)")
    p.add_argument("--no-synth", action="store_true", help="do not render synthetic preferred images")
    p.add_argument("--synth-steps", type=count, default=128, help="optimization steps per synthetic image (default 128)")
    p.add_argument("--synth-size", type=size_px, default=128, help="synthetic image size in pixels (default 128)")
    return p


def is_local(host: str) -> bool:
    """True for loopback addresses and ``localhost``."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_args(args) -> None:
    if not is_local(args.host) and not args.allow_remote:
        raise NeuronscopeError(
            f"--host {args.host} would let other machines use this server; "
            "add --allow-remote to do that deliberately, or keep the default --host 127.0.0.1"
        )
    if not 0 <= args.port <= 65535:
        raise NeuronscopeError(f"--port {args.port} is not valid; valid: 0..65535 (0 picks a free port)")
    if args.max_upload_mb <= 0:
        raise NeuronscopeError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    if args.images is not None and not Path(args.images).is_dir():
        raise NeuronscopeError(f"--images {args.images} is not a folder")
    if args.store is not None and not Path(args.store).exists():
        raise NeuronscopeError(f"--store {args.store} does not exist; make one with `neuronscope topk`")
    if args.inputs is not None and not Path(args.inputs).is_dir():
        raise NeuronscopeError(f"--inputs {args.inputs} is not a folder")
    if args.atlas is not None and not Path(args.atlas).exists():
        raise NeuronscopeError(f"--atlas {args.atlas} does not exist; make one with `neuronscope atlas MODEL --layers ... --out SITE`")
    if args.pattern_size < 16 or args.pattern_steps < 1:
        raise NeuronscopeError("--pattern-size must be >= 16 and --pattern-steps >= 1")
    if args.threads is not None and args.threads < 1:
        raise NeuronscopeError(f"--threads must be at least 1, got {args.threads}")
    if args.synth_steps < 1 or args.synth_size < 16:
        raise NeuronscopeError("--synth-steps must be >= 1 and --synth-size >= 16")
    if args.cache_dir is not None:
        from ..outdir import check_output_dir

        check_output_dir(args.cache_dir, resume=True, option="--cache-dir")


def store_hint(model_name: str, model_arg: str, layer: str, images, store) -> str:
    """Where the top-9 pane looks for its top-k store, and the commands that make and use one."""
    from ..viewer.examples import default_store_path

    where = Path(store).resolve() if store else default_store_path(model_name).resolve()
    folder = images or "DIR"
    return (
        f"dataset examples: off (no top-k store at {where}). For the top-9 pane run, in this folder:\n"
        f"  neuronscope topk {model_arg} --images {folder} --layers {layer}\n"
        f"  neuronscope serve {model_arg} --images {folder}      (or --store PATH from anywhere)"
    )


def run(args):
    check_args(args)
    try:
        import uvicorn

        from ..viewer.server import create_app
    except ImportError as e:
        raise NeuronscopeError(
            f"the viewer needs FastAPI and uvicorn ({e.name} is missing); install them with: pip install 'neuronscope[serve]'"
        ) from None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = load(args)
    local = is_local(args.host)
    app = create_app(
        model,
        store=args.store,
        images=args.images,
        cache_dir=args.cache_dir,
        layer=args.layer,
        max_upload_mb=args.max_upload_mb,
        allowed_hosts=None if local else ["*"],
        synth=not args.no_synth,
        synth_steps=args.synth_steps,
        synth_size=args.synth_size,
        inputs=args.inputs if args.inputs is not None else args.images,
        atlas=args.atlas,
        pattern_size=args.pattern_size,
        pattern_steps=args.pattern_steps,
    )
    viewer = app.state.viewer
    store = viewer.store
    if store is not None:
        print(f"dataset examples: top-k store {Path(getattr(store, 'path', store)).resolve()}")
    else:
        print(store_hint(model.name, args.model, viewer.default_layer, args.images, args.store))
    port = args.port or free_port(args.host if local else "0.0.0.0")
    if not local:
        print(
            f"neuronscope: WARNING: serving on {args.host}:{port}; anyone who can reach this address can "
            "send images to the model and see the results. There is no login.",
            file=sys.stderr,
        )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"neuronscope viewer for {model.name}: http://{shown}:{port}/  (Ctrl-C to stop)", flush=True)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=port,
        log_level="warning",
        ws_max_size=int(args.max_upload_mb * (1 << 20)) + (64 << 10),
        ws_per_message_deflate=False,  # JPEG pictures do not compress; deflate only costs CPU
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    except SystemExit:  # uvicorn exits when it cannot bind
        server.started = False
    if not server.started:
        raise NeuronscopeError(f"could not start the server on {args.host}:{port} (is the port in use?)")
    print("neuronscope viewer stopped", flush=True)
    return 0
