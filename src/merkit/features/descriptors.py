"""Handcrafted descriptors computed from the Memo2496 arrays, for the classical baselines.

The Memo2496 layout holds no audio, only the two views (paper §III-C), so every descriptor here
is derived from them:

    mel  (N, n_mels, T)  natural log of Mel band energy  ──> MFCC, spectral statistics
    coch (N, n_coch, T)  log10 of compressed gammatone energy, 12 channels per octave ──> chroma

``handcrafted_descriptors`` is the input of the Memo2496 paper's Table II SVM baseline
("handcrafted acoustic descriptors (MFCC, chroma, spectral statistics)"); ``mean_mfcc`` is the
input of the EMOPIA paper's logistic-regression baseline (Hung et al. 2021, §5: MFCCs averaged
over time). Both work through the tracks in chunks, so a memory-mapped corpus of any size costs
one chunk of temporaries; every operation is per track, so chunking never changes a result.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from ..config import AudioConfig, FeatureConfig, from_dict
from .mel import hz_to_mel, mel_to_hz

N_MFCC = 20  # librosa.feature.mfcc's default, the usual MFCC count in MIR baselines
# 10 log10(x) = (10 / ln 10) ln(x): natural-log energies to decibels, as librosa.power_to_db.
LN10 = np.log(10.0)
DB_PER_NEPER = 10.0 / LN10
ROLLOFF_PERCENT = 0.85  # librosa.feature.spectral_rolloff's default roll_percent
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
A4_HZ = 440.0  # MIDI note 69, the tuning reference of librosa.hz_to_midi
A4_MIDI = 69
SPECTRAL_STATS = ("centroid", "bandwidth", "flatness", "rolloff", "log_energy")
# Tracks per chunk: ~23 MB per (chunk, 128, 87) float64 array, ~6 such temporaries at a time.
CHUNK_SIZE = 128


@dataclass(frozen=True)
class DescriptorSettings:
    """The feature settings the descriptors need (taken from ``features.json``)."""

    sample_rate: int
    mel_fmin: float
    mel_fmax: float  # resolved: Nyquist when the features say None
    mel_htk: bool
    gt_fmin: float
    gt_bins_per_octave: int

    @classmethod
    def from_feature_info(cls, feature_info: dict | None) -> "DescriptorSettings":
        """Settings from a FeatureSet's ``feature_info`` (``FeatureExtractor.info()``); ``None``
        (the official download has no ``features.json``) means the paper preset's defaults."""
        info = feature_info or {}
        if not isinstance(info, dict):
            raise ValueError(f"feature_info must be a dict, got {type(info).__name__}")
        audio = from_dict(AudioConfig, info.get("audio") or {})
        feats = from_dict(FeatureConfig, info.get("features") or {})
        fmax = feats.mel_fmax if feats.mel_fmax is not None else audio.sample_rate / 2.0
        return cls(audio.sample_rate, float(feats.mel_fmin), float(fmax), bool(feats.mel_htk),
                   float(feats.gt_fmin), int(feats.gt_bins_per_octave))


# --- frame-level descriptors --------------------------------------------------------------------

@lru_cache(maxsize=8)
def _dct_basis(n_mels: int, n_mfcc: int) -> np.ndarray:
    """Rows 0..n_mfcc-1 of the orthonormal DCT-II matrix, (n_mfcc, n_mels): applying it is
    ``scipy.fft.dct(x, type=2, norm="ortho", axis=-2)[..., :n_mfcc, :]`` at a fifth of the cost,
    since only the first coefficients are kept."""
    basis = scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[:n_mfcc]
    basis.setflags(write=False)
    return basis


def _check_bands(x: np.ndarray, name: str) -> None:
    if x.ndim < 2:
        raise ValueError(f"{name} must be (..., bands, T), got shape {x.shape}")


