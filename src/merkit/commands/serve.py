"""merkit serve [--host 127.0.0.1] [--port 8000]: the local web page and JSON endpoint."""
from __future__ import annotations

from . import COMMANDS

import os
import sys
from ..web import DEFAULT_MAX_MINUTES, DEFAULT_MAX_UPLOAD_MB
from .predict import add_backend_args, load_predictor

TOKEN_ENV = "MERKIT_TOKEN"


def register(sub) -> None:
    p = sub.add_parser("serve", help=COMMANDS['serve'],
                       description="Start a local web app: open http://HOST:PORT/ and drop a file. "
                                   "Programs POST a multipart form (field 'file') to /api/predict.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--model", action="append", metavar="FILE",
                   help="model file, repeat for one per task (default: the shipped model)")

    add_backend_args(p)
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest accepted upload in MB (default: {DEFAULT_MAX_UPLOAD_MB:g})")
    p.add_argument("--max-minutes", type=float, default=DEFAULT_MAX_MINUTES,
                   help=f"longest accepted audio in minutes (default: {DEFAULT_MAX_MINUTES:g})")
    p.add_argument("--max-waiting", type=int, default=4, metavar="N",
                   help="uploads that may wait while 2 are analysed; more get a JSON 503 with Retry-After "
                        "(default: 4; bounds the server's memory)")
    p.add_argument("--library", metavar="FILE",
                   help="a `merkit predict` CSV/JSON: its tracks on the V-A plane at /library (hover, play, "
                        "filter by region, export a playlist)")
    p.add_argument("--token", default=None,
                   help=f"require this token on /api/predict (default: ${TOKEN_ENV} if set, else none)")
    p.set_defaults(func=run)


def check_flags(args) -> None:
    """Flag values that would otherwise fail deep inside uvicorn (or be silently accepted)."""
    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be 1-65535, got {args.port}")
    if not args.max_upload_mb > 0:
        raise ValueError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    if not args.max_minutes > 0:
        raise ValueError(f"--max-minutes must be > 0, got {args.max_minutes}")
    if args.max_waiting < 0:
        raise ValueError(f"--max-waiting must be >= 0, got {args.max_waiting}")


def check_port(host: str, port: int) -> None:
    """Refuse a port another program holds before printing anything (uvicorn would print its
    own error only after merkit's banner)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError as e:
            why = "already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e)).lower()
            raise ValueError(f"--port {port}: {host}:{port} is {why}" if e.errno == errno.EADDRINUSE
                             else f"--host {host} --port {port}: cannot listen there ({why})") from None


def is_local(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def run(args) -> int:
    try:
        from ..web.app import serve
    except ImportError as e:  # installed without the web dependencies
        raise RuntimeError(f"merkit serve needs starlette, uvicorn and python-multipart ({e}); "
                           "run ./install.sh or pip install merkit") from None

    check_flags(args)
    check_port(args.host, args.port)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_local(args.host):
        print(f"merkit serve: WARNING: listening on {args.host}: anyone who can reach this machine can use "
              "the server" + ("" if token else f", and it has NO authentication (set --token or ${TOKEN_ENV})")
              + ". Uploads are decoded by libsndfile; expose it only on networks you trust.", file=sys.stderr)
    if args.library:
        from ..playlists import load_library

        n = len(load_library(args.library))  # a bad file fails here, before the banner
        print(f"merkit serve: the library page: http://{args.host}:{args.port}/library ({n} tracks)")
    model = load_predictor(args.model, args.backend, args.device)
    print(f"merkit serve: http://{args.host}:{args.port}/  (Ctrl-C to stop)"
          + ("; token required on /api/predict" if token else ""))
    serve(model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
          max_minutes=args.max_minutes, token=token, library=args.library, max_waiting=args.max_waiting)
    return 0
