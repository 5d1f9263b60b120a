"""merkit.predict, `merkit predict` and the shipped default model."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import merkit
import merkit.plots
import merkit.predict
from conftest import melody
from merkit.cli import main
from merkit.config import ModelConfig
from merkit.content import NotMusicError
from merkit.data.manifest import QUADRANT_WORDS
from merkit.models import build_model
from merkit.audio import downmix
from merkit.config import DEFAULT_MODEL_FILE
from merkit.plots import plot_timeline
from merkit.predict import find_inputs, load_model, scan_inputs
from merkit.predictors.base import FP16_TOLERANCE, PREDICTOR_KEY, PredictorConfig, timeline_starts
from merkit.predictors.damer import EmotionModel
from merkit.reference import reference_signal
from merkit.results import FileResult, combine
from merkit.checkpoint import make_checkpoint, save_checkpoint

SR = 44_100
# Tiny networks keep these tests fast; the front end is the real one (60 s window, T = 87).
TINY = dict(dim=16, n_layers=1, n_heads=2, ffn_mult=2, fusion_dim=16, dropout=0.0)


def tiny_network(n_classes: int, seed: int = 0):
    torch.manual_seed(seed)
    net = build_model("damer", ModelConfig(n_classes=n_classes, **TINY))
    # plausible band statistics of log energies, so that outputs are not saturated
    net.set_normalisation(torch.full((128,), -8.0), torch.full((128,), 3.0),
                          torch.full((84,), -3.0), torch.full((84,), 1.0))
    return net.eval()


def save_tiny(path, task="quadrant", *, half=False, seed=0, with_reference=False):
    net = tiny_network(4 if task == "quadrant" else 2, seed)
    sd = {k: v.half() if half and v.is_floating_point() else v for k, v in net.state_dict().items()}
    pred = {**PredictorConfig().to_dict(), "task": task, "info": {"name": "tiny"}}
    if with_reference:
        pred["reference"] = EmotionModel({task: net}).reference_probabilities()
    save_checkpoint(path, make_checkpoint(net.cfg.name, asdict(net.cfg), sd, train_config={"label": task},
                                          **{PREDICTOR_KEY: pred}))
    return path


def music(seconds: float, freq: float = 440.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    """A music-like signal (conftest.melody); ``freq`` picks the seed, so different values
    give different melodies."""
    return melody(seconds, sr, seed=int(freq), amp=amp)


@pytest.fixture(scope="module")
def tiny_model():
    return EmotionModel({"quadrant": tiny_network(4)})


# -- pure functions -----------------------------------------------------------------------------
def test_timeline_starts_known_answers():
    assert timeline_starts(5 * SR, SR, 10, 5) == [0]  # shorter than a window: one, looped
    assert timeline_starts(10 * SR, SR, 10, 5) == [0]
    assert timeline_starts(20 * SR, SR, 10, 5) == [0, 5 * SR, 10 * SR]
    # 22 s: windows at 0, 5, 10 and one flush with the end at 12 s, so the tail is covered
    assert timeline_starts(22 * SR, SR, 10, 5) == [0, 5 * SR, 10 * SR, 12 * SR]
    # a tail under a second gets no near-duplicate window
    assert timeline_starts(20 * SR + SR // 2, SR, 10, 5) == [0, 5 * SR, 10 * SR]
    assert timeline_starts(21 * SR, SR, 10, 5) == [0, 5 * SR, 10 * SR, 11 * SR]
    with pytest.raises(ValueError):
        timeline_starts(SR, SR, 10, 0)


def test_combine_quadrant_marginals():
    pq = np.array([[0.4, 0.3, 0.2, 0.1], [0.0, 0.0, 1.0, 0.0]])
    out = combine({"quadrant": pq}, np.array([1.0, 0.5]))
    assert out[0]["arousal"] == pytest.approx(0.7)  # Q1 + Q2
    assert out[0]["valence"] == pytest.approx(0.5)  # Q1 + Q4
    assert out[0]["quadrant"] == 1 and out[0]["quadrant_word"] == QUADRANT_WORDS[1]
    assert out[1]["quadrant"] == 3 and out[1]["arousal"] == 0.0 and out[1]["view_agreement"] == 0.5
    assert out[1]["certainty"] == 1.0 and out[0]["certainty"] == pytest.approx(0.35)


def test_combine_independent_a_v():
    pa, pv = np.array([[0.2, 0.8]]), np.array([[0.9, 0.1]])
    (out,) = combine({"a": pa, "v": pv}, np.array([0.9]))
    assert out["arousal"] == pytest.approx(0.8) and out["valence"] == pytest.approx(0.1)
    assert out["quadrant"] == 2 and out["quadrant_word"] == "angry/tense"
    assert sum(out["quadrant_probs"]) == pytest.approx(1.0)
    assert out["quadrant_probs"][1] == pytest.approx(0.8 * 0.9)
    (only_a,) = combine({"a": pa}, np.array([0.9]))
    assert only_a["valence"] is None and only_a["quadrant"] is None


# -- the predictor ------------------------------------------------------------------------------
def test_predict_array_and_file_agree(tiny_model, tmp_path):
    y = music(70.0)
    sf.write(tmp_path / "x.wav", y, SR, subtype="FLOAT")
    a = tiny_model.predict(y, SR)
    b = tiny_model.predict_file(tmp_path / "x.wav")
    assert a == b
    # 70 s is shorter than 15 s + 60 s: the window is centred (AudioConfig.short_policy)
    assert (a.start, a.end, a.looped) == (5.0, 65.0, False)
    assert 0.25 <= a.certainty <= 1.0 and 0.5 <= a.view_agreement <= 1.0 and 1 <= a.quadrant <= 4
    assert sum(a.quadrant_probs) == pytest.approx(1.0, abs=1e-6)
    assert a.arousal == pytest.approx(a.quadrant_probs[0] + a.quadrant_probs[1], abs=1e-9)


def test_downmix_equals_mean(rng):
    for ch in (1, 2, 3):
        y = rng.standard_normal((1000, ch)).astype(np.float32)
        np.testing.assert_allclose(downmix(y), y.mean(axis=1), rtol=0, atol=1e-6)
    y = rng.standard_normal((1000, 2)).astype(np.float32)
    assert np.array_equal(downmix(y), y.mean(axis=1))  # stereo: bit-identical


def test_predict_channel_layouts_agree(tiny_model):
    y = music(12.0)
    st = np.stack([y, y], axis=1)  # (n, 2)
    assert tiny_model.predict(st, SR) == tiny_model.predict(st.T, SR) == tiny_model.predict(y, SR)


def test_short_clip_is_looped(tiny_model):
    p = tiny_model.predict(music(8.0), SR)
    assert p.looped and p.start == 0.0 and p.end == pytest.approx(8.0)


def test_timeline_windows_and_two_paths(tiny_model):
    y = np.concatenate([music(12.0, 220.0, amp=0.05), music(10.0, 880.0, amp=0.5)])
    tl = tiny_model.predict_timeline(y, SR)
    assert [(p.start, p.end) for p in tl] == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (12.0, 22.0)]
    # a timeline window is the same as predicting that slice of audio with the timeline front end
    cfg = replace(tiny_model.config, audio=tiny_model.config.timeline_audio())
    sliced = EmotionModel(tiny_model.networks, cfg)
    p = sliced.predict(y[5 * SR:15 * SR], SR)
    assert p.arousal == pytest.approx(tl[1].arousal, abs=1e-6)
    assert p.view_agreement == pytest.approx(tl[1].view_agreement, abs=1e-6)


def test_model_file_round_trip_float16(tmp_path):
    path = save_tiny(tmp_path / "m.pt", half=True, with_reference=True)
    loaded = load_model(path)
    ref = EmotionModel({"quadrant": tiny_network(4)})
    y = music(30.0)
    a, b = loaded.predict(y, SR), ref.predict(y, SR)
    assert abs(a.arousal - b.arousal) < FP16_TOLERANCE and abs(a.valence - b.valence) < FP16_TOLERANCE
    assert loaded.check() < FP16_TOLERANCE
    assert loaded.info == {"name": "tiny"}


def test_check_detects_changed_weights(tmp_path):
    path = save_tiny(tmp_path / "m.pt", with_reference=True)
    m = load_model(path)
    with torch.no_grad():
        m.networks["quadrant"].head_fused.bias += torch.tensor([3.0, -3.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="differ"):
        m.check()


def test_a_and_v_checkpoints_combine(tmp_path):
    m = load_model([save_tiny(tmp_path / "a.pt", "a", seed=1), save_tiny(tmp_path / "v.pt", "v", seed=2)])
    p = m.predict(music(20.0), SR)
    assert p.quadrant_probs[0] == pytest.approx(p.arousal * p.valence, abs=1e-9)
    with pytest.raises(ValueError, match="second"):
        load_model([tmp_path / "a.pt", tmp_path / "a.pt"])


def test_bad_model_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")


def _folder_with_bad_files(root):
    (root / "sub").mkdir(parents=True)
    sf.write(root / "good.wav", music(6.0), SR)
    sf.write(root / "sub" / "good2.flac", music(5.0, 330.0), SR)
    (root / "empty.mp3").write_bytes(b"")
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    (root / "notes.ogg").write_text("this is not audio\n")
    (root / "readme.txt").write_text("skipped: not an audio extension")
    return root


def test_analyse_files_reports_bad_files_and_goes_on(tiny_model, tmp_path):
    files = find_inputs([_folder_with_bad_files(tmp_path), tmp_path / "missing.wav"])
    names = [f.name for f in files]
    assert "readme.txt" not in names and names[-1] == "missing.wav"
    results = list(tiny_model.analyse_files(files, workers=2))
    assert [r.path for r in results] == [str(f) for f in files]  # input order
    by = {r.path.rsplit("/", 1)[-1]: r for r in results}
    assert by["good.wav"].ok and by["good2.flac"].ok
    for bad in ("empty.mp3", "corrupt.wav", "notes.ogg", "missing.wav"):
        assert not by[bad].ok and bad in by[bad].error and "\n" not in by[bad].error
    assert "empty" in by["empty.mp3"].error
    # threads and the serial path agree
    serial = list(tiny_model.analyse_files(files, workers=1))
    assert [r.to_dict() for r in serial] == [r.to_dict() for r in results]


# -- the command line ---------------------------------------------------------------------------
def test_cli_formats_and_exit_code(tmp_path, capsys):
    model = save_tiny(tmp_path / "m.pt")
    data = _folder_with_bad_files(tmp_path / "music")
    rc = main(["predict", str(data), "--model", str(model), "--format", "json", "-o", str(tmp_path / "o.json"),
               "--no-progress"])
    assert rc == 1  # some files failed
    out = json.loads((tmp_path / "o.json").read_text())
    ok = [r for r in out["results"] if r["ok"]]
    assert len(ok) == 2 and len(out["results"]) == 5
    assert ok[0]["prediction"]["quadrant_word"] == QUADRANT_WORDS[ok[0]["prediction"]["quadrant"]]

    rc = main(["predict", str(data / "good.wav"), "--model", str(model), "--format", "csv", "--timeline"])
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["kind"] for r in rows] == ["track", "window"]  # 6 s: one (looped) timeline window
    assert float(rows[0]["arousal"]) == pytest.approx(float(rows[0]["q1"]) + float(rows[0]["q2"]), abs=1e-6)

    rc = main(["predict", str(data / "good.wav"), "--model", str(model)])
    table = capsys.readouterr().out
    assert rc == 0 and "good.wav" in table and "Q" in table and "P(A high)" in table


def test_cli_timeline_plot(tmp_path):
    model = save_tiny(tmp_path / "m.pt")
    sf.write(tmp_path / "song.wav", music(25.0), SR)
    rc = main(["predict", str(tmp_path / "song.wav"), "--model", str(model), "--timeline",
               "--plot", str(tmp_path / "plots"), "--format", "json", "-o", str(tmp_path / "o.json")])
    assert rc == 0
    png = tmp_path / "plots" / "song.wav.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tl = json.loads((tmp_path / "o.json").read_text())["results"][0]["timeline"]
    assert [w["start"] for w in tl] == [0.0, 5.0, 10.0, 15.0]


def test_plot_needs_timeline():
    with pytest.raises(ValueError, match="timeline"):
        plot_timeline(FileResult("x.wav"))


# -- the shipped model --------------------------------------------------------------------------
def test_shipped_model_loads_and_matches_its_reference():
    assert DEFAULT_MODEL_FILE.is_file(), "the default model must ship with the package"
    assert DEFAULT_MODEL_FILE.stat().st_size < 5_000_000
    model = merkit.load_model()
    # float16 weights reproduce the float32 predictions recorded at export
    assert model.check() < FP16_TOLERANCE
    from merkit.predictors.unified import UnifiedModel

    assert isinstance(model, UnifiedModel)  # the unified model (musicnn + tonal features)
    assert set(model.info["trained_on"]) == {"emopia", "mirex_mood", "emotify", "q4"}
    with pytest.raises(NotMusicError, match="a single sound"):  # one synthetic chord: not music
        model.predict(reference_signal(), 44_100)
    p = model.predict(melody(60.0, 44_100, seed=8), 44_100)
    assert p.quadrant in (1, 2, 3, 4) and 0.25 <= p.certainty <= 1.0 and p.view_agreement is None
    assert -1 <= p.arousal_score <= 1 and -1 <= p.valence_score <= 1 and p.mood_words


def test_import_merkit_is_lazy():
    import subprocess
    import sys

    code = "import sys, merkit; assert 'torch' not in sys.modules; print(merkit.load_model.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "merkit.predict"


def test_decoder_chatter_stays_out_of_the_output(tmp_path):
    """libmpg123 prints resync notes for a damaged MP3 straight to descriptor 2; `merkit
    predict` keeps them out of its output (MERKIT_NATIVE_STDERR=1 lets them through)."""
    import os
    import subprocess
    import sys

    sf.write(tmp_path / "x.mp3", music(20.0, sr=22_050), 22_050)
    b = bytearray((tmp_path / "x.mp3").read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.integers(1000, len(b) - 1000, 40):
        b[i:i + 50] = rng.bytes(50)
    (tmp_path / "x.mp3").write_bytes(bytes(b))
    cmd = [sys.executable, "-m", "merkit", "predict", str(tmp_path / "x.mp3"), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k != "MERKIT_NATIVE_STDERR"}
    loud = subprocess.run(cmd, capture_output=True, text=True, env={**env, "MERKIT_NATIVE_STDERR": "1"})
    assert "Illegal Audio-MPEG-Header" in loud.stderr  # the file does make libmpg123 talk
    quiet = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert "Illegal Audio-MPEG-Header" not in quiet.stderr + quiet.stdout
    assert "x.mp3" in quiet.stdout and "Traceback" not in quiet.stderr


def test_cli_outputs_checked_before_work_and_kept_after_late_failures(tmp_path, monkeypatch, capsys):
    model = save_tiny(tmp_path / "m.pt")
    for sub in ("a", "b", "c"):  # three inputs with the same name
        (tmp_path / "in" / sub).mkdir(parents=True)
        sf.write(tmp_path / "in" / sub / "1.wav", music(12.0, freq=300.0 + ord(sub)), SR)
    sf.write(tmp_path / "in" / "short.wav", music(4.0), SR)
    (tmp_path / "outdir").mkdir()
    (tmp_path / "file.png").write_bytes(b"x")
    calls = []
    monkeypatch.setattr(merkit.predictors.base.Predictor, "analyse_files",
                        lambda self, *a, **k: calls.append(1) or iter(()))
    with pytest.raises(ValueError, match="is a folder"):
        from merkit.outputs import check_file

        check_file(str(tmp_path / "outdir"), flag="-o", kind="predictions")
    assert main(["predict", str(tmp_path / "in"), "--model", str(model), "-o", str(tmp_path / "outdir")]) == 1
    assert main(["predict", str(tmp_path / "in"), "--model", str(model), "--timeline",
                 "--plot", str(tmp_path / "file.png")]) == 1
    assert not calls  # refused before any prediction ran
    assert "is a folder" in capsys.readouterr().err
    monkeypatch.undo()

    # equal names get one PNG each; a plot that fails costs only itself
    import merkit.commands.predict as cmd

    real = merkit.plots.plot_timeline
    monkeypatch.setattr(merkit.plots, "plot_timeline",
                        lambda res, path: (_ for _ in ()).throw(OSError("disk full")) if "short" in str(path)
                        else real(res, path))
    rc = main(["predict", str(tmp_path / "in"), "--model", str(model), "--timeline", "--plot",
               str(tmp_path / "plots"), "--format", "csv", "-o", str(tmp_path / "o.csv")])
    assert rc == 0 and "plot not written: disk full" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path / "plots").as_posix() for p in (tmp_path / "plots").rglob("*.png")) == [
        "a/1.wav.png", "b/1.wav.png", "c/1.wav.png"]
    rows = list(csv.DictReader(open(tmp_path / "o.csv")))
    assert len({r["path"] for r in rows}) == 4

    # a run stopped half-way (Ctrl-C) still writes the rows it computed
    real_files = merkit.predictors.base.Predictor.analyse_files

    def interrupted(self, paths, **kw):
        it = real_files(self, paths, **kw)
        yield next(it)
        raise KeyboardInterrupt

    monkeypatch.setattr(merkit.predictors.base.Predictor, "analyse_files", interrupted)
    assert main(["predict", str(tmp_path / "in"), "--model", str(model), "--format", "csv",
                 "-o", str(tmp_path / "partial.csv")]) == 130
    assert len(list(csv.DictReader(open(tmp_path / "partial.csv")))) == 1
    assert "stopped by Ctrl-C after 1 of 4 file(s); the finished rows are in" in capsys.readouterr().err
    assert cmd.plot_paths([Path("x/1.wav")], Path("p")) == {"x/1.wav": Path("p/1.wav.png")}


def test_looped_windows_are_marked_in_the_table(tmp_path, capsys):
    model = save_tiny(tmp_path / "m.pt")
    sf.write(tmp_path / "short.wav", music(5.0), SR)
    assert main(["predict", str(tmp_path / "short.wav"), "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert "0.0-5.0*" in out and "* looped" in out


def test_quickstart_writes_under_the_cache_not_the_current_folder(tmp_path, monkeypatch, capsys):
    import merkit.commands.quickstart as qs

    seen = {}
    monkeypatch.setattr(qs, "quickstart", lambda out, **kw: seen.setdefault("out", Path(out)))
    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart"]) == 0
    assert seen["out"] == tmp_path / "cache" / "quickstart"
    assert "working folder" in capsys.readouterr().out
    seen.clear()
    assert main(["quickstart", "-o", "mine"]) == 0 and seen["out"] == Path("mine")


def test_a_folder_scan_reports_what_it_skips_and_follows_linked_folders(tmp_path, capsys):
    """Nothing is left out in silence: files of other types and unreadable folders are named
    on stderr; a symbolic link to a folder (an external drive) is followed, a link loop once."""
    import os
    import shutil

    from merkit.cli import main

    lib, drive = tmp_path / "lib", tmp_path / "drive"
    lib.mkdir()
    drive.mkdir()
    sf.write(lib / "a.wav", music(5.0), SR)
    sf.write(drive / "b.wav", music(5.0, 330.0), SR)
    (lib / "cover.jpg").write_bytes(b"\xff\xd8")
    (lib / "notes.txt").write_text("x")
    os.symlink(drive, lib / "drive")
    os.symlink(lib, drive / "back")  # a loop
    scan = scan_inputs([lib])
    assert [p.name for p in scan.files] == ["a.wav", "b.wav"]
    why = {p.name: r for p, r in scan.skipped}
    assert why["cover.jpg"] == "not audio or MIDI (.jpg)" and why["notes.txt"] == "not audio or MIDI (.txt)"
    assert "link(s) to a folder already scanned" in why.values()
    if os.geteuid() != 0:  # root reads every folder
        (lib / "private").mkdir()
        (lib / "private").chmod(0)
        assert any("not readable" in r for _, r in scan_inputs([lib]).skipped)
        (lib / "private").chmod(0o755)
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(lib / "notes.txt", only / "x.txt")
    assert main(["predict", str(only)]) == 1
    err = capsys.readouterr().err
    assert "no audio or MIDI files found" in err and "1 not audio or MIDI (.txt)" in err
    assert main(["predict", str(lib), "--format", "csv", "--no-progress"]) == 0
    cap = capsys.readouterr()
    assert "3 skipped: 1 not audio or MIDI (.jpg), 1 not audio or MIDI (.txt), 1 link(s)" in cap.err
    assert cap.out.splitlines()[0].endswith(",note")


def test_decoding_runs_ahead_a_bounded_number_of_files():
    """analyse_files' decoding threads run at most n files ahead of the one being analysed
    (Executor.map would submit them all and hold every decoded window), results in order."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from merkit.predictors.base import _ahead

    started, lock = [], threading.Lock()

    def work(i):
        with lock:
            started.append(i)
        return i * i

    seen = []
    with ThreadPoolExecutor(2) as pool:
        for k, out in enumerate(_ahead(pool, work, range(20), 3)):
            seen.append(out)
            with lock:
                assert len(started) <= k + 1 + 3  # the one read, and at most 3 submitted ahead
    assert seen == [i * i for i in range(20)]
    assert list(_ahead(ThreadPoolExecutor(1), work, [], 3)) == []
