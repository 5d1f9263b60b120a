"""merkit serve [--host 127.0.0.1] [--port 8000]: the local web page and JSON endpoint."""
from __future__ import annotations


def register(sub) -> None:
    from ..web import DEFAULT_MAX_UPLOAD_MB

    p = sub.add_parser("serve", help="local web page: drop a file, see its emotion and timeline",
                       description="Start a local web app: open http://HOST:PORT/ and drop a file. "
                                   "Programs POST a multipart form (field 'file') to /api/predict.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--model", action="append", metavar="FILE",
                   help="model file, repeat for one per task (default: the shipped model)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest accepted upload in MB (default: {DEFAULT_MAX_UPLOAD_MB:g})")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        from ..web.app import serve
    except ImportError as e:  # installed without the web dependencies
        raise RuntimeError(f"merkit serve needs starlette, uvicorn and python-multipart ({e}); "
                           "run ./install.sh or pip install merkit") from None
    from ..predict import load_model

    model = load_model(args.model if args.model else None)
    print(f"merkit serve: http://{args.host}:{args.port}/  (Ctrl-C to stop)")
    serve(model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb)
    return 0