def mfcc_from_log_mel(mel, n_mfcc: int = N_MFCC) -> np.ndarray:
    """MFCCs of natural-log Mel energies, as ``librosa.feature.mfcc(S=power_to_db(E, top_db=None))``.

    Parameters
    ----------
    mel : (..., n_mels, T) natural-log Mel band energies (the ``mel_spec.npy`` values)
    n_mfcc : number of coefficients kept (<= n_mels)

    Returns
    -------
    (..., n_mfcc, T) float64: the orthonormal DCT-II over bands of the energies in dB. No
    ``top_db`` clipping is applied: the extractor's log floor (1e-10, librosa's ``amin``) already
    bounds the dynamic range.
    """
    mel = np.asarray(mel)
    _check_bands(mel, "mel")
    n_mels = mel.shape[-2]
    if not 1 <= n_mfcc <= n_mels:
        raise ValueError(f"n_mfcc must be in [1, {n_mels}], got {n_mfcc}")
    db = mel.astype(np.float64) * DB_PER_NEPER
    return np.matmul(_dct_basis(n_mels, n_mfcc), db)


@lru_cache(maxsize=8)
def _pitch_class_fold(n_channels: int, fmin: float, bins_per_octave: int) -> np.ndarray:
    """(12, n_channels) 0/1 matrix sending each channel to the pitch class of its nearest
    semitone (C = 0)."""
    cf = fmin * 2.0 ** (np.arange(n_channels) / bins_per_octave)
    midi = A4_MIDI + 12.0 * np.log2(cf / A4_HZ)
    if np.any(np.abs(np.abs(midi - np.round(midi)) - 0.5) < 1e-6):
        raise ValueError(f"cochleagram channels from {fmin} Hz with {bins_per_octave} per octave "
                         "fall halfway between semitones and cannot be folded into pitch classes")
    pc = np.round(midi).astype(np.int64) % 12
    fold = np.zeros((12, n_channels))
    fold[pc, np.arange(n_channels)] = 1.0
    fold.setflags(write=False)
    return fold


def chroma_from_cochleagram(coch, *, fmin: float = FeatureConfig.gt_fmin,
                            bins_per_octave: int = FeatureConfig.gt_bins_per_octave) -> np.ndarray:
    """Fold semitone-spaced cochleagram channels into 12 pitch classes (C, C#, ..., B).

    Parameters
    ----------
    coch : (..., n_channels, T) log10 cochleagram; channel k is centred at
        ``fmin * 2 ** (k / bins_per_octave)`` Hz (the default: 84 channels from C1 = 32.70 Hz)
    fmin, bins_per_octave : the cochleagram's ``gt_fmin`` and ``gt_bins_per_octave``

    Returns
    -------
    (..., 12, T) float64 chroma, each frame scaled to a maximum of 1 (librosa's ``norm=np.inf``).
    Channels are summed as ``10 ** coch``, the cochleagram's own (cube-root compressed) energy,
    which like the CQT magnitudes that ``librosa.feature.chroma_cqt`` folds grows roughly with
    amplitude rather than power. A frame with equal energy everywhere gives a flat chroma of ones.
    """
    coch = np.asarray(coch)
    _check_bands(coch, "coch")
    c = coch.astype(np.float64)
    # Chroma is normalised per frame, so any per-frame scale cancels: subtracting the frame's
    # maximum before exponentiating keeps 10 ** x in range whatever the log scale of the input.
    lin = np.exp(LN10 * (c - c.max(axis=-2, keepdims=True)))  # 10 ** x; exp is 2x faster than pow
    chroma = np.matmul(_pitch_class_fold(c.shape[-2], float(fmin), int(bins_per_octave)), lin)
    return chroma / chroma.max(axis=-2, keepdims=True)


@lru_cache(maxsize=8)
def _mel_centres(n_mels: int, fmin: float, fmax: float, htk: bool) -> np.ndarray:
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n_mels + 2),
                      htk=htk)
    centres = edges[1:-1]
    centres.setflags(write=False)
    return centres


def mel_band_frequencies(n_mels: int, *, fmin: float = 0.0, fmax: float, htk: bool = False) -> np.ndarray:
    """Centre frequencies in Hz of the ``n_mels`` Mel filters spanning ``[fmin, fmax]``, (n_mels,).

    These are the peaks of ``librosa.filters.mel`` triangles, i.e.
    ``librosa.mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)[1:-1]`` (the outer two
    points are the lower edge of the first filter and the upper edge of the last).
    """
    if not 0 <= fmin < fmax:
        raise ValueError(f"need 0 <= fmin < fmax, got fmin={fmin}, fmax={fmax}")
    return _mel_centres(int(n_mels), float(fmin), float(fmax), bool(htk))


