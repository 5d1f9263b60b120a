"""The one front end: views of a window, file = array, encoder level, extraction of encoder
views into the Memo2496 layout (and back)."""
import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from merkit.audio import load_window, prepare
from merkit.config import AudioConfig, ConfigError, FeatureConfig
from merkit.data.manifest import Track
from merkit.data.memo2496 import LayoutError, load_memo2496, save_memo2496
from merkit.extract import extract
from merkit.frontend import FrontEnd, parse_views

# 6 s windows (2 musicnn patches) at 22.05 kHz keep the tests fast
AUDIO = AudioConfig(sample_rate=22_050, window_start=0.5, window_seconds=6.0)
FEATS = FeatureConfig(n_frames=31)


def test_parse_views():
    assert parse_views(None) == ("mel", "coch")
    assert parse_views("musicnn") == ("mel", "coch", "musicnn")
    assert parse_views("mel, coch,musicnn,musicnn") == ("mel", "coch", "musicnn")
    with pytest.raises(ConfigError, match="unknown view 'mert'"):
        parse_views("mel,mert")


@pytest.fixture(scope="module")
def fe():
    return FrontEnd(AUDIO, FEATS, "musicnn")


def test_window_views_shapes(fe):
    y = tone(440.0, 8.0, AUDIO.sample_rate) + 0.05 * tone(3000.0, 8.0, AUDIO.sample_rate)
    win, info = prepare(y, AUDIO.sample_rate, AUDIO)
    v = fe.window(win, info)
    assert {k: a.shape for k, a in v.arrays.items()} == fe.row_shapes() == {
        "mel": (128, 31), "coch": (84, 31), "musicnn": (1906,), "musicnn_seq": (2, 200)}
    enc = fe.encoders["musicnn"]
    np.testing.assert_allclose(v.arrays["musicnn"], enc.embed(fe.encoder_input(win, info, enc)).pooled)
    assert json.dumps(fe.info())  # stored in features.json
    assert fe.info()["views"] == ["mel", "coch", "musicnn"]


def test_file_equals_array(fe, tmp_path):
    y = tone(330.0, 7.0, 44_100)
    sf.write(tmp_path / "a.wav", y, 44_100)
    from_file = fe.file(tmp_path / "a.wav").arrays
    win, info = load_window(tmp_path / "a.wav", AUDIO)
    from_array = fe.window(win, info).arrays
    for k in from_file:
        np.testing.assert_array_equal(from_file[k], from_array[k])


def test_short_clip_heard_once_by_the_encoder(fe):
    """A clip shorter than the window: the spectral views see it looped to the window, the
    encoder hears the clip itself once (its own patches, no seam); with encoder_once=False
    (models stored before the setting) it hears the looped window. The stored sequence keeps
    the window's patch count, the clip's patches repeated."""
    sr = AUDIO.sample_rate
    rng = np.random.default_rng(3)
    y = (tone(440.0, 3.5, sr) * (1 + 0.5 * np.sin(np.linspace(0, 20, int(3.5 * sr))))
         + 0.05 * rng.standard_normal(int(3.5 * sr))).astype(np.float32)
    win, info = prepare(y, sr, AUDIO)
    assert info.repeated and len(win) == AUDIO.window_samples
    enc = fe.encoders["musicnn"]
    heard = fe.heard_once(win, info)
    assert len(heard) == len(y)
    np.testing.assert_array_equal(heard, win[:len(y)])
    v = fe.window(win, info).arrays
    once = enc.embed(fe.encoder_input(heard, info, enc))
    np.testing.assert_allclose(v["musicnn"], once.pooled)
    assert len(once.sequence) == 1 and v["musicnn_seq"].shape == (2, 200)
    np.testing.assert_array_equal(v["musicnn_seq"], np.repeat(once.sequence, 2, axis=0))
    looped_fe = FrontEnd(dataclasses.replace(AUDIO, encoder_once=False), FEATS, "musicnn",
                         encoders=fe.encoders)
    looped = looped_fe.window(win, info).arrays
    np.testing.assert_allclose(looped["musicnn"], enc.embed(fe.encoder_input(win, info, enc)).pooled)
    assert np.abs(looped["musicnn"] - v["musicnn"]).max() > 1e-3  # the loop's seam is heard
    for k in ("mel", "coch"):
        np.testing.assert_array_equal(looped[k], v[k])
    # a window cut from a long track is heard as it is
    long_win, long_info = prepare(tone(440.0, 8.0, sr), sr, AUDIO)
    assert fe.heard_once(long_win, long_info) is long_win


def test_encoder_once_absent_from_old_configs_means_looped():
    from merkit.config import from_dict, to_dict

    d = to_dict(AudioConfig())
    assert d["encoder_once"] is True
    del d["encoder_once"]
    assert from_dict(AudioConfig, d).encoder_once is False


def test_encoder_level(fe):
    """The encoder hears the window at its own reference level (-14 LUFS, 9 dB above the
    -23 LUFS window); a silent window is not amplified."""
    enc = fe.encoders["musicnn"]
    y = tone(440.0, 8.0, AUDIO.sample_rate)
    win, info = prepare(y, AUDIO.sample_rate, AUDIO)
    x = fe.encoder_input(win, info, enc)
    from merkit.audio import resample

    ratio = np.sqrt(np.mean(x ** 2) / np.mean(resample(win, AUDIO.sample_rate, 16000) ** 2))
    assert ratio == pytest.approx(10 ** (9 / 20), rel=1e-4)
    silent, sinfo = prepare(np.zeros(8 * AUDIO.sample_rate, np.float32), AUDIO.sample_rate, AUDIO)
    assert np.abs(fe.encoder_input(silent, sinfo, enc)).max() == 0.0
    assert np.isfinite(fe.window(silent, sinfo).arrays["musicnn"]).all()


