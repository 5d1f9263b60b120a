"""The local web app of ``merkit serve``: a static page and a JSON endpoint.

::
    GET  /                  the page (static/index.html; everything is served locally, no CDN)
    GET  /static/...        its script and style sheet
    GET  /api/health        {"status": "ok", "model": ...}
    POST /api/predict       multipart form, field "file" (optional query timeline=0 to skip the
                            timeline) -> FileResult.to_dict() plus "filename"; 4xx with
                            {"ok": false, "error": "..."} for bad uploads, 5xx (JSON too) if
                            the server itself fails; the server goes on serving

With a library (``merkit serve --library library.csv``, a `merkit predict` output):
::
    GET  /library                   the library page: every track a point on the V-A plane
    GET  /api/library               {"tracks": [{id, title, path, v, a, valence, arousal, quadrant, mood}]}
    GET  /api/library/audio/ID      that track's audio file (only the library's files, by number)
    GET  /api/library/playlist?ids=1,2,...   an M3U8 of those tracks (absolute paths: a download lands anywhere)

Every answer is JSON (or the page); nothing is ever a plain-text 500. With a ``token``
(``merkit serve --token`` or ``MERKIT_TOKEN``), /api/predict needs the header
``Authorization: Bearer TOKEN`` (or ``?token=TOKEN``); the page asks for it once.
Audio longer than ``max_minutes`` is refused (422) before any decoding.

Uploads are limited in size (checked on the Content-Length header and again while the body
streams in), stored only inside a fresh temporary directory that is removed after the
prediction, and decoded by the same front end as ``merkit predict``: a file that is not audio
gets the decoder's one-line message, never a stack trace. Predictions run in worker threads,
at most ``max_concurrent`` at a time (each holds a decoded track in memory).
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import DEFAULT_MAX_MINUTES, DEFAULT_MAX_UPLOAD_MB
from ..playlists import load_library, m3u8
from ..audio import AudioError, MIDI_EXTENSIONS, open_info
from ..midi import midi_duration
from ..cpu_memory import release_freed_memory

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_MAX_CONCURRENT = 2  # a decoded 10-minute track is ~100 MB of float32; bound the peak
# Uploads that may wait for a free slot; beyond them a request gets a JSON 503 with Retry-After
# at once (each waiting request holds its spooled upload and a thread)
DEFAULT_MAX_WAITING = 4
_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,5}$")
_COPY_CHUNK = 1 << 20


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes``, judged by the Content-Length
    header when there is one and by counting the bytes as they arrive (chunked uploads)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._reject(scope, receive, send)
        seen = 0

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # raised inside the endpoint's form parsing: the app's HTTPException
                    # handler turns it into the same JSON 413
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counted_receive, send)

    def _message(self) -> str:
        return f"upload too large (limit {self.max_bytes / 1e6:g} MB)"

    async def _reject(self, scope, receive, send):
        await JSONResponse({"ok": False, "error": self._message()}, status_code=413)(scope, receive, send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


def create_app(model=None, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               max_concurrent: int = DEFAULT_MAX_CONCURRENT, max_minutes: float = DEFAULT_MAX_MINUTES,
               max_waiting: int = DEFAULT_MAX_WAITING,
               token: str | None = None, library: str | None = None):
    """The ASGI app. ``model``: any :class:`~merkit.predictors.base.Predictor` (default: the shipped
    one); ``library``: a `merkit predict` CSV/JSON whose tracks the library page shows."""
    import hmac

    from ..predict import load_model

    model = model if model is not None else load_model()
    max_bytes = int(max_upload_mb * 1e6)
    slots = threading.BoundedSemaphore(max_concurrent)
    admitted = threading.BoundedSemaphore(max_concurrent + max_waiting)  # running + waiting

    def analyse(upload_path: Path, timeline: bool):
        if upload_path.suffix.lower() in MIDI_EXTENSIONS:  # its length, before any rendering
            try:
                seconds = midi_duration(upload_path)
            except Exception:  # a corrupt MIDI: the renderer's own message follows
                seconds = 0.0
            if seconds > max_minutes * 60:
                return f"MIDI too long ({seconds / 60:.1f} min; this server takes up to {max_minutes:g} min)"
        else:
            try:
                frames, sr = open_info(upload_path)
            except AudioError:
                frames, sr = 0, 1  # analyse_file gives the decoder's own message
            if frames / sr > max_minutes * 60:
                return f"audio too long ({frames / sr / 60:.1f} min; this server takes up to {max_minutes:g} min)"
        try:
            with slots:
                return model.analyse_file(upload_path, timeline=timeline)
        finally:
            release_freed_memory()  # back down after a burst (the encoder keeps freed memory)

    def authorised(request: Request) -> bool:
        if not token:
            return True
        given = request.headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else request.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), token.encode())

    async def index(request: Request):
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    async def health(request: Request):
        return JSONResponse({"status": "ok", "model": repr(model), "max_upload_mb": max_upload_mb,
                             "max_minutes": max_minutes, "token_required": bool(token)})

    async def predict(request: Request):
        if not authorised(request):
            # read (and drop) the body first: a client still sending would otherwise get a broken
            # pipe instead of this answer (the body is size-limited by BodySizeLimit)
            async for _ in request.stream():
                pass
            return _error(401, "this server needs a token: Authorization: Bearer TOKEN")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return _error(415, "send the audio file as multipart/form-data in a field named 'file'")
        timeline = request.query_params.get("timeline", "1").lower() not in ("0", "false", "no")
        if not admitted.acquire(blocking=False):  # bounded work in flight: answer at once
            async for _ in request.stream():  # drop the body (see above)
                pass
            return JSONResponse({"ok": False, "error": f"busy: {max_concurrent} analyses running and {max_waiting} "
                                 "waiting; try again in a few seconds"}, status_code=503, headers={"Retry-After": "5"})
        try:
            return await _predict_admitted(request, timeline)
        finally:
            admitted.release()

    async def _predict_admitted(request: Request, timeline: bool):
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                return _error(400, "no file in the form (field 'file')")
            name = Path(upload.filename or "upload").name
            suffix = Path(name).suffix.lower()
            # the client's name is never used on disk: only a short, safe suffix (decoders use it)
            suffix = suffix if _SAFE_SUFFIX.match(suffix) else ".bin"
            with tempfile.TemporaryDirectory(prefix="merkit-serve-") as tmp:
                path = Path(tmp) / f"upload{suffix}"
                size = 0
                with open(path, "wb") as fh:
                    while chunk := await upload.read(_COPY_CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            return _error(413, f"upload too large (limit {max_upload_mb:g} MB)")
                        fh.write(chunk)
                if size == 0:
                    return _error(422, f"{name}: empty file (0 bytes)")
                res = await run_in_threadpool(analyse, path, timeline)
                if isinstance(res, str):
                    return _error(422, f"{name}: {res}")
        out = res.to_dict()
        out["path"] = name
        out["filename"] = name
        if not res.ok:
            # the message names the temporary file; the user knows it by its own name
            out["error"] = res.error.replace(str(path), name)
            return JSONResponse(out, status_code=422)
        return JSONResponse(out)

    tracks = load_library(library) if library else []
    library_dir = Path(library).resolve().parent if library else None

    def _library_track(request: Request, raw: str):
        try:
            i = int(raw)
        except ValueError:
            i = -1
        if not 0 <= i < len(tracks):
            raise HTTPException(404, f"no track {raw} in the library")
        return tracks[i]

    async def library_page(request: Request):
        if not tracks:
            return _error(404, "no library: start the server with --library library.csv")
        return FileResponse(STATIC_DIR / "library.html", media_type="text/html")

    async def library_list(request: Request):
        if not authorised(request):
            return _error(401, "this server needs a token: Authorization: Bearer TOKEN (or ?token=)")
        return JSONResponse({"token_required": bool(token), "tracks": [
            {"id": i, "title": Path(t.path).stem, "path": os.path.relpath(t.path, library_dir), "v": t.v, "a": t.a,
             "valence": t.p_valence, "arousal": t.p_arousal, "quadrant": t.quadrant, "mood": t.mood_words}
            for i, t in enumerate(tracks)]})

    async def library_audio(request: Request):
        if not authorised(request):
            return _error(401, "this server needs a token: ?token=TOKEN")
        t = _library_track(request, request.path_params["id"])
        if not Path(t.path).is_file():
            return _error(404, f"{Path(t.path).name}: the file is gone from the library's folder")
        return FileResponse(t.path)  # only files the library lists: by number, never by a path from the client

    async def library_playlist(request: Request):
        if not authorised(request):
            return _error(401, "this server needs a token: ?token=TOKEN")
        ids = [s for s in request.query_params.get("ids", "").split(",") if s.strip()]
        chosen = [_library_track(request, s) for s in ids]
        if not chosen:
            return _error(400, "no tracks selected (ids=1,2,...)")
        # absolute paths: the browser saves the file wherever its user likes
        text = m3u8(chosen, None, "merkit selection")
        return Response(text, media_type="audio/x-mpegurl",
                        headers={"Content-Disposition": 'attachment; filename="merkit-selection.m3u8"'})

    async def http_error(request: Request, exc: HTTPException):
        # every error the page sees is JSON with a one-line message (malformed forms included)
        return _error(exc.status_code, str(exc.detail))

    async def server_error(request: Request, exc: Exception):
        # a failure of the server itself (a bug, out of memory): still JSON, and logged in full
        log.exception("merkit serve: %s %s failed", request.method, request.url.path, exc_info=exc)
        what = "out of memory" if isinstance(exc, MemoryError) else f"{type(exc).__name__}: {exc}"
        return _error(500, f"the server failed on this request ({what}); it keeps serving")

    app = Starlette(exception_handlers={HTTPException: http_error, Exception: server_error}, routes=[
        Route("/", index),
        Route("/api/health", health),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/library", library_page),
        Route("/api/library", library_list),
        Route("/api/library/audio/{id}", library_audio),
        Route("/api/library/playlist", library_playlist),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ])
    app.state.model = model
    return BodySizeLimit(app, max_bytes)


def serve(model=None, *, host: str = "127.0.0.1", port: int = 8000,
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_minutes: float = DEFAULT_MAX_MINUTES,
          token: str | None = None, log_level: str = "info", library: str | None = None,
          max_waiting: int = DEFAULT_MAX_WAITING) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(model, max_upload_mb=max_upload_mb, max_minutes=max_minutes, token=token, library=library,
                           max_waiting=max_waiting),
                host=host, port=port, log_level=log_level)
