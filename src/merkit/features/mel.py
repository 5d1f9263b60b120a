"""Mel filterbank, the definition librosa uses (``librosa.filters.mel``), built as a sparse matrix.

Written here rather than imported so that inference does not pull in librosa (and numba: about
1.5 s of import time) and because a Mel filter touches only 2 of the ~60 000 FFT bins of the
paper's 2N-point FFT on average: stored sparse, applying it costs almost nothing. The test
suite checks it against librosa.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse

# Slaney's Auditory Toolbox mel scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3  # Hz per mel in the linear part
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0  # so that 6.4 kHz lies 27 mels above 1 kHz


def hz_to_mel(f, *, htk: bool = False):
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mel = f / _F_SP
    log = f >= _MIN_LOG_HZ
    return np.where(log, _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mel)


def mel_to_hz(m, *, htk: bool = False):
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f = _F_SP * m
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), f)


@lru_cache(maxsize=16)
def mel_filterbank(sr: int, n_fft: int, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
                   htk: bool = False, norm: str | None = "slaney") -> scipy.sparse.csr_matrix:
    """Triangular Mel filters, shape (n_mels, n_fft // 2 + 1), float32 CSR.

    norm="slaney" scales each triangle to unit area (constant energy per channel), None leaves
    peaks at 1.
    """
    if fmax is None:
        fmax = sr / 2.0
    if not 0 <= fmin < fmax <= sr / 2.0:
        raise ValueError(f"need 0 <= fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    if norm not in (None, "slaney"):
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n_mels + 2), htk=htk)
    rows, cols, vals = [], [], []
    for m in range(n_mels):
        lo, centre, hi = edges[m:m + 3]
        # only the bins inside (lo, hi) are non-zero: index them directly
        a, b = np.searchsorted(fft_freqs, [lo, hi], side="left")
        idx = np.arange(a, min(b + 1, len(fft_freqs)))
        f = fft_freqs[idx]
        w = np.maximum(0.0, np.minimum((f - lo) / (centre - lo), (hi - f) / (hi - centre)))
        if norm == "slaney":
            w *= 2.0 / (hi - lo)
        keep = w > 0
        rows.append(np.full(int(keep.sum()), m))
        cols.append(idx[keep])
        vals.append(w[keep])
    fb = scipy.sparse.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_mels, len(fft_freqs)))
    return fb
