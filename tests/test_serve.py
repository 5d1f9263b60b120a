"""The web app of `merkit serve`, over HTTP: a real uvicorn server on 127.0.0.1."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

from merkit.predictors.damer import EmotionModel  # noqa: E402
from merkit.web.app import create_app  # noqa: E402

from test_predict import music, tiny_network  # noqa: E402

SR = 44_100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(app):
    """uvicorn on a free port in a thread; stopped (and joined) on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def post_file(url: str, name: str, data: bytes, *, content_type="application/octet-stream"):
    """multipart/form-data POST of one file in field 'file' -> (status, json)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wav_bytes(y: np.ndarray, fmt="WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tmpdir_watch(tmp_path_factory):
    """All temporary files of the app go to this folder (tempfile.tempdir), so tests can see them."""
    d = tmp_path_factory.mktemp("server-tmp")
    old = tempfile.tempdir
    tempfile.tempdir = str(d)
    yield d
    tempfile.tempdir = old


@pytest.fixture(scope="module")
def server(tmpdir_watch):
    model = EmotionModel({"quadrant": tiny_network(4)})
    # room for every request of test_concurrent_requests_and_no_files_left to wait (the bound on
    # waiting uploads, a JSON 503 beyond it, has its own test in test_reliability_round2.py)
    with running_server(create_app(model, max_upload_mb=2.0, max_waiting=8)) as url:
        yield url


def test_health_and_page(server):
    with urllib.request.urlopen(server + "/api/health") as r:
        assert json.loads(r.read())["status"] == "ok"
    with urllib.request.urlopen(server + "/") as r:
        html = r.read().decode()
    assert 'id="file-input"' in html and "/static/app.js" in html
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    with urllib.request.urlopen(server + "/static/app.js") as r:
        assert b"/api/predict" in r.read()


def test_predict_matches_library(server, tmp_path):
    y = music(22.0)
    status, out = post_file(server + "/api/predict", "song.flac", wav_bytes(y, "FLAC"))
    assert status == 200 and out["ok"] and out["filename"] == "song.flac"
    ref = EmotionModel({"quadrant": tiny_network(4)})
    sf.write(tmp_path / "song.flac", y, SR)
    local = ref.analyse_file(tmp_path / "song.flac", timeline=True)
    assert out["prediction"]["arousal"] == pytest.approx(local.prediction.arousal, abs=1e-9)
    assert len(out["timeline"]) == len(local.timeline) == 4
    status, out = post_file(server + "/api/predict?timeline=0", "song.wav", wav_bytes(y))
    assert status == 200 and out["timeline"] is None


@pytest.mark.parametrize("name, data, what", [
    ("notes.mp3", b"hello, this is text and not audio at all\n" * 20, "cannot decode"),
    ("empty.wav", b"", "empty"),
    ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(200), "cannot decode"),
])
def test_bad_uploads_get_clear_messages(server, name, data, what):
    status, out = post_file(server + "/api/predict", name, data)
    assert status == 422 and out["ok"] is False
    assert what in out["error"] and name in out["error"]
    assert "Traceback" not in out["error"] and "merkit-serve-" not in out["error"]


def test_upload_limit(server):
    import http.client
    from urllib.parse import urlsplit

    big = wav_bytes(music(30.0))  # ~2.6 MB of 16-bit PCM > 2 MB
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n\r\n"
            ).encode() + big + f"\r\n--{boundary}--\r\n".encode()
    u = urlsplit(server)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest("POST", "/api/predict")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    try:
        conn.send(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answers 413 from the header alone and stops reading: that is the point
    resp = conn.getresponse()
    assert resp.status == 413 and "too large" in json.loads(resp.read())["error"]
    conn.close()


def test_upload_limit_without_content_length(server):
    import http.client
    from urllib.parse import urlsplit

    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n\r\n"
            ).encode()
    chunks = [head] + [wav_bytes(music(10.0))] * 3 + [f"\r\n--{boundary}--\r\n".encode()]  # ~2.6 MB
    u = urlsplit(server)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.request("POST", "/api/predict", body=iter(chunks), encode_chunked=True,
                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                              "Transfer-Encoding": "chunked"})
    except (BrokenPipeError, ConnectionResetError):
        pass
    resp = conn.getresponse()
    assert resp.status == 413 and "too large" in json.loads(resp.read())["error"]
    conn.close()


def test_not_multipart(server):
    req = urllib.request.Request(server + "/api/predict", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 415


def test_concurrent_requests_and_no_files_left(server, tmpdir_watch):
    good = wav_bytes(music(12.0))
    jobs = [("a.wav", good), ("b.txt", b"not audio"), ("../../escape.wav", good), ("c.wav", good)] * 2
    with ThreadPoolExecutor(8) as pool:
        res = list(pool.map(lambda j: post_file(server + "/api/predict", *j), jobs))
    assert [s for s, _ in res] == [200, 422, 200, 200] * 2
    assert len({json.dumps(o["prediction"]) for s, o in res if s == 200}) == 1  # same audio, same answer
    # uploads lived in temporary folders that are gone; the client's path was never used
    assert list(tmpdir_watch.iterdir()) == []
    assert not (tmpdir_watch.parent / "escape.wav").exists()


def _post(url, data, headers):
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.headers.get("content-type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read()


class _Broken:
    """A model whose analysis fails in a way no handler expects (a bug, or memory)."""

    def __init__(self, exc):
        self.exc = exc

    def analyse_file(self, path, timeline=True):
        raise self.exc


@pytest.mark.parametrize("exc", [KeyError("boom"), MemoryError()])
def test_server_failures_are_json_and_it_keeps_serving(exc):
    with running_server(create_app(_Broken(exc))) as url:
        for _ in range(2):
            status, out = post_file(url + "/api/predict", "x.wav", wav_bytes(music(3.0)))
            assert status == 500 and out["ok"] is False and "keeps serving" in out["error"]
        with urllib.request.urlopen(url + "/api/health") as r:
            assert json.loads(r.read())["status"] == "ok"


def test_token_is_required_when_set():
    model = EmotionModel({"quadrant": tiny_network(4)})
    with running_server(create_app(model, token="s3cret")) as url:
        with urllib.request.urlopen(url + "/api/health") as r:
            assert json.loads(r.read())["token_required"] is True
        status, out = post_file(url + "/api/predict", "x.wav", wav_bytes(music(12.0)))
        assert status == 401 and "token" in out["error"]
        status, out = post_file(url + "/api/predict?token=wrong", "x.wav", wav_bytes(music(12.0)))
        assert status == 401
        status, out = post_file(url + "/api/predict?token=s3cret", "x.wav", wav_bytes(music(12.0)))
        assert status == 200 and out["ok"]


def test_audio_longer_than_the_limit_is_refused_as_json():
    model = EmotionModel({"quadrant": tiny_network(4)})
    with running_server(create_app(model, max_minutes=0.5)) as url:
        status, out = post_file(url + "/api/predict", "long.flac", wav_bytes(music(40.0), "FLAC"))
        assert status == 422 and "too long" in out["error"] and "long.flac" in out["error"]


@pytest.mark.parametrize("flags, message", [
    (["--port", "99999"], "--port must be 1-65535"),
    (["--max-upload-mb", "-5"], "--max-upload-mb must be > 0"),
    (["--max-minutes", "0"], "--max-minutes must be > 0"),
])
def test_serve_flags_are_validated(flags, message, capsys):
    from merkit.cli import main

    assert main(["serve", *flags]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_serve_warns_on_a_public_host(monkeypatch, capsys):
    from merkit.commands import serve as serve_cmd

    seen = {}
    monkeypatch.setattr("merkit.web.app.serve", lambda model, **kw: seen.update(kw))
    monkeypatch.setattr("merkit.predict.load_model", lambda paths=None: object())
    monkeypatch.delenv(serve_cmd.TOKEN_ENV, raising=False)
    from merkit.cli import main

    torch = ["--backend", "torch"]  # the stand-in model above is no torch model to export
    assert main(["serve", "--host", "0.0.0.0", *torch]) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "NO authentication" in err and seen["token"] is None
    monkeypatch.setenv(serve_cmd.TOKEN_ENV, "abc")
    assert main(["serve", "--host", "0.0.0.0", *torch]) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "NO authentication" not in err and seen["token"] == "abc"
    assert main(["serve", *torch]) == 0 and "WARNING" not in capsys.readouterr().err  # 127.0.0.1


def test_serve_takes_the_backend_and_device_of_predict(monkeypatch, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    seen = {}
    monkeypatch.setattr("merkit.web.app.serve", lambda model, **kw: seen.update(model=model))
    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "cache"))
    from merkit.cli import main

    assert main(["serve", "--backend", "onnx"]) == 0
    assert seen["model"].backend == "onnx"
    assert main(["serve", "--backend", "torch"]) == 0
    assert seen["model"].backend == "torch"
    assert main(["serve"]) == 0  # auto: onnxruntime for the shipped model where it is installed
    assert seen["model"].backend == ("onnx" if importlib.util.find_spec("onnx") else "torch")
    if not __import__("torch").cuda.is_available():
        assert main(["serve", "--device", "cuda"]) == 1
        assert "CUDA is not available" in capsys.readouterr().err