def _corpus(tmp_path, n=3):
    tracks = []
    for i in range(n):
        p = tmp_path / "audio" / f"t{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, tone(220.0 * (i + 1), 7.0, 44_100), 44_100)
        tracks.append(Track(track_id=f"t{i}", path=str(p), source="test", label_a=i - 1.0, label_v=1.0 - i))
    return tracks


def test_extract_encoder_views_round_trip(fe, tmp_path):
    tracks = _corpus(tmp_path)
    (tmp_path / "audio" / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    tracks.append(Track(track_id="bad", path=str(tmp_path / "audio" / "bad.wav")))
    rep = extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, workers=0, progress=False,
                  views="mel,coch,musicnn")
    assert rep.n_done == 3 and len(rep.failures) == 1
    fs = load_memo2496(tmp_path / "out")
    assert fs.view("musicnn").shape == (3, 1906) and fs.view("musicnn_seq").shape == (3, 2, 200)
    for i in (0, 2):  # stored rows = the front end on the file
        want = fe.file(tracks[i].path).arrays
        np.testing.assert_allclose(fs.view("musicnn")[i], want["musicnn"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(fs.mel[i], want["mel"])
    sub = fs.subset([2, 0])
    np.testing.assert_array_equal(sub.view("musicnn_seq")[0], fs.view("musicnn_seq")[2])
    save_memo2496(sub, tmp_path / "copy")
    back = load_memo2496(tmp_path / "copy")
    np.testing.assert_array_equal(back.view("musicnn"), sub.view("musicnn"))
    # a rerun of the same command is a no-op; a folder without the view says how to make it
    again = extract(tracks[:3], tmp_path / "plain", audio=AUDIO, features=FEATS, workers=0, progress=False)
    with pytest.raises(LayoutError, match="--views mel,coch,musicnn"):
        load_memo2496(tmp_path / "plain").view("musicnn")
    assert again.n_done == 3


def test_missing_view_file_is_named(tmp_path, fe):
    tracks = _corpus(tmp_path, 2)
    extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, workers=0, progress=False, views="musicnn")
    (tmp_path / "out" / "musicnn_seq.npy").unlink()
    with pytest.raises(LayoutError, match="musicnn_seq.npy is missing"):
        load_memo2496(tmp_path / "out")


def test_cli_extract_views(tmp_path, capsys):
    from merkit.cli import main

    _corpus(tmp_path, 2)
    rc = main(["extract", str(tmp_path / "audio"), "-o", str(tmp_path / "out"), "--views", "mel,coch,musicnn",
               "--workers", "0", "--no-progress", "--window-seconds", "6", "--window-start", "0.5",
               "--sample-rate", "22050", "--n-frames", "31"])
    assert rc == 0
    assert load_memo2496(tmp_path / "out").view("musicnn").shape == (2, 1906)
    assert main(["extract", str(tmp_path / "audio"), "-o", str(tmp_path / "o2"), "--views", "mert"]) != 0


def test_one_encoder_level_rule_for_every_caller():
    """merkit.frontend.encoder_level_gain: the encoder's level (musicnn: -14 LUFS) over the
    front end's (-23), except below the silence gate, where loudness left the audio unscaled."""
    from types import SimpleNamespace

    from merkit.config import AudioConfig
    from merkit.frontend import encoder_level_gain

    enc, audio = SimpleNamespace(target_lufs=-14.0), AudioConfig()
    assert encoder_level_gain(enc, audio, -30.0) == pytest.approx(10 ** (9 / 20))
    assert encoder_level_gain(enc, audio, None) == pytest.approx(10 ** (9 / 20))  # level unknown
    assert encoder_level_gain(enc, audio, -80.0) == 1.0 and encoder_level_gain(enc, audio, float("-inf")) == 1.0
    assert encoder_level_gain(SimpleNamespace(), audio, -30.0) == 1.0  # an encoder without a level
    assert encoder_level_gain(enc, AudioConfig(target_lufs=None), -30.0) == 1.0  # no loudness step


def test_dynamic_predictor_leaves_silence_at_its_level():
    """The DSAML predictor used to raise audio below the silence gate by the encoder's +9 dB;
    now it follows the rule of extract-dynamic and the front end."""
    from types import SimpleNamespace

    import numpy as np

    from merkit.models.dsaml import DSAML, DSAMLConfig
    from merkit.predictors.dynamic import DynamicModel

    m = DynamicModel(DSAML(DSAMLConfig()))
    y = np.full(44_100, 1e-6, dtype=np.float32)
    front = m.front_end()
    quiet = front.encoder_input(y, SimpleNamespace(loudness_lufs=-90.0), m.encoder)
    loud = front.encoder_input(y, SimpleNamespace(loudness_lufs=-30.0), m.encoder)
    assert np.abs(loud).max() == pytest.approx(10 ** (9 / 20) * np.abs(quiet).max(), rel=1e-5)
    assert np.median(np.abs(quiet)) == pytest.approx(1e-6, rel=1e-3)  # only resampled (44.1 -> 16 kHz)
