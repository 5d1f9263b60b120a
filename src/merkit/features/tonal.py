"""Musical features from chroma: key, mode and a chord-template summary (Music2Emo's "musical
features", computed with MIT-clean rules instead of its pretrained key and chord models).

    cochleagram (84, T) ──fold──> chroma (12, T) ─┬─ mean chroma · Krumhansl-Kessler profiles → key, mode
                                                  └─ per-frame triad templates → chord sequence → summary

* **Key and mode**: the chords a track uses are scored against each of the 24 keys by how
  diatonic they are there (:data:`MAJOR_DEGREES`, :data:`MINOR_DEGREES`: tonic 1, subdominant and
  dominant 0.8, ...), with the Krumhansl-Schmuckler correlation of the mean chroma with the
  Krumhansl & Kessler (1982) profiles as a tie-break (and alone when no frame holds a chord).
  Profile correlation by itself mistakes many keys for their dominant on real instruments,
  whose third harmonic adds the fifth's pitch class to every note.
* **Chords**: each frame is matched to the 24 major/minor triad templates by Pearson
  correlation (so the chroma's floor does not matter); frames whose best correlation is below
  ``min_match``, or whose chroma is flat, are "no chord".
* **Summary per track** (:data:`TONAL_NAMES`): mode score (best major minus best minor key
  score), key clarity (best key score), major (0/1), share of major and of minor chord
  frames among chord frames, chord changes per second, no-chord share, and a 24-bin histogram of
  chords relative to the key's tonic (root interval 0-11 × major/minor), so that the summary
  does not depend on the key itself.

Chroma comes from the stored cochleagram (semitone-spaced channels,
:func:`merkit.features.descriptors.chroma_from_cochleagram`), so these features need no new
pass over the audio. The cochleagram stores log10 of cube-root compressed energy; it is
decompressed (divided by ``gt_power``) before folding, because the compressed chroma is too flat
(0.75-1.0 across pitch classes for a plain triad) for templates to separate chords reliably. At the paper's frame rate (hop 0.68 s) a chord frame is a beat or two,
coarse but matching how often chords change in most music.
"""
from __future__ import annotations

import numpy as np

from .descriptors import chroma_from_cochleagram

# Krumhansl & Kessler (1982) probe-tone ratings, tonic first (C major / C minor)
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Correlation below which a frame is "no chord". Triads of harmonic tones through the
# cochleagram correlate 0.6-0.75 with their template; noise rarely passes 0.3.
MIN_MATCH = 0.3

TONAL_NAMES = (["mode_score", "key_clarity", "major", "major_chord_share", "minor_chord_share",
                "chord_changes_per_s", "no_chord_share"]
               + [f"rel_{'maj' if q == 0 else 'min'}_{i}" for q in (0, 1) for i in range(12)])


def _centred_unit(x: np.ndarray, axis: int) -> np.ndarray:
    x = x - x.mean(axis, keepdims=True)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-9)


def _templates() -> np.ndarray:
    """(24, 12) centred unit-norm triads: rows 0-11 major on C..B, 12-23 minor on C..B."""
    t = np.zeros((24, 12))
    for root in range(12):
        t[root, [root, (root + 4) % 12, (root + 7) % 12]] = 1.0
        t[12 + root, [root, (root + 3) % 12, (root + 7) % 12]] = 1.0
    return _centred_unit(t, 1)


_TEMPLATES = _templates()


# Weight of a chord in a key, by (semitones above the tonic, quality: 0 major, 1 minor): the
# diatonic triads, strongest for the tonic, subdominant and dominant functions.
MAJOR_DEGREES = {(0, 0): 1.0, (5, 0): 0.8, (7, 0): 0.8, (9, 1): 0.6, (2, 1): 0.5, (4, 1): 0.4}
MINOR_DEGREES = {(0, 1): 1.0, (5, 1): 0.8, (7, 0): 0.8, (7, 1): 0.6, (8, 0): 0.6, (3, 0): 0.5,
                 (10, 0): 0.4}
KS_TIE_BREAK = 0.1  # weight of the profile correlation beside the chord fit (both ~0-1)


def _chord_key_fit() -> np.ndarray:
    """(24 keys, 24 chords) weight of each chord in each key (keys and chords indexed like
    :func:`key_correlations` and :func:`chord_sequence`)."""
    fit = np.zeros((24, 24))
    for k in range(24):
        tonic, degrees = k % 12, (MAJOR_DEGREES if k < 12 else MINOR_DEGREES)
        for (interval, quality), w in degrees.items():
            fit[k, quality * 12 + (tonic + interval) % 12] = w
    return fit


_CHORD_KEY_FIT = _chord_key_fit()


def key_scores(chroma: np.ndarray, chords: np.ndarray | None = None) -> np.ndarray:
    """(24,) score of each key (0-11 major on C..B, 12-23 minor): the mean diatonic weight of
    the voiced chord frames plus ``KS_TIE_BREAK`` × the profile correlation."""
    r = key_correlations(np.asarray(chroma).mean(-1))
    if chords is None:
        chords = chord_sequence(chroma)
    v = chords[chords >= 0]
    if len(v) == 0:
        return r
    return _CHORD_KEY_FIT[:, v].mean(1) + KS_TIE_BREAK * r


