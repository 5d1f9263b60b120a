import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from merkit.audio import (AudioError, as_audio, integrated_loudness, load_audio, load_window,
                          normalize_loudness, prepare, select_window, window_bounds)
from merkit.config import AudioConfig, ConfigError
from merkit.features.extractor import FeatureExtractor

SR = 44_100


@pytest.mark.parametrize("fmt,ext", [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")])
def test_formats_decode_and_resample(tmp_path, fmt, ext):
    y = tone(1000.0, 2.0, 22_050)
    p = tmp_path / f"t.{ext}"
    sf.write(p, np.stack([y, y], 1), 22_050, format=fmt)
    out, sr = load_audio(p, sample_rate=SR)
    assert sr == SR and out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) / SR - 2.0) < 0.1  # mp3 adds encoder delay/padding
    spec = np.abs(np.fft.rfft(out[SR // 4: SR // 4 + SR]))
    assert abs(np.argmax(spec) - 1000) <= 1  # 1 Hz bins: the tone stays at 1 kHz


def test_stereo_kept_when_asked(tmp_path):
    y = tone(440.0, 1.0, SR)
    sf.write(tmp_path / "s.wav", np.stack([y, 0.5 * y], 1), SR)
    st, _ = load_audio(tmp_path / "s.wav", mono=False)
    mono, _ = load_audio(tmp_path / "s.wav")
    assert st.shape == (SR, 2)
    np.testing.assert_allclose(mono, st.mean(1), atol=1e-6)


def test_loudness_normalised_to_target(rng):
    y = (0.01 * rng.standard_normal(SR * 5)).astype(np.float32)
    out, before, gain = normalize_loudness(y, SR, target_lufs=-23.0)
    assert integrated_loudness(out, SR) == pytest.approx(-23.0, abs=0.05)
    assert gain == pytest.approx(-23.0 - before)


def test_silence_guard():
    y = np.zeros(SR * 3, np.float32)
    out, lufs, gain = normalize_loudness(y, SR)
    assert gain == 0.0 and not np.isfinite(lufs) and np.all(out == 0)
    quiet = (1e-6 * np.random.default_rng(0).standard_normal(SR * 3)).astype(np.float32)
    out, lufs, gain = normalize_loudness(quiet, SR)
    assert lufs < -70 and gain == 0.0


def test_window_policy_long_medium_short():
    cfg = AudioConfig()
    assert window_bounds(100 * SR, SR, cfg) == (15 * SR, False)  # paper: 15 s .. 75 s
    assert window_bounds(70 * SR, SR, cfg) == (5 * SR, False)  # centred: (70 - 60) / 2
    assert window_bounds(30 * SR, SR, cfg) == (0, True)


def test_short_clip_repeat_and_zero():
    y = np.arange(10, dtype=np.float32)
    cfg_r = AudioConfig(sample_rate=10, window_start=0.0, window_seconds=2.5, min_seconds=0.1)
    out, _, rep = select_window(y, 10, cfg_r)
    assert rep and out.tolist() == list(range(10)) * 2 + list(range(5))
    out, _, _ = select_window(y, 10, AudioConfig(sample_rate=10, window_start=0.0, window_seconds=2.5,
                                                 short_policy="zero", min_seconds=0.1))
    assert out[:10].tolist() == list(range(10)) and np.all(out[10:] == 0)
    with pytest.raises(ConfigError):
        AudioConfig(short_policy="stretch")


def test_file_equals_array(tmp_path):
    cfg = AudioConfig(window_start=1.0, window_seconds=4.0)
    y = tone(523.25, 6.0, SR) + 0.05 * tone(3000.0, 6.0, SR)
    sf.write(tmp_path / "a.wav", y, SR, subtype="FLOAT")
    win_f, info_f = load_window(tmp_path / "a.wav", cfg)
    win_a, info_a = prepare(as_audio(y, SR, sample_rate=SR), SR, cfg)
    np.testing.assert_array_equal(win_f, win_a)
    fx = FeatureExtractor(cfg)
    np.testing.assert_array_equal(fx(win_f).mel, fx(win_a).mel)
    assert info_f.window_start == 1.0 and info_a.loudness_lufs == pytest.approx(info_f.loudness_lufs)


def test_bad_inputs_give_clear_errors(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "junk.mp3").write_bytes(b"this is not audio at all" * 100)
    sf.write(tmp_path / "zero.wav", np.zeros((0,), np.float32), SR)
    sf.write(tmp_path / "short.wav", np.zeros(SR // 10, np.float32), SR)
    sf.write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2] * 1000, np.float32), SR, subtype="FLOAT")
    cases = {"empty.wav": "empty", "junk.mp3": "cannot decode", "zero.wav": "zero-length",
             "nan.wav": "NaN", "short.wav": "too short", "missing.wav": "no such file"}
    for name, needle in cases.items():
        with pytest.raises(AudioError) as e:
            load_window(tmp_path / name, AudioConfig())
        assert needle in str(e.value) and name in str(e.value)


def test_silent_file_gives_finite_features(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(SR * 2, np.float32), SR)
    cfg = AudioConfig(window_start=0.0, window_seconds=2.0)
    win, info = load_window(tmp_path / "silent.wav", cfg)
    f = FeatureExtractor(cfg)(win)
    assert np.isfinite(f.mel).all() and np.isfinite(f.coch).all() and info.gain_db == 0.0


def test_array_layout_channels_first():
    y = np.stack([tone(440, 1.0, SR), tone(440, 1.0, SR)])  # (2, n) librosa style
    assert as_audio(y, SR, sample_rate=SR).shape == (SR,)


def test_long_files_decode_only_the_window(tmp_path, monkeypatch):
    """A 10-minute file: the track window reads ~61 s of it, the timeline at most its cap."""
    import merkit.audio as audio
    from merkit.config import AudioConfig

    sr = 8000
    path = tmp_path / "long.flac"
    sf.write(path, (0.1 * np.sin(np.arange(600 * sr) * 0.05)).astype(np.float32), sr)
    spans = []
    real = audio.read_frames
    monkeypatch.setattr(audio, "read_frames", lambda p, a, b: spans.append(b - a) or real(p, a, b))
    win, info = audio.load_window(path, AudioConfig())
    assert info.duration == pytest.approx(600.0) and info.window_start == pytest.approx(15.0)
    assert len(spans) == 1 and spans[0] <= 61.5 * sr
    monkeypatch.undo()
    whole, _ = audio._load_window_whole(path, AudioConfig(), None)
    np.testing.assert_allclose(win, whole, atol=1e-6)
    y = audio.read_mono(path, 44_100, seconds=30.0)
    assert len(y) == 30 * 44_100