def spectral_statistics(mel, freqs) -> np.ndarray:
    """Per-frame spectral statistics of Mel band energies, librosa's definitions with the Mel
    band centres as the frequency axis.

    Parameters
    ----------
    mel : (..., n_mels, T) natural-log Mel band energies
    freqs : (n_mels,) band centre frequencies in Hz (:func:`mel_band_frequencies`)

    Returns
    -------
    (..., 5, T) float64, rows in the order of ``SPECTRAL_STATS``:

    - centroid (Hz): ``sum f S / sum S`` with S the band magnitudes ``sqrt(E)``, as
      ``librosa.feature.spectral_centroid`` on a magnitude spectrogram;
    - bandwidth (Hz): ``sqrt(sum S (f - centroid)^2 / sum S)`` (spectral_bandwidth, p = 2);
    - flatness: geometric over arithmetic mean of the band energies E (spectral_flatness,
      power = 2), 1 for a flat spectrum;
    - rolloff (Hz): the lowest band centre below which 85 % of the sum of S lies
      (spectral_rolloff);
    - log_energy: ``ln sum E``, the natural log of the frame's total Mel energy.
    """
    mel = np.asarray(mel)
    _check_bands(mel, "mel")
    f = np.asarray(freqs, dtype=np.float64)
    if f.shape != (mel.shape[-2],):
        raise ValueError(f"freqs must be ({mel.shape[-2]},) to match the Mel bands, got {f.shape}")
    x = mel.astype(np.float64)
    top = x.max(axis=-2, keepdims=True)  # (..., 1, T)
    # Every statistic but the energy is scale-free per frame: work relative to the loudest band
    # so exp() can neither overflow nor underflow to an all-zero frame.
    rel = x - top
    s = np.exp(0.5 * rel)  # relative magnitudes sqrt(E), (..., n_mels, T)
    e = s * s  # relative energies
    cum = np.cumsum(s, axis=-2)
    total_s = cum[..., -1:, :]
    w = s / total_s
    centroid = np.einsum("m,...mt->...t", f, w)
    spread = (f[:, None] - centroid[..., None, :]) ** 2
    bandwidth = np.sqrt(np.einsum("...mt,...mt->...t", w, spread))
    del spread, w
    mean_e = e.mean(axis=-2)
    flatness = np.exp(rel.mean(axis=-2) - np.log(mean_e))
    rolloff = f[np.argmax(cum >= ROLLOFF_PERCENT * total_s, axis=-2)]
    log_energy = top[..., 0, :] + np.log(mean_e * x.shape[-2])
    return np.stack([centroid, bandwidth, flatness, rolloff, log_energy], axis=-2)


# --- track-level descriptors -----------------------------------------------------------------------

def descriptor_names(n_mfcc: int = N_MFCC) -> list[str]:
    """Column names of :func:`handcrafted_descriptors`: the means over time of the frame
    descriptors, then their standard deviations."""
    frame = ([f"mfcc{i}" for i in range(n_mfcc)] + [f"chroma_{p}" for p in PITCH_CLASSES]
             + list(SPECTRAL_STATS))
    return [f"{n}_mean" for n in frame] + [f"{n}_std" for n in frame]


def _check_pair(mel: np.ndarray, coch: np.ndarray | None) -> None:
    if mel.ndim != 3:
        raise ValueError(f"mel must be (N, n_mels, T), got shape {mel.shape}")
    if coch is not None:
        if coch.ndim != 3:
            raise ValueError(f"coch must be (N, n_coch, T), got shape {coch.shape}")
        if coch.shape[0] != mel.shape[0] or coch.shape[2] != mel.shape[2]:
            raise ValueError(f"mel {mel.shape} and coch {coch.shape} disagree in tracks or frames")


