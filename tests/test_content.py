"""Not music, no emotion: silence, DC, noise and steady tones are flagged (merkit.content) in
every output, music is not (generated melodies, real recordings), and timeline windows of
silence inside a track get no emotion."""
import json

import numpy as np
import pytest
import soundfile as sf

from conftest import melody
from merkit.audio import decode, downmix, as_audio, prepare
from merkit.config import AudioConfig
from merkit.content import ContentCheck, NotMusicError, check_window, spectral_stats
from merkit.features.extractor import FeatureExtractor

SR = 44_100
CFG = AudioConfig()
N = 80 * SR


def _coloured(rng, alpha):
    X = np.fft.rfft(rng.standard_normal(N))
    f = np.fft.rfftfreq(N, 1 / SR)
    f[0] = f[1]
    y = np.fft.irfft(X / f ** (alpha / 2), N)
    return y / np.abs(y).max()


def non_music(rng) -> dict[str, np.ndarray]:
    t = np.arange(N) / SR
    return {"silence": np.zeros(N), "dc offset": np.full(N, 0.5), "white noise": rng.uniform(-1, 1, N),
            "quiet white noise": 1e-3 * rng.standard_normal(N), "pink noise": _coloured(rng, 1),
            "brown noise": _coloured(rng, 2), "50 Hz hum": 0.5 * np.sin(2 * np.pi * 50 * t),
            "1 kHz tone": 0.5 * np.sin(2 * np.pi * 1000 * t),
            "pulsed noise": rng.uniform(-1, 1, N) * (np.sin(2 * np.pi * 0.5 * t) > 0),
            "click track": (np.arange(N) % SR == 0).astype(float)}


def _reason(y, check=ContentCheck()):
    fx = FeatureExtractor(CFG)
    win, info = prepare(np.asarray(y, dtype=np.float32), SR, CFG)
    return check_window(info.loudness_lufs, fx(win).mel, CFG.silence_lufs, check)


def test_generated_non_music_is_flagged(rng):
    for name, y in non_music(rng).items():
        reason, stats = _reason(y)
        assert reason is not None, (name, stats)
    assert _reason(np.zeros(N))[0].startswith("silence")
    assert "noise-like" in _reason(non_music(rng)["click track"])[0]


def test_music_is_not_flagged():
    for seed in range(5):
        reason, stats = _reason(melody(75.0, SR, seed=seed))
        assert reason is None, stats
        assert stats["variation"] > 1.0 and stats["roughness"] > 1.0


def test_check_can_be_turned_off_and_tuned(rng):
    assert _reason(np.zeros(N), ContentCheck(enabled=False)) == (None, {})
    noise = rng.uniform(-1, 1, N)
    assert _reason(noise, ContentCheck(min_variation=0.0, min_roughness=0.0))[0] is None


def test_spectral_stats_of_a_few_bands():
    mel = np.full((128, 87), np.log(1e-10))
    mel[10:13] = np.log(1.0) + 0.01 * np.arange(87)  # a tone: three active bands, steady
    s = spectral_stats(mel)
    assert s["active_bands"] == 3 and s["roughness"] == float("inf") and s["variation"] < 0.3


@pytest.fixture(scope="module")
def shipped():
    import merkit

    return merkit.load_model()


def test_shipped_model_gives_no_emotion_for_non_music(shipped, rng):
    cases = non_music(rng)
    for name in ("silence", "dc offset", "white noise", "pink noise", "1 kHz tone"):
        with pytest.raises(NotMusicError, match="not music"):
            shipped.predict(cases[name].astype(np.float32), SR)
    p = shipped.predict(melody(75.0, SR, seed=1), SR)
    assert p.quadrant in (1, 2, 3, 4) and p.warning is None


def test_cli_reports_not_music_in_every_format(tmp_path, rng, capsys):
    from merkit.cli import main

    cases = non_music(rng)
    sf.write(tmp_path / "silence.wav", cases["silence"], SR)
    sf.write(tmp_path / "noise.flac", cases["white noise"], SR)
    sf.write(tmp_path / "song.wav", melody(40.0, SR, seed=2), SR)
    out = tmp_path / "out.json"
    assert main(["predict", str(tmp_path), "--format", "json", "-o", str(out), "--no-progress"]) == 0
    res = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(out.read_text())["results"]}
    for name in ("silence.wav", "noise.flac"):
        assert res[name]["status"] == "not_music" and res[name]["prediction"] is None
        assert res[name]["error"].startswith("not music")
    assert res["song.wav"]["status"] == "ok" and res["song.wav"]["prediction"]["quadrant"] in (1, 2, 3, 4)
    assert "hold no music" in capsys.readouterr().err
    main(["predict", str(tmp_path / "silence.wav"), "--format", "csv", "-o", str(tmp_path / "o.csv"), "--no-progress"])
    text = (tmp_path / "o.csv").read_text()
    assert "not_music" in text and "not music: silence" in text
    main(["predict", str(tmp_path / "noise.flac"), "--no-progress"])
    table = capsys.readouterr().out
    assert "not music" in table and "Q4" not in table and "Q3" not in table


def test_silent_timeline_windows_get_no_emotion(shipped):
    y = np.concatenate([melody(30.0, SR, seed=3), np.zeros(25 * SR, dtype=np.float32)])
    tl = shipped.predict_timeline(y, SR)
    silent = [p for p in tl if p.start >= 30.0]
    assert silent and all(p.warning and p.quadrant is None and p.arousal is None for p in silent)
    music = [p for p in tl if p.end <= 30.0]
    assert music and all(p.warning is None and p.quadrant for p in music)


def test_no_false_alarm_on_real_recordings(shared_data):
    """A sample here; bench/reliability.py checks every real clip in ../shared/data."""
    fx = FeatureExtractor(CFG)
    paths = (sorted((shared_data / "emotify").rglob("*.mp3"))[::50]
             + sorted((shared_data / "mirex_mood").rglob("*.opus"))[::120])
    assert len(paths) >= 10
    for path in paths:
        y, sr = decode(path)
        win, info = prepare(as_audio(downmix(y), sr, sample_rate=SR), SR, CFG)
        reason, stats = check_window(info.loudness_lufs, fx(win).mel, CFG.silence_lufs)
        assert reason is None, (path, stats)
