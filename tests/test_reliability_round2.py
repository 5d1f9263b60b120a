"""Reliability, round two (issue 24): each case failed before its fix. One-line errors instead
of tracebacks or vague words, one rule for worker counts, damaged MP3s decoded where they can
be, a port in use refused before the banner."""
import json
import os
import socket

import numpy as np
import pytest
import soundfile as sf

from conftest import melody
from merkit.cli import main

SR = 44_100


def _cli(capsys, argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    err = [ln for ln in cap.err.strip().splitlines() if ln.strip()]
    assert not any("Traceback" in ln for ln in err), err
    return rc, cap.out, err


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    p = tmp_path_factory.mktemp("r2") / "song.wav"
    sf.write(p, melody(20.0, SR, seed=1), SR)
    return p


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0"])
def test_timeline_cap_must_be_a_finite_positive_number(song, value, capsys):
    rc, _, err = _cli(capsys, ["predict", song, "--timeline", "--timeline-max-minutes", value])
    assert rc == 1 and len(err) == 1 and "--timeline-max-minutes must be a number of minutes > 0" in err[0], err


@pytest.mark.parametrize("argv", [["predict", "{song}", "--threads", "-1"], ["predict", "{song}", "--workers", "-1"],
                                  ["extract", "{song}", "-o", "{tmp}/f", "--workers", "-1"],
                                  ["tag", "{song}", "--threads", "-3"]])
def test_one_rule_for_worker_counts(song, argv, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main([a.format(song=song, tmp=tmp_path) for a in argv])
    assert e.value.code == 2 and "must be a whole number >= 0 (0: in this process)" in capsys.readouterr().err


def test_zero_threads_predicts_in_this_thread(song, capsys):
    rc, out, err = _cli(capsys, ["predict", song, "--threads", "0", "--format", "json", "--no-cache"])
    assert rc == 0 and json.loads(out)["results"][0]["status"] == "ok"


def test_a_corrupt_onnx_graph_is_one_line(tmp_path):
    pytest.importorskip("onnxruntime")
    from merkit.onnx_backend import OnnxGraph

    bad = tmp_path / "model.onnx"
    bad.write_bytes(os.urandom(2000))
    with pytest.raises(ValueError, match=r"model.onnx: not a readable ONNX graph \(.*\); export it again") as e:
        OnnxGraph(bad)
    assert "\n" not in str(e.value)


def test_a_port_in_use_is_refused_before_the_banner(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc, out, err = _cli(capsys, ["serve", "--port", port])
    assert rc == 1 and out == "" and err == [f"merkit serve: error: --port {port}: 127.0.0.1:{port} is already in use"]


def _mp3(path, seconds, zero_from, zero_bytes):
    sf.write(path, melody(seconds, SR, seed=3), SR, format="MP3")
    data = bytearray(path.read_bytes())
    start = int(len(data) * zero_from)
    data[start:start + zero_bytes] = bytes(zero_bytes)
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_mp3_is_analysed_with_a_note(tmp_path, capsys):
    pytest.importorskip("av")
    p = _mp3(tmp_path / "damaged.mp3", 90.0, 0.5, 60_000)  # ~10 s of frames zeroed in the middle
    with pytest.raises(sf.LibsndfileError):  # what libsndfile alone makes of it
        sf.read(p)
    rc, out, err = _cli(capsys, ["predict", p, "--timeline", "--format", "json", "--no-cache"])
    res = json.loads(out)["results"][0]
    assert rc == 0 and res["status"] == "ok" and res["timeline"], err
    assert res["note"].startswith("damaged audio: about ") and "could not be decoded and were skipped" in res["note"]
    lost = float(res["note"].split("about ")[1].split(" s")[0])
    assert 5.0 < lost < 15.0 and abs(res["duration"] + lost - 90.0) < 0.5


def test_a_file_mostly_destroyed_is_an_error_saying_so(tmp_path, capsys):
    pytest.importorskip("av")
    p = _mp3(tmp_path / "wrecked.mp3", 60.0, 0.1, 400_000)
    rc, out, err = _cli(capsys, ["predict", p, "--format", "json", "--no-cache"])
    res = json.loads(out)["results"][0]
    assert rc == 1 and res["status"] == "error"
    assert "damaged audio: only" in res["error"] or "cannot decode audio" in res["error"], res["error"]


def test_permission_denied_says_so(tmp_path, monkeypatch):
    from merkit import audio

    p = tmp_path / "locked.wav"
    sf.write(p, np.zeros(SR, np.float32), SR)
    if os.geteuid() == 0:  # root reads everything: deny through the check merkit makes
        monkeypatch.setattr(audio.os, "access", lambda path, mode: False)
    else:
        p.chmod(0)
    with pytest.raises(audio.AudioError, match="locked.wav: permission denied"):
        audio.load_window(p, audio.AudioConfig())


def test_a_silent_intro_does_not_hide_the_music(tmp_path, capsys):
    """90 s of silence, then 60 s of music: the window moves to the sound, with a note; the
    file is never called "not music". All silence stays "not music: silence"."""
    y = np.concatenate([np.zeros(90 * SR, np.float32), 0.5 * melody(60.0, SR, seed=5)])
    sf.write(tmp_path / "intro.wav", y, SR)
    sf.write(tmp_path / "silence.wav", np.zeros(150 * SR, np.float32), SR)
    rc, out, err = _cli(capsys, ["predict", tmp_path / "intro.wav", tmp_path / "silence.wav", "--format", "json",
                                 "--no-cache", "--no-progress"])
    intro, silence = json.loads(out)["results"]
    assert intro["status"] == "ok" and intro["prediction"]["start"] == pytest.approx(90.0, abs=0.5)
    assert intro["note"].startswith("the analysis window starts at 90.0 s, where the sound begins")
    assert silence["status"] == "not_music" and "silence" in silence["error"]
    from merkit.audio import AudioConfig, load_window, prepare

    win_file, info_file = load_window(tmp_path / "intro.wav", AudioConfig())
    decoded, _ = sf.read(tmp_path / "intro.wav", dtype="float32")
    win_arr, info_arr = prepare(decoded, SR, AudioConfig())  # the array path agrees with the file path
    np.testing.assert_allclose(win_file, win_arr, atol=1e-6)
    assert info_file.window_start == info_arr.window_start == pytest.approx(90.0, abs=0.5)


def _long_midi(path, minutes: float):
    """A piano note every half second for ``minutes`` (a small file that plays for long)."""
    from test_render import note, smf, tempo

    events = [(0, b"\xc0\x00")]
    for k in range(int(minutes * 120)):  # 480 ticks = one quarter = 0.5 s at 120 bpm
        pitch = 60 + (k * 7) % 24
        events += [note(k * 480, pitch), note(k * 480 + 400, pitch, on=False)]
    path.write_bytes(smf([[tempo(0, 500_000)], events]))
    return path


def test_serve_measures_a_midi_before_rendering_it(tmp_path):
    pytest.importorskip("uvicorn")
    from test_serve import post_file, running_server

    from merkit.web.app import create_app

    midi = _long_midi(tmp_path / "two_hours.mid", 120.0)
    assert midi.stat().st_size < 200_000
    with running_server(create_app(model="(never used)", max_minutes=60)) as url:
        status, body = post_file(url + "/api/predict", "two_hours.mid", midi.read_bytes())
    assert status == 422 and "MIDI too long (120.0 min; this server takes up to 60 min)" in body["error"], body


@pytest.mark.slow
def test_a_long_midi_is_predicted_in_bounded_memory(tmp_path):
    """A 30-minute MIDI with --timeline: rendered to disk and read like audio, so the peak stays
    far below what decoding the whole render took (3.3 GB for one hour)."""
    import subprocess
    import sys

    from merkit.midi import find_fluidsynth, find_soundfont

    try:
        find_fluidsynth()
        find_soundfont()
    except Exception as e:
        pytest.skip(str(e))
    midi = _long_midi(tmp_path / "long.mid", 30.0)
    import time as _time

    # the shipped model's ONNX export (--backend auto) is made once per cache, with its own
    # one-time peak: made first, so that the peak below is the long track's
    sf.write(tmp_path / "warm.wav", melody(3.0, 44_100), 44_100)
    subprocess.run([sys.executable, "-m", "merkit", "predict", str(tmp_path / "warm.wav"), "--no-cache"],
                   capture_output=True, check=False)
    peak_mb = 0.0
    with open(tmp_path / "out.json", "wb") as fo, open(tmp_path / "err.txt", "wb") as fe:
        p = subprocess.Popen([sys.executable, "-m", "merkit", "predict", str(midi), "--timeline", "--format", "json",
                              "--no-cache"], stdout=fo, stderr=fe)
        # merkit's own peak (VmHWM), read while it runs: FluidSynth, its child, is a separate
        # program with its own memory (wait4's figure would mix the two)
        while p.poll() is None:
            try:
                with open(f"/proc/{p.pid}/status") as st:
                    peak_mb = max(peak_mb, next(int(ln.split()[1]) / 1024 for ln in st if ln.startswith("VmHWM")))
            except (OSError, StopIteration):
                pass
            _time.sleep(0.05)
    res = json.loads((tmp_path / "out.json").read_text())["results"][0]
    assert res["status"] in ("ok", "not_music") and res["duration"] > 29 * 60, (tmp_path / "err.txt").read_text()[-500:]
    assert "timeline covers the first 10" in (res["note"] or "")
    assert peak_mb < 1300, peak_mb  # measured 1.05 GB here (was 1.8 GB for 30 min)


def test_serve_bounds_the_uploads_in_flight(tmp_path):
    """Beyond max_concurrent running and max_waiting waiting, an upload gets a JSON 503 with
    Retry-After at once; the others are answered; the server goes on serving."""
    import threading
    import time as _time

    pytest.importorskip("uvicorn")
    from test_serve import post_file, running_server

    from merkit.results import FileResult, Prediction
    from merkit.web.app import create_app

    class Slow:
        def analyse_file(self, path, timeline=False):
            _time.sleep(1.5)
            p = Prediction(arousal=0.5, valence=0.5, quadrant=1, quadrant_word="happy/excited",
                           quadrant_probs=(0.25,) * 4, certainty=0.25, start=0.0, end=1.0)
            return FileResult(str(path), prediction=p, duration=1.0)

    song = tmp_path / "s.wav"
    sf.write(song, melody(2.0, SR), SR)
    data = song.read_bytes()
    answers = []
    with running_server(create_app(Slow(), max_concurrent=1, max_waiting=1)) as url:
        def one():
            answers.append(post_file(url + "/api/predict?timeline=0", "s.wav", data))
        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        later = post_file(url + "/api/predict?timeline=0", "s.wav", data)  # still serving
    codes = sorted(status for status, _ in answers)
    assert codes.count(200) >= 2 and codes.count(503) >= 1 and set(codes) <= {200, 503}, codes
    busy = next(body for status, body in answers if status == 503)
    assert busy["ok"] is False and busy["error"].startswith("busy: 1 analyses running and 1 waiting")
    assert later[0] == 200
