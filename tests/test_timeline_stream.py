"""The timeline read and reduced a segment at a time (merkit.predictors.segments), and files
read as streams (merkit.audio.iter_mono): the same answers as one pass over the whole track."""
import numpy as np
import pytest
import soundfile as sf

from conftest import melody
from merkit import audio
from merkit.predictors import segments
from merkit.predictors.base import timeline_starts

SR = 44_100


@pytest.mark.parametrize("seconds", [3.0, 10.0, 10.5, 61.0, 137.3])
@pytest.mark.parametrize("per, block", [(1, 7.0), (3, 2.5), (60, 30.0)])
def test_segments_hold_every_window_once_with_its_margin(seconds, per, block):
    sr, w, m = 1000, 10_000, 2000  # a low rate keeps the arrays small; the logic is in samples
    n = int(seconds * sr)
    y = np.arange(n, dtype=np.float32)  # each sample holds its own index
    blocks = [y[i:i + int(block * sr)] for i in range(0, n, int(block * sr))]
    segs = list(segments.timeline_segments(blocks, sr, 10.0, 5.0, per_segment=per, margin=2.0, align=40))
    assert [s for seg in segs for s in seg.starts] == timeline_starts(n, sr, 10.0, 5.0)
    for seg in segs:
        assert seg.offset % 40 == 0 and len(seg.starts) <= per
        np.testing.assert_array_equal(seg.y, y[seg.offset:seg.offset + len(seg.y)])  # the track's own samples
        assert seg.offset <= max(0, seg.starts[0] - m)  # the margin before, unless the track starts
        assert seg.offset + len(seg.y) >= min(n, seg.starts[-1] + w + m)  # and after, unless it ends


def test_encoder_align_is_a_whole_number_of_hops():
    from merkit.encoders.musicnn import MusicnnEncoder

    enc = MusicnnEncoder.__new__(MusicnnEncoder)  # only its rate and hop are read
    enc.sample_rate = 16_000
    enc.front_end = type("F", (), {"hop_length": 256})()
    step = segments.encoder_align(SR, [enc])
    assert step == 3528  # 80 ms: 1280 samples at 16 kHz = 5 hops
    assert (step * 16_000) % (SR * 256) == 0


@pytest.fixture(scope="module")
def model():
    from merkit.predict import load_model

    return load_model()


def test_segmented_timeline_matches_one_pass(model, monkeypatch):
    """The shipped model's sliding-window timeline of a 3-minute track in segments of 4 windows,
    fed in 13 s blocks, against one segment: musicnn's frames see the same context through the
    margins, so the inputs agree to float32 rounding. (The 2 Hz curve's own test:
    tests/test_curve.py::test_streamed_curve_matches_one_pass.)"""
    monkeypatch.setattr(model, "timeline_mode", "windows")
    y = np.concatenate([melody(60.0, SR, seed=s) for s in (1, 2, 3)])
    whole = model._features_of(model._track_window(y, "x"), [y], "x")
    small = segments.timeline_segments

    def four(*a, **k):
        return small(*a, **{**k, "per_segment": 4})

    monkeypatch.setattr(segments, "timeline_segments", four)
    blocks = [y[i:i + 13 * SR] for i in range(0, len(y), 13 * SR)]
    parts = model._features_of(model._track_window(y, "x"), blocks, "x")
    assert parts["times"] == whole["times"] and len(whole["times"]) == 1 + 35
    scale = float(np.abs(whole["x"]).max())
    np.testing.assert_allclose(parts["x"], whole["x"], rtol=0, atol=1e-5 * scale)
    a = [p.arousal for p in model._predictions(whole)[1]]
    b = [p.arousal for p in model._predictions(parts)[1]]
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-4)


@pytest.mark.parametrize("suffix, rate", [(".flac", 22_050), (".wav", 44_100), (".m4a", 48_000)])
def test_streamed_file_is_the_whole_file(tmp_path, suffix, rate):
    """iter_mono's blocks, joined, are the file decoded whole (soxr's stream resampler gives the
    one-shot result), for libsndfile and PyAV files, with and without a cap."""
    y = np.stack([melody(40.0, rate, seed=5), melody(40.0, rate, seed=6)], axis=1)
    path = tmp_path / f"x{suffix}"
    if suffix == ".m4a":
        pytest.importorskip("av")
        from test_av_decode import encode

        encode(path, y[:, 0], rate)  # mono AAC
    else:
        sf.write(path, y, rate)
    for seconds in (None, 17.3):
        whole = audio._read_mono_whole(path, SR, seconds)
        blocks = list(audio.iter_mono(path, SR, seconds=seconds, block_seconds=3.0))
        assert len(blocks) > 1
        np.testing.assert_array_equal(np.concatenate(blocks), whole)


def test_streamed_window_of_an_m4a_is_the_whole_decode(tmp_path):
    """An M4A's analysis window from the stream (only the part the window can come from is
    kept) is the window of the file decoded whole, and its duration is the whole file's."""
    pytest.importorskip("av")
    from merkit.config import AudioConfig
    from test_av_decode import encode

    path = tmp_path / "long.m4a"
    encode(path, 0.5 * melody(100.0, SR, seed=7))
    cfg = AudioConfig()
    win, info = audio.load_window(path, cfg)
    ref, ref_info = audio._load_window_whole(path, cfg, None)
    np.testing.assert_array_equal(win, ref)
    assert info.duration == pytest.approx(ref_info.duration) and info.window_start == ref_info.window_start