def key_correlations(chroma_mean: np.ndarray) -> np.ndarray:
    """(..., 24) Pearson correlation of mean chroma (..., 12) with the 24 key profiles: 0-11
    major keys on C..B, 12-23 minor keys on C..B."""
    profiles = np.stack([np.roll(p, k) for p in (KK_MAJOR, KK_MINOR) for k in range(12)])  # (24, 12)
    p = profiles - profiles.mean(1, keepdims=True)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    c = np.asarray(chroma_mean, dtype=np.float64)
    c = c - c.mean(-1, keepdims=True)
    norm = np.linalg.norm(c, axis=-1, keepdims=True)
    c = np.divide(c, norm, out=np.zeros_like(c), where=norm > 0)
    return c @ p.T


def estimate_key(chroma: np.ndarray) -> tuple[int, str, float]:
    """(tonic pitch class 0-11, "major" | "minor", score) of a chroma sequence (12, T)."""
    r = key_scores(chroma)
    k = int(np.argmax(r))
    return k % 12, "major" if k < 12 else "minor", float(r[k])


def chord_sequence(chroma: np.ndarray, *, min_match: float = MIN_MATCH) -> np.ndarray:
    """(T,) chord index per frame: 0-11 major on C..B, 12-23 minor, -1 no chord."""
    c = _centred_unit(np.asarray(chroma, dtype=np.float64), 0)
    r = _TEMPLATES @ c  # (24, T) correlations; 0 for a flat frame
    best = r.argmax(0)
    return np.where(r.max(0) >= min_match, best, -1)


def chord_name(index: int) -> str:
    if index < 0:
        return "N"
    return PITCH_CLASSES[index % 12] + ("" if index < 12 else "m")


def tonal_summary(chroma: np.ndarray, hop_seconds: float, *, min_match: float = MIN_MATCH) -> np.ndarray:
    """The :data:`TONAL_NAMES` vector (float32) of one chroma sequence (12, T)."""
    chords = chord_sequence(chroma, min_match=min_match)
    return summarise(key_scores(chroma, chords), chords, hop_seconds)


def summarise(key_score: np.ndarray, chords: np.ndarray, hop_seconds: float) -> np.ndarray:
    """The :data:`TONAL_NAMES` vector of 24 key scores (C..B major, then C..B minor; higher is
    more likely) and a chord index per frame (0-11 major, 12-23 minor triads on C..B, -1 none)
    ``hop_seconds`` apart. Shared by the chroma rules here and :mod:`merkit.encoders.madmom_tonal`."""
    r = np.asarray(key_score, dtype=np.float64)
    chords = np.asarray(chords)
    best_major, best_minor = r[:12].max(), r[12:].max()
    k = int(np.argmax(r))
    tonic = k % 12
    voiced = chords >= 0
    n_voiced = max(int(voiced.sum()), 1)
    major = float((voiced & (chords < 12)).sum()) / n_voiced
    minor = float((chords >= 12).sum()) / n_voiced
    v = chords[voiced]
    changes = float((v[1:] != v[:-1]).sum()) if len(v) > 1 else 0.0
    seconds = max(len(chords) * hop_seconds, 1e-9)
    rel = np.zeros(24)
    np.add.at(rel, (v // 12) * 12 + (v % 12 - tonic) % 12, 1.0)
    rel /= n_voiced
    no_chord = 1.0 - voiced.mean() if len(chords) else 1.0
    out = np.concatenate([[best_major - best_minor, r[k], float(k < 12), major, minor, changes / seconds,
                           no_chord], rel])
    return out.astype(np.float32)


def energy_chroma(coch: np.ndarray, *, gt_power: float = 1.0 / 3.0, **kw) -> np.ndarray:
    """Chroma (..., 12, T) of the decompressed cochleagram energy (see the module docstring)."""
    return chroma_from_cochleagram(np.asarray(coch, dtype=np.float64) / gt_power, **kw)


def tonal_features(coch: np.ndarray, hop_seconds: float, *, fmin: float | None = None,
                   bins_per_octave: int | None = None, gt_power: float = 1.0 / 3.0,
                   min_match: float = MIN_MATCH) -> np.ndarray:
    """(N, len(TONAL_NAMES)) features of cochleagrams (N, 84, T) (or one (84, T) → (len,)).

    ``hop_seconds`` is the frame hop (``features.json``: ``geometry.hop / sample_rate``);
    ``fmin``, ``bins_per_octave``, ``gt_power``: the cochleagram's settings."""
    kw = {}
    if fmin is not None:
        kw["fmin"] = fmin
    if bins_per_octave is not None:
        kw["bins_per_octave"] = bins_per_octave
    coch = np.asarray(coch)
    single = coch.ndim == 2
    batch = coch[None] if single else coch
    out = np.stack([tonal_summary(energy_chroma(c, gt_power=gt_power, **kw), hop_seconds, min_match=min_match)
                    for c in batch])
    return out[0] if single else out


def hop_seconds_from_info(feature_info: dict | None) -> float:
    """Frame hop of a stored feature folder, from its ``features.json``."""
    if not feature_info or "geometry" not in feature_info:
        raise ValueError("features.json with the frame geometry is needed to time chord changes")
    g = feature_info["geometry"]
    return float(g["hop"]) / float(feature_info["audio"]["sample_rate"])


__all__ = ["energy_chroma", "estimate_key", "key_correlations", "key_scores", "chord_sequence", "chord_name", "tonal_summary", "summarise",
           "tonal_features", "hop_seconds_from_info", "TONAL_NAMES", "KK_MAJOR", "KK_MINOR"]
