"""Key, mode and chords: known answers on synthetic chords and scales, through the real
cochleagram (the features are computed from stored features)."""
import numpy as np
import pytest

from merkit.audio import prepare
from merkit.config import AudioConfig, FeatureConfig
from merkit.features.extractor import FeatureExtractor
from merkit.features.tonal import (TONAL_NAMES, energy_chroma, chord_name, chord_sequence, estimate_key, hop_seconds_from_info,
                                   key_correlations, tonal_features)

SR = 22_050
AUDIO = AudioConfig(sample_rate=SR, window_start=0.0, window_seconds=24.0)
FEATS = FeatureConfig(n_frames=47)  # hop ~0.5 s
MIDI = {"C": 60, "C#": 61, "D": 62, "Eb": 63, "E": 64, "F": 65, "F#": 66, "G": 67, "Ab": 68, "A": 69,
        "Bb": 70, "B": 71}


def _note(midi, seconds):
    t = np.arange(int(seconds * SR)) / SR
    f = 440.0 * 2 ** ((midi - 69) / 12)
    env = np.minimum(1.0, 20 * t) * np.exp(-1.5 * t)
    # a few harmonics, as an instrument has
    return sum(0.6 ** h * np.sin(2 * np.pi * f * (h + 1) * t) for h in range(4)) * env


def _chord(root, quality, seconds):
    third = 4 if quality == "maj" else 3
    m = MIDI[root]
    return _note(m - 12, seconds) + _note(m, seconds) + _note(m + third, seconds) + _note(m + 7, seconds)


def _coch(y):
    fx = FeatureExtractor(AUDIO, FEATS)
    win, _ = prepare(np.asarray(y, dtype=np.float32) / np.abs(y).max() * 0.5, SR, AUDIO)
    return fx(win).coch, hop_seconds_from_info(fx.info())


def _progression(chords, seconds_each=3.0):
    return np.concatenate([_chord(r, q, seconds_each) for r, q in chords])


def test_major_progression_is_major_key_and_chords_are_found():
    prog = [("C", "maj"), ("G", "maj"), ("A", "min"), ("F", "maj")] * 2  # 24 s, I-V-vi-IV in C
    coch, hop = _coch(_progression(prog))
    chroma = energy_chroma(coch)
    assert estimate_key(chroma)[:2] == (0, "major")
    names = [chord_name(c) for c in chord_sequence(chroma)]
    # each 3 s chord spans ~6 frames: the middle frame of every chord is the chord
    mids = [names[int((i + 0.5) * 3.0 / hop)] for i in range(len(prog))]
    assert mids == ["C", "G", "Am", "F"] * 2
    f = tonal_features(coch, hop)
    d = dict(zip(TONAL_NAMES, f))
    assert d["major"] == 1.0 and d["mode_score"] > 0
    assert d["major_chord_share"] > 0.6 and d["minor_chord_share"] < 0.4
    # relative to the tonic C: I (maj 0), IV (maj 5), V (maj 7), vi (min 9)
    top = {TONAL_NAMES[7 + i] for i in np.argsort(f[7:])[-4:]}
    assert top == {"rel_maj_0", "rel_maj_5", "rel_maj_7", "rel_min_9"}
    assert 0.15 < d["chord_changes_per_s"] < 0.6  # 7 changes in 24 s = 0.29/s, plus boundary frames


def test_minor_progression_is_minor():
    prog = [("A", "min"), ("D", "min"), ("E", "maj"), ("A", "min")] * 2  # i-iv-V-i in A minor
    coch, hop = _coch(_progression(prog))
    tonic, mode, r = estimate_key(energy_chroma(coch))
    assert (tonic, mode) == (9, "minor") and r > 0.6
    d = dict(zip(TONAL_NAMES, tonal_features(coch, hop)))
    assert d["major"] == 0.0 and d["mode_score"] < 0
    assert d["rel_min_0"] > 0.3  # the tonic chord, A minor, relative interval 0


def test_features_do_not_depend_on_the_key():
    """Transposing a progression changes the key, not the key-relative summary."""
    prog_c = [("C", "maj"), ("F", "maj"), ("G", "maj"), ("C", "maj")] * 2
    prog_d = [("D", "maj"), ("G", "maj"), ("A", "maj"), ("D", "maj")] * 2
    fc = tonal_features(*_coch(_progression(prog_c)))
    fd = tonal_features(*_coch(_progression(prog_d)))
    assert estimate_key(energy_chroma(_coch(_progression(prog_d))[0]))[0] == 2
    np.testing.assert_allclose(fc[7:], fd[7:], atol=0.15)
    assert fc[2] == fd[2] == 1.0


def test_key_profiles_known_answer():
    """A chroma equal to a key profile correlates 1 with that key."""
    from merkit.features.tonal import KK_MINOR

    r = key_correlations(np.roll(KK_MINOR, 4))  # E minor
    assert int(np.argmax(r)) == 12 + 4 and r.max() == pytest.approx(1.0)


def test_silence_and_flat_chroma_are_no_chord():
    flat = np.ones((12, 10))
    assert (chord_sequence(flat) == -1).all()
    f = tonal_features(np.full((84, 10), -10.0), 0.5)
    assert np.isfinite(f).all() and f[TONAL_NAMES.index("no_chord_share")] == 1.0


def test_batch_equals_single():
    rng = np.random.default_rng(0)
    coch = rng.standard_normal((3, 84, 20)).astype(np.float32)
    np.testing.assert_array_equal(tonal_features(coch, 0.68)[1], tonal_features(coch[1], 0.68))