def _check_chunk(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def handcrafted_descriptors(mel, coch, feature_info: dict | None = None, *, n_mfcc: int = N_MFCC,
                            chunk_size: int = CHUNK_SIZE) -> np.ndarray:
    """Track descriptors of the Memo2496 paper's SVM baseline (Table II: "handcrafted acoustic
    descriptors (MFCC, chroma, spectral statistics)").

    Per frame: ``n_mfcc`` MFCCs (:func:`mfcc_from_log_mel`), 12 chroma values
    (:func:`chroma_from_cochleagram`) and the 5 spectral statistics (:func:`spectral_statistics`:
    centroid, bandwidth, flatness, roll-off, log energy) = 37 values for ``n_mfcc = 20``. Per track:
    their mean over time, then their standard deviation over time (population std):
    ``D = 2 * (n_mfcc + 17)``, 74 by default; :func:`descriptor_names` lists the columns.

    Delta-MFCCs are left out: at T = 87 frames of 1.36 s with 0.68 s hop (the paper preset) a
    delta spans several seconds and adds little that the standard deviation over time does not
    already carry, and the paper names only MFCC, chroma and spectral statistics.

    Parameters
    ----------
    mel : (N, n_mels, T) natural-log Mel energies (a memory map is fine)
    coch : (N, n_coch, T) log10 cochleagram
    feature_info : the FeatureSet's ``feature_info`` (sample rate, Mel range, cochleagram
        frequencies); ``None`` means the paper preset
    chunk_size : tracks processed at a time (bounds the temporaries, never changes the result)

    Returns
    -------
    (N, D) float64. A track with non-finite input gets non-finite descriptors in its own row only.
    """
    mel, coch = np.asanyarray(mel), np.asanyarray(coch)  # a memmap stays a memmap: read by chunk
    _check_pair(mel, coch)
    _check_chunk(chunk_size)
    st = DescriptorSettings.from_feature_info(feature_info)
    freqs = mel_band_frequencies(mel.shape[1], fmin=st.mel_fmin, fmax=st.mel_fmax, htk=st.mel_htk)
    n_frame = n_mfcc + len(PITCH_CLASSES) + len(SPECTRAL_STATS)
    out = np.empty((mel.shape[0], 2 * n_frame))
    for i in range(0, mel.shape[0], chunk_size):
        m = np.asarray(mel[i:i + chunk_size], dtype=np.float64)  # reads one chunk of a memmap
        c = np.asarray(coch[i:i + chunk_size], dtype=np.float64)
        frames = np.concatenate([
            mfcc_from_log_mel(m, n_mfcc),
            chroma_from_cochleagram(c, fmin=st.gt_fmin, bins_per_octave=st.gt_bins_per_octave),
            spectral_statistics(m, freqs),
        ], axis=1)  # (B, n_frame, T)
        out[i:i + len(m), :n_frame] = frames.mean(axis=2)
        out[i:i + len(m), n_frame:] = frames.std(axis=2)
    return out


def mean_mfcc(mel, n_mfcc: int = N_MFCC, *, chunk_size: int = CHUNK_SIZE) -> np.ndarray:
    """Mean over time of the MFCCs, (N, n_mfcc): the input of the EMOPIA paper's logistic
    regression baseline.

    The DCT is linear, so this is the DCT of the time-averaged dB Mel spectrum, equal to
    ``mfcc_from_log_mel(mel, n_mfcc).mean(-1)`` without building the (N, n_mfcc, T) array.
    """
    mel = np.asanyarray(mel)
    _check_pair(mel, None)
    _check_chunk(chunk_size)
    if not 1 <= n_mfcc <= mel.shape[1]:
        raise ValueError(f"n_mfcc must be in [1, {mel.shape[1]}], got {n_mfcc}")
    basis = _dct_basis(mel.shape[1], n_mfcc)
    out = np.empty((mel.shape[0], n_mfcc))
    for i in range(0, mel.shape[0], chunk_size):
        avg = np.asarray(mel[i:i + chunk_size], dtype=np.float64).mean(axis=2) * DB_PER_NEPER
        out[i:i + len(avg)] = avg @ basis.T
    return out


__all__ = ["N_MFCC", "SPECTRAL_STATS", "PITCH_CLASSES", "DescriptorSettings", "mfcc_from_log_mel",
           "chroma_from_cochleagram", "mel_band_frequencies", "spectral_statistics",
           "descriptor_names", "handcrafted_descriptors", "mean_mfcc"]
