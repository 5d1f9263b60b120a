import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from merkit.audio import load_window
from merkit.config import AudioConfig, FeatureConfig
from merkit.data.manifest import Track
from merkit.data.memo2496 import load_memo2496
from merkit.extract import WORK_DIR, extract
from merkit.features.extractor import FeatureExtractor

# small, fast settings: 3 s windows at 22.05 kHz
AUDIO = AudioConfig(sample_rate=22_050, window_start=0.5, window_seconds=3.0)
FEATS = FeatureConfig(n_frames=31)


def _corpus(tmp_path, n=6):
    tracks = []
    for i in range(n):
        p = tmp_path / "audio" / f"t{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, tone(220.0 * (i + 1), 4.0, 44_100), 44_100)
        tracks.append(Track(track_id=f"t{i}", path=str(p), source="test", label_a=i - 2.5, label_v=2.5 - i))
    return tracks


@pytest.mark.parametrize("workers", [0, 2])
def test_extract_layout_matches_direct_features(tmp_path, workers):
    tracks = _corpus(tmp_path)
    rep = extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, workers=workers, progress=False)
    assert rep.n_done == 6 and not rep.failures
    fs = load_memo2496(tmp_path / "out")
    assert fs.mel.shape == (6, 128, 31) and fs.coch.shape == (6, 84, 31)
    np.testing.assert_allclose(fs.label_a, [t.label_a for t in tracks])
    fx = FeatureExtractor(AUDIO, FEATS)
    for i in (0, 5):
        f = fx(load_window(tracks[i].path, AUDIO)[0])
        np.testing.assert_array_equal(fs.mel[i], f.mel)
        np.testing.assert_array_equal(fs.coch[i], f.coch)
    assert fs.tracks[3].duration == pytest.approx(4.0)
    assert not (tmp_path / "out" / WORK_DIR).exists()
    assert (tmp_path / "out" / "failures.csv").read_text().strip() == "track_id,path,reason"
    assert json.loads((tmp_path / "out" / "features.json").read_text())["geometry"]["n_frames"] == 31


def test_bad_files_reported_and_skipped(tmp_path):
    tracks = _corpus(tmp_path, 4)
    (tmp_path / "audio" / "bad.mp3").write_bytes(b"not audio" * 50)
    (tmp_path / "audio" / "empty.wav").write_bytes(b"")
    tracks.insert(1, Track(track_id="bad", path=str(tmp_path / "audio" / "bad.mp3")))
    tracks.append(Track(track_id="empty", path=str(tmp_path / "audio" / "empty.wav")))
    rep = extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, workers=0, progress=False)
    assert rep.n_done == 4 and {f[0] for f in rep.failures} == {"bad", "empty"}
    fs = load_memo2496(tmp_path / "out")
    assert [t.track_id for t in fs.tracks] == ["t0", "t1", "t2", "t3"]
    fx = FeatureExtractor(AUDIO, FEATS)
    np.testing.assert_array_equal(fs.mel[1], fx(load_window(tracks[2].path, AUDIO)[0]).mel)
    report = (tmp_path / "out" / "failures.csv").read_text()
    assert "bad.mp3" in report and "cannot decode" in report and "empty" in report
    # fixing a file and rerunning redoes only that file
    sf.write(tmp_path / "audio" / "empty.wav", tone(300.0, 4.0, 22_050), 22_050)
    rep2 = extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, workers=0, progress=False)
    assert rep2.n_skipped_resumed == 4 and rep2.n_done == 5 and [f[0] for f in rep2.failures] == ["bad"]
    assert len(load_memo2496(tmp_path / "out")) == 5


def test_resume_after_interruption(tmp_path, monkeypatch):
    import merkit.extract as ex

    tracks = _corpus(tmp_path)
    real = ex._work
    calls = {"n": 0}

    def dying(i, *a):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # a kill in the middle of the batch
        return real(i, *a)

    monkeypatch.setattr(ex, "_work", dying)
    with pytest.raises(KeyboardInterrupt):
        extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, workers=0, progress=False)
    assert not (tmp_path / "out" / "mel_spec.npy").exists()  # nothing half-published
    monkeypatch.setattr(ex, "_work", real)
    rep = extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, workers=0, progress=False)
    assert rep.n_skipped_resumed == 3 and rep.n_done == 6
    ref = extract(tracks, tmp_path / "ref", audio=AUDIO, features=FEATS, workers=0, progress=False)
    np.testing.assert_array_equal(load_memo2496(tmp_path / "out").mel, load_memo2496(tmp_path / "ref").mel)
    assert ref.n_done == 6
    # a finished folder is recognised: nothing is recomputed
    again = extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, workers=0, progress=False)
    assert again.n_skipped_resumed == 6


