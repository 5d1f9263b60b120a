import numpy as np
import pytest

from conftest import tone
from merkit.config import PRESETS, AudioConfig, ConfigError, FeatureConfig
from merkit.features.cochleagram import centre_frequencies, gammatone_filterbank
from merkit.features.extractor import FeatureExtractor
from merkit.features.mel import mel_filterbank
from merkit.features.spectrum import frame_geometry, pre_emphasis

# A small but paper-shaped configuration: 6 s at 22.05 kHz, T = 87, 128 Mel + 84 gammatone.
SMALL_AUDIO = AudioConfig(sample_rate=22_050, window_start=0.0, window_seconds=6.0)


@pytest.fixture(scope="module")
def fx():
    return FeatureExtractor(SMALL_AUDIO, FeatureConfig())


def test_paper_geometry():
    g = frame_geometry(AudioConfig().window_samples, FeatureConfig())
    assert g.n_frames == 87
    assert g.hop * 2 == g.frame_length
    # N = L / 44 (paper), rounded down to even
    assert g.frame_length == 2_646_000 // 44 - (2_646_000 // 44) % 2
    assert g.frame_length + 86 * g.hop <= g.window_samples
    assert g.n_fft >= 2 * g.frame_length


def test_frames1s_preset_geometry():
    p = PRESETS["frames1s"]
    g = frame_geometry(p.audio.window_samples, p.features)
    assert (g.frame_length, g.hop, g.n_fft, g.n_frames) == (512, 256, 1024, 87)
    assert abs(g.n_frames * g.hop / p.audio.sample_rate - 1.0) < 0.02  # "87 frames ~ 1 s"


def test_geometry_rejects_impossible():
    with pytest.raises(ConfigError):
        frame_geometry(1000, FeatureConfig(frame_length=512))


def test_shapes_dtypes(fx):
    f = fx(np.zeros(SMALL_AUDIO.window_samples, np.float32))
    assert f.mel.shape == (128, 87) and f.coch.shape == (84, 87)
    assert f.mel.dtype == np.float32 and f.coch.dtype == np.float32


def test_silence_is_finite(fx):
    f = fx(np.zeros(SMALL_AUDIO.window_samples, np.float32))
    assert np.isfinite(f.mel).all() and np.isfinite(f.coch).all()
    assert np.allclose(f.mel, np.log(1e-10))


@pytest.mark.parametrize("freq", [110.0, 440.0, 1000.0, 3000.0])
def test_tone_peaks_in_nearest_mel_band(fx, freq):
    f = fx(tone(freq, 6.0, 22_050))
    band = int(np.argmax(f.mel[:, 40]))
    # centre frequencies of the Mel bands: the peak of each triangle
    fb = fx.mel_fb.toarray()
    freqs = np.fft.rfftfreq(fx.geometry.n_fft, 1 / 22_050)
    centres = freqs[np.argmax(fb, axis=1)]
    assert abs(centres[band] - freq) <= np.sort(np.abs(centres - freq))[1] + 1e-9  # nearest or next


@pytest.mark.parametrize("freq", [65.4, 261.6, 1000.0, 2500.0])
def test_tone_peaks_in_nearest_gammatone_channel(fx, freq):
    f = fx(tone(freq, 6.0, 22_050))
    cf = centre_frequencies(84, FeatureConfig().gt_fmin, 12)
    assert int(np.argmax(f.coch[:, 40])) == int(np.argmin(np.abs(np.log(cf / freq))))


def test_1khz_tone_energy_concentrated(fx):
    f = fx(tone(1000.0, 6.0, 22_050))
    e = np.exp(f.mel[:, 40])
    k = int(np.argmax(e))
    assert e[max(0, k - 1):k + 2].sum() > 0.99 * e.sum()


@pytest.mark.parametrize("htk,norm", [(False, "slaney"), (True, None), (False, None)])
def test_mel_filterbank_matches_librosa(htk, norm):
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels, fmin, fmax in [(44_100, 4096, 128, 0.0, None), (22_050, 1024, 64, 30.0, 8000.0)]:
        ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk, norm).toarray()
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6 * ref.max())


def test_gammatone_responses_peak_at_centre():
    sr, n_fft = 44_100, 2 ** 16
    fb = gammatone_filterbank(sr, n_fft).toarray()
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    cf = centre_frequencies(84, FeatureConfig().gt_fmin, 12)
    peaks = freqs[np.argmax(fb, axis=1)]
    assert np.all(np.abs(peaks - cf) <= freqs[1])
    # -3 dB bandwidth of a 4th-order gammatone is 0.887 * 1.019 ERB ~ 0.9 ERB: check one channel
    from merkit.features.cochleagram import erb
    k = 60
    above = freqs[fb[k] >= 0.5]
    assert above.max() - above.min() == pytest.approx(2 * 1.019 * erb(cf[k]) * np.sqrt(2 ** 0.25 - 1), rel=0.05)


def test_gammatone_shape_matches_gammatone_package():
    """Our channel response (the standard pole approximation, squared for power) against the
    `gammatone` package's FFT weights (Ellis), which use the exact 4th-order gammatone magnitude."""
    gt = pytest.importorskip("gammatone.fftweight")

    sr, n_fft = 22_050, 8192
    ref_all, _ = gt.fft_weights(n_fft, sr, 32, 1.0, 100.0, sr / 2, n_fft // 2 + 1)
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    for k in (5, 15, 25):
        ref = ref_all[k] / ref_all[k].max()
        cf = freqs[np.argmax(ref)]
        fb = gammatone_filterbank(sr, n_fft, n_channels=1, fmin=float(cf), floor_db=-200.0).toarray()[0]
        ours = np.sqrt(fb)  # power -> magnitude
        near = ref > 0.1
        assert np.abs(ours[near] - ref[near]).max() < 0.02


def test_batched_equals_per_item(fx, rng):
    y = (rng.standard_normal((3, SMALL_AUDIO.window_samples)) * 0.1).astype(np.float32)
    fb = fx(y)
    for i in range(3):
        fi = fx(y[i])
        np.testing.assert_allclose(fb.mel[i], fi.mel, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(fb.coch[i], fi.coch, rtol=1e-5, atol=1e-5)


def test_pre_emphasis_known_answer():
    x = np.array([1.0, 1.0, 1.0, 0.0], np.float32)
    np.testing.assert_allclose(pre_emphasis(x, 0.97), [1.0, 0.03, 0.03, -0.97], atol=1e-7)


def test_cochleagram_compression_and_log10(fx, rng):
    y = (rng.standard_normal(SMALL_AUDIO.window_samples) * 0.1).astype(np.float32)
    _, gt_e = fx.band_energies(y)
    np.testing.assert_allclose(fx(y).coch, np.log10(gt_e ** (1 / 3)), rtol=1e-4, atol=1e-5)
    mel_e, _ = fx.band_energies(y)
    np.testing.assert_allclose(fx(y).mel, np.log(mel_e), rtol=1e-4, atol=1e-5)


def test_paper_preset_full_size():
    fx = FeatureExtractor()
    y = tone(440.0, 60.0, 44_100)
    f = fx(y)
    assert f.mel.shape == (128, 87) and f.coch.shape == (84, 87)
    cf = centre_frequencies(84, FeatureConfig().gt_fmin, 12)
    assert int(np.argmax(f.coch[:, 43])) == int(np.argmin(np.abs(cf - 440.0)))
