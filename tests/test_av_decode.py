"""The library formats libsndfile does not read (AAC/M4A, WMA, WebM/Opus, Matroska), decoded by
PyAV: known answers on generated files (a lossless stream exactly, lossy ones by their pitch and
length), header lengths, one-line errors, and `merkit predict` on a mixed folder."""
import json

import numpy as np
import pytest

from conftest import melody
from merkit.audio import AUDIO_EXTENSIONS, AudioError, decode, load_window, open_info, read_mono
from merkit.av_decode import AV_EXTENSIONS
from merkit.config import AudioConfig

av = pytest.importorskip("av")
SR = 44_100
FORMATS = {".m4a": ("mp4", "aac"), ".wma": ("asf", "wmav2"), ".webm": ("webm", "libopus"),
           ".mka": ("matroska", "flac"), ".mp4": ("mp4", "alac")}


def encode(path, y: np.ndarray, sr: int = SR):
    """Write mono float ``y`` with the codec and container of ``path``'s suffix (FORMATS)."""
    fmt, codec = FORMATS[path.suffix]
    rate = 48_000 if codec == "libopus" else sr
    if rate != sr:
        import soxr

        y = soxr.resample(y, sr, rate)
    pcm = np.clip(np.round(y * 32767), -32768, 32767).astype(np.int16)
    fmt_in = [f.name for f in av.codec.Codec(codec, "w").audio_formats][0]  # the encoder's own sample format
    data = {"s16": pcm, "s16p": pcm, "s32p": pcm.astype(np.int32) << 16,
            "fltp": pcm.astype(np.float32) / 32768, "flt": pcm.astype(np.float32) / 32768}[fmt_in]
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate)
        s.layout = "mono"
        s.format = fmt_in
        if codec == "wmav2":
            s.bit_rate = 128_000  # the encoder has no default
        step = 1024
        for i in range(0, len(pcm), step):
            frame = av.AudioFrame.from_ndarray(data[None, i:i + step], format=fmt_in, layout="mono")
            frame.sample_rate = rate
            frame.pts = i  # in samples (the stream's time base is 1/rate)
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    return pcm, rate


def test_av_formats_are_audio_formats():
    assert set(FORMATS) <= set(AV_EXTENSIONS) <= set(AUDIO_EXTENSIONS)


def test_lossless_streams_decode_exactly(tmp_path):
    y = 0.5 * melody(3.0, SR, seed=1)
    for suffix in (".mka", ".mp4"):  # FLAC in Matroska, ALAC in MP4
        pcm, rate = encode(tmp_path / f"x{suffix}", y)
        got, sr = decode(tmp_path / f"x{suffix}")
        assert sr == rate and got.shape == (len(pcm), 1), suffix
        np.testing.assert_array_equal(np.round(got[:, 0] * 32768).astype(np.int16), pcm)


@pytest.mark.parametrize("suffix", [".m4a", ".wma", ".webm"])
def test_lossy_streams_keep_pitch_and_length(tmp_path, suffix):
    t = np.arange(int(4.0 * SR)) / SR
    y = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    _, rate = encode(tmp_path / f"x{suffix}", y)
    got, sr = decode(tmp_path / f"x{suffix}")
    assert sr == rate
    assert abs(len(got) / sr - 4.0) < 0.1  # codec priming and padding: a few ms
    spec = np.abs(np.fft.rfft(got[sr // 2:sr // 2 + sr, 0]))
    assert abs(np.argmax(spec) * sr / sr - 440.0) <= 1.0  # 1 Hz bins over one second
    frames, info_sr = open_info(tmp_path / f"x{suffix}")
    assert info_sr == sr and abs(frames / sr - len(got) / sr) < 0.2  # the header's estimate
    mono = read_mono(tmp_path / f"x{suffix}", 22_050, seconds=2.0)
    assert len(mono) == 2 * 22_050
    win, info = load_window(tmp_path / f"x{suffix}", AudioConfig(window_seconds=2.0, window_start=1.0))
    assert len(win) == 2 * 44_100 and info.window_start == 1.0 and np.isfinite(info.loudness_lufs)


def test_a_damaged_or_foreign_file_is_one_line(tmp_path):
    (tmp_path / "bad.m4a").write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(AudioError, match=r"bad.m4a: cannot decode audio") as e:
        decode(tmp_path / "bad.m4a")
    assert "\n" not in str(e.value)


def test_predict_reads_a_folder_of_library_formats(tmp_path, capsys):
    from merkit.cli import main

    for i, suffix in enumerate((".m4a", ".wma", ".webm", ".mka")):
        encode(tmp_path / f"song{i}{suffix}", 0.5 * melody(20.0, SR, seed=i))
    assert main(["predict", str(tmp_path), "--format", "json", "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out)["results"]
    assert sorted(r["path"].rsplit(".", 1)[1] for r in res) == ["m4a", "mka", "webm", "wma"]
    assert all(r["status"] == "ok" and r["prediction"]["quadrant"] in (1, 2, 3, 4) for r in res), res