def test_other_settings_refused_in_unfinished_folder(tmp_path, monkeypatch):
    import merkit.extract as ex

    tracks = _corpus(tmp_path, 3)
    monkeypatch.setattr(ex, "_work", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, workers=0, progress=False)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="unfinished extraction"):
        extract(tracks, tmp_path / "out", audio=AUDIO, features=FeatureConfig(n_frames=15), workers=0,
                progress=False)
    rep = extract(tracks, tmp_path / "out", audio=AUDIO, features=FeatureConfig(n_frames=15), workers=0,
                  progress=False, overwrite=True)
    assert rep.n_done == 3


def test_duplicate_ids_rejected(tmp_path):
    tracks = _corpus(tmp_path, 2)
    tracks[1].track_id = "t0"
    with pytest.raises(ValueError, match="duplicate"):
        extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, workers=0, progress=False)


def test_curation_duration_filter(tmp_path):
    tracks = _corpus(tmp_path, 2)
    rep = extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, workers=0, progress=False,
                  min_duration=30.0)
    assert rep.n_done == 0 and all("curation" in f[2] for f in rep.failures)


def test_cli_extract_folder_with_bad_file(tmp_path, capsys):
    from merkit.cli import main

    _corpus(tmp_path, 3)
    (tmp_path / "audio" / "notes.txt").write_text("not audio")  # ignored: not an audio extension
    (tmp_path / "audio" / "broken.flac").write_bytes(b"fLaC" + b"\0" * 64)
    rc = main(["extract", str(tmp_path / "audio"), "-o", str(tmp_path / "out"), "--workers", "0",
               "--no-progress", "--sample-rate", "22050", "--window-start", "0.5", "--window-seconds", "3",
               "--n-frames", "31"])
    assert rc == 1  # some tracks failed; the others are saved
    err = capsys.readouterr().err
    assert "broken.flac" in err and "cannot decode" in err
    fs = load_memo2496(tmp_path / "out")
    assert len(fs) == 3 and fs.mel.shape[2] == 31
    assert np.isnan(fs.label_a).all()  # a bare folder is unlabelled


def test_extract_reads_what_predict_reads_and_reports_dangling_links(tmp_path, capsys):
    """.aiff and .opus were skipped silently by extract while predict read them; a dangling
    symbolic link vanished. Now the same formats, and the link is a failure with its reason."""
    from merkit.cli import main

    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "a.aiff", tone(330.0, 4.0, 22_050), 22_050, format="AIFF")
    sf.write(audio / "b.wav", tone(440.0, 4.0, 22_050), 22_050)
    (audio / "c.mp3").symlink_to(tmp_path / "gone.mp3")
    rc = main(["extract", str(audio), "-o", str(tmp_path / "out"), "--workers", "0", "--no-progress",
               "--sample-rate", "22050", "--window-start", "0.5", "--window-seconds", "3", "--n-frames", "31"])
    assert rc == 1
    assert len(load_memo2496(tmp_path / "out")) == 2
    failures = (tmp_path / "out" / "failures.csv").read_text()
    assert "c.mp3" in failures and "dangling symbolic link" in failures


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d))
    return out


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent (now init) has not reaped it


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_exit_when_extract_is_killed(tmp_path, sig):
    """Killing the main process of `merkit extract` leaves no worker (or resource tracker) behind."""
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(60):
        sf.write(audio / f"{i:02d}.wav", tone(220.0 + 10 * i, 30.0, 44_100), 44_100)
    proc = subprocess.Popen([sys.executable, "-m", "merkit", "extract", str(audio), "-o", str(tmp_path / "out"),
                             "--workers", "2", "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        kids: list[int] = []
        while time.monotonic() < deadline:  # the two workers and the resource tracker
            kids = _children(proc.pid)
            if len(kids) >= 3 and (tmp_path / "out" / WORK_DIR).exists():
                break
            time.sleep(0.2)
        assert len(kids) >= 3, "the workers did not start"
        time.sleep(1.0)  # mid-run
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.2)
        assert not [k for k in kids if _alive(k)], "processes outlived merkit extract"
    finally:
        if proc.poll() is None:
            proc.kill()
        for k in _children(proc.pid):
            os.kill(k, signal.SIGKILL)
