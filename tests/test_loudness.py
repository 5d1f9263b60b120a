"""merkit.loudness against pyloudnorm (the reference meter), known BS.1770 answers, batch = per-item,
and the timeline front end against the per-window pyloudnorm path it replaces."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pyloudnorm
import pytest
import torch

from merkit.content import ContentCheck

from merkit.audio import integrated_loudness as audio_loudness
from merkit.audio import normalize_loudness, prepare
from merkit.config import ModelConfig
from merkit.loudness import (LOUDNESS_OFFSET_DB, block_energies, integrated_loudness,
                             integrated_loudness_batch, k_weighting_sos, normalize_loudness_batch)
from merkit.models import build_model
from merkit.predictors.base import timeline_starts
from merkit.predictors.damer import EmotionModel

SR = 44_100
LU_TOL = 1e-6  # the agreement the vectorised meter must reach with pyloudnorm


def reference(y: np.ndarray, sr: int) -> float:
    """pyloudnorm's integrated loudness (float64, warnings off: it warns on its own -inf)."""
    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        warnings.simplefilter("ignore")
        return float(pyloudnorm.Meter(sr).integrated_loudness(np.asarray(y, dtype=np.float64)))


def sine(freq: float, seconds: float, sr: int = SR, amp: float = 1.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def assert_same_loudness(y, sr):
    got, want = integrated_loudness(y, sr), reference(y, sr)
    if np.isfinite(want):
        assert got == pytest.approx(want, abs=LU_TOL)
    else:
        assert got == want


# -- the filter and the blocks are pyloudnorm's -------------------------------------------------
@pytest.mark.parametrize("sr", [8_000, 16_000, 22_050, 44_100, 48_000, 96_000])
def test_k_weighting_coefficients_are_pyloudnorms(sr):
    stages = pyloudnorm.Meter(sr)._filters.values()  # high shelf, then high pass
    want = np.stack([np.concatenate([f.b, f.a]) for f in stages])
    np.testing.assert_allclose(k_weighting_sos(sr), want, rtol=1e-15, atol=0)


@pytest.mark.parametrize("sr", [22_050, 44_100, 48_000])
@pytest.mark.parametrize("seconds", [0.4, 0.4 + 1 / 22_050, 1.0, 1.2345, 2.05])
def test_block_loudness_is_pyloudnorms_block_by_block(rng, sr, seconds):
    # lengths where pyloudnorm's rounded block count makes the last block run past the end
    y = rng.standard_normal(int(seconds * sr)) * np.linspace(0.01, 1.0, int(seconds * sr))
    meter = pyloudnorm.Meter(sr)
    meter.integrated_loudness(y)
    ours = LOUDNESS_OFFSET_DB + 10 * np.log10(block_energies(meter._filters["high_pass"].apply_filter(
        meter._filters["high_shelf"].apply_filter(y)), sr))
    np.testing.assert_allclose(ours, meter.blockwise_loudness, rtol=0, atol=1e-9)


# -- integrated loudness agrees with pyloudnorm -------------------------------------------------
@pytest.mark.parametrize("sr", [22_050, 44_100, 48_000])
def test_agrees_with_pyloudnorm_on_noise_tones_and_stereo(rng, sr):
    n = 3 * sr
    assert_same_loudness(0.1 * rng.standard_normal(n), sr)
    assert_same_loudness(sine(440.0, 3.0, sr, 0.3) + sine(5000.0, 3.0, sr, 0.05), sr)
    assert_same_loudness(sine(30.0, 3.0, sr, 0.5), sr)  # below the 38 Hz high pass
    stereo = np.stack([0.2 * rng.standard_normal(n), sine(1000.0, 3.0, sr, 0.1)], axis=1)
    assert_same_loudness(stereo, sr)
    assert_same_loudness(rng.standard_normal((n, 5)) * [0.1, 0.1, 0.2, 0.05, 0.05], sr)  # L R C Ls Rs


def test_agrees_with_pyloudnorm_on_gated_content(rng):
    y = 0.3 * rng.standard_normal(6 * SR)
    y[3 * SR:] = 0.0  # half digital silence: the absolute gate drops those blocks
    assert_same_loudness(y, SR)
    y[3 * SR:] = 1e-3 * rng.standard_normal(3 * SR)  # half 50 dB quieter: the relative gate
    assert_same_loudness(y, SR)
    y[:] = 0.0
    y[SR:SR + 100] = 0.5  # a click in silence
    assert_same_loudness(y, SR)


def test_agrees_with_pyloudnorm_at_clipping_level(rng):
    square = np.sign(sine(100.0, 2.0))  # full scale, every sample at +-1
    assert_same_loudness(square, SR)
    assert_same_loudness(np.clip(3.0 * rng.standard_normal(2 * SR), -1.0, 1.0), SR)
    assert_same_loudness(2.0 * sine(1000.0, 2.0), SR)  # above full scale: measured, not refused


def test_silence_is_minus_inf(rng):
    for y in (np.zeros(2 * SR), np.zeros((2 * SR, 2)), 1e-5 * rng.standard_normal(2 * SR)):  # -100 dB: gated
        assert integrated_loudness(y, SR) == -np.inf == reference(y, SR)
    assert audio_loudness(np.zeros(SR, np.float32), SR) == -np.inf


def test_shorter_than_one_block_raises_like_pyloudnorm():
    block = int(0.4 * SR)
    assert_same_loudness(sine(1000.0, block / SR, amp=0.5), SR)  # exactly one block: measured
    short = np.ones(block - 1) * 0.5
    with pytest.raises(ValueError, match="length greater than the block size"):
        pyloudnorm.Meter(SR).integrated_loudness(short)
    with pytest.raises(ValueError, match="shorter than one 400 ms loudness block"):
        integrated_loudness(short, SR)
    with pytest.raises(ValueError, match="at most 5 channels"):
        integrated_loudness(np.zeros((SR, 6)), SR)


# -- known answers (ITU-R BS.1770-4, EBU Tech 3341) --------------------------------------------
def test_full_scale_997_hz_sine_reads_minus_3_lufs():
    # BS.1770-4 Annex 1: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS. pyloudnorm's
    # cookbook K-weighting is 0.04 dB off the standard's filter at 997 Hz (it reads -3.05).
    assert integrated_loudness(sine(997.0, 5.0), SR) == pytest.approx(-3.01, abs=0.05)


def test_minus_20_dbfs_1_khz_sine_reads_minus_23_lufs():
    assert integrated_loudness(sine(1000.0, 5.0, amp=10 ** (-20 / 20)), SR) == pytest.approx(-23.01, abs=0.05)
    # EBU Tech 3341, test case 1: stereo 1 kHz at -23 dBFS in both channels reads -23.0 LUFS +- 0.1
    y = sine(1000.0, 20.0, 48_000, 10 ** (-23 / 20))
    assert integrated_loudness(np.stack([y, y], axis=1), 48_000) == pytest.approx(-23.0, abs=0.1)


def test_relative_gate_ignores_a_passage_20_db_quieter():
    loud = sine(1000.0, 10.0, amp=0.1)
    both = np.concatenate([loud, 0.1 * loud])  # second half -20 dB: below the -10 LU gate
    ungated_drop = 10 * np.log10((1 + 0.01) / 2)  # what averaging all blocks would give: -2.97 dB
    assert integrated_loudness(both, SR) - integrated_loudness(loud, SR) > ungated_drop / 10


# -- batch = per item ---------------------------------------------------------------------------
def test_batch_equals_one_window_at_a_time(rng):
    n = 2 * SR
    windows = np.stack([0.1 * rng.standard_normal(n), np.zeros(n), sine(440.0, 2.0, amp=0.5),
                        np.r_[np.zeros(n // 2), 0.3 * rng.standard_normal(n - n // 2)],
                        1e-7 * rng.standard_normal(n)]).astype(np.float32)
    each = [integrated_loudness(w, SR) for w in windows]
    np.testing.assert_array_equal(integrated_loudness_batch(windows, SR), each)
    np.testing.assert_allclose(each[:1] + each[2:4], [reference(w, SR) for w in windows[[0, 2, 3]]], atol=LU_TOL)
    stereo = np.stack([windows, windows[::-1] * 0.5], axis=-1)  # (B, n, 2)
    np.testing.assert_array_equal(integrated_loudness_batch(stereo, SR), [integrated_loudness(w, SR) for w in stereo])


def test_batch_is_independent_of_chunking(rng, monkeypatch):
    import merkit.loudness as loudness

    windows = 0.1 * rng.standard_normal((5, SR)) * np.arange(1, 6)[:, None]
    whole = integrated_loudness_batch(windows, SR)
    monkeypatch.setattr(loudness, "CHUNK_SAMPLES", 2 * SR)  # two windows per filter call
    np.testing.assert_array_equal(integrated_loudness_batch(windows, SR), whole)


def test_normalize_batch_equals_normalize_loudness(rng):
    n = 2 * SR
    windows = np.stack([0.01 * rng.standard_normal(n), 0.5 * rng.standard_normal(n), np.zeros(n),
                        1e-6 * rng.standard_normal(n)]).astype(np.float32)
    out, lufs, gain = normalize_loudness_batch(windows, SR, target_lufs=-23.0, silence_lufs=-70.0)
    for i, w in enumerate(windows):
        want, want_lufs, want_gain = normalize_loudness(w, SR, target_lufs=-23.0, silence_lufs=-70.0)
        np.testing.assert_array_equal(out[i], want)
        assert (lufs[i], gain[i]) == (want_lufs, want_gain)
    assert gain[2] == gain[3] == 0.0 and np.array_equal(out[2:], windows[2:])  # silence left alone
    np.testing.assert_allclose(integrated_loudness_batch(out[:2], SR), -23.0, atol=1e-4)
    copy = windows.copy()
    assert normalize_loudness_batch(copy, SR, out=copy)[0] is copy and np.array_equal(copy, out)


# -- the timeline front end is unchanged --------------------------------------------------------
def old_timeline_windows(model: EmotionModel, y: np.ndarray) -> np.ndarray:
    """The timeline windows as made before merkit.loudness: prepare() one window at a time with
    pyloudnorm's loudness and the same gain arithmetic."""
    a = model.config.timeline_audio()
    cut = dataclasses.replace(a, target_lufs=None)
    out = []
    for s in timeline_starts(len(y), SR, model.config.timeline_window, model.config.timeline_hop):
        win, _ = prepare(y[s:s + a.window_samples], SR, cut)
        lufs = reference(win, SR)
        if np.isfinite(lufs) and lufs >= a.silence_lufs:
            win = (win * np.float32(10.0 ** ((a.target_lufs - lufs) / 20.0))).astype(np.float32)
        out.append(win)
    return np.stack(out)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    net = build_model("damer", ModelConfig(n_classes=4, dim=16, n_layers=1, n_heads=2, ffn_mult=2,
                                           fusion_dim=16, dropout=0.0))
    model = EmotionModel({"quadrant": net.eval()})
    # tones and noise: the not-music check (tested in test_content.py) would refuse the signal
    model.content_check = ContentCheck(enabled=False)
    return model


@pytest.mark.parametrize("seconds", [30.0, 7.0])  # several windows with a silent one; one looped
def test_timeline_windows_features_and_predictions_unchanged(tiny_model, rng, seconds):
    y = np.concatenate([0.05 * sine(220.0, 8.0), np.zeros(13 * SR),  # 10..20 s: a silent window
                        0.5 * rng.standard_normal(9 * SR)]).astype(np.float32)[:int(seconds * SR)]
    old = old_timeline_windows(tiny_model, y)
    new, _, _ = tiny_model._timeline_windows(y, "x")
    # same windows to float32 rounding (a gain may differ in its last bit; in practice none does)
    np.testing.assert_allclose(new, old, rtol=2 * np.finfo(np.float32).eps, atol=0)
    feats = tiny_model.features(y, SR, timeline=True)
    fx = tiny_model.front_end(timeline=True).spectral
    f_old = fx(old)
    np.testing.assert_allclose(feats["mel"][1:], f_old.mel, atol=1e-5)
    np.testing.assert_allclose(feats["coch"][1:], f_old.coch, atol=1e-5)
    # chunked extraction (TIMELINE_CHUNK_SAMPLES) = all windows at once
    np.testing.assert_array_equal(feats["mel"][1:], fx(new).mel)
    want = tiny_model.predict_features(f_old.mel, f_old.coch)
    got = tiny_model.predict_timeline(y, SR)
    assert len(got) == len(want) == len(old)
    for g, w in zip(got, want):
        assert g.quadrant_probs == pytest.approx(w["quadrant_probs"], abs=1e-6)
