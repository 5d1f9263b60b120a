"""Shared front half of both views (paper §III-C): pre-emphasis, Hamming frames with hop N/2,
power spectrum of a 2N-point FFT. Computed once per window and used by the Mel and gammatone
filterbanks alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.signal

from ..config import ConfigError, FeatureConfig


@dataclass(frozen=True)
class FrameGeometry:
    """Sizes of the framing for one window length.

    window_samples: L, the analysis window in samples
    frame_length:   N (Hamming window length)
    hop:            N / 2
    n_frames:       T
    n_fft:          FFT size (>= 2N; see FeatureConfig.n_fft)
    """

    window_samples: int
    frame_length: int
    hop: int
    n_frames: int
    n_fft: int

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1


def frame_geometry(window_samples: int, cfg: FeatureConfig) -> FrameGeometry:
    """Derive N, hop, T and the FFT size for a window of ``window_samples`` samples.

    With ``cfg.frame_length`` unset, N = floor(2L / (T + 1)) rounded down to even, the largest
    frame for which T frames with hop N/2 fit in L (the paper: L = 60 s at 44.1 kHz, T = 87,
    N = 60 136 samples = 1.36 s, hop 0.68 s).
    """
    T = cfg.n_frames
    if cfg.frame_length is None:
        n = (2 * window_samples) // (T + 1)
        n -= n % 2
    else:
        n = cfg.frame_length
    hop = n // 2
    if n < 4 or n + (T - 1) * hop > window_samples:
        raise ConfigError(f"{T} frames of {n} samples with hop {hop} do not fit a window of "
                          f"{window_samples} samples")
    n_fft = cfg.n_fft if cfg.n_fft is not None else scipy.fft.next_fast_len(2 * n, real=True)
    if n_fft < n:
        raise ConfigError(f"n_fft={n_fft} is shorter than the frame ({n})")
    return FrameGeometry(window_samples, n, hop, T, n_fft)


@lru_cache(maxsize=8)
def analysis_window(n: int) -> np.ndarray:
    # periodic Hamming (the STFT convention of scipy/librosa); read-only so the cache is safe
    w = scipy.signal.get_window("hamming", n).astype(np.float32)
    w.flags.writeable = False
    return w


def pre_emphasis(y: np.ndarray, coef: float) -> np.ndarray:
    """x'(n) = x(n) - coef * x(n-1) along the last axis (x(-1) = 0)."""
    out = np.empty_like(y, dtype=np.float32)
    out[..., 0] = y[..., 0]
    np.subtract(y[..., 1:], np.float32(coef) * y[..., :-1], out=out[..., 1:])
    return out


def power_spectrum(y: np.ndarray, geom: FrameGeometry, *, pre_emph: float) -> np.ndarray:
    """Power spectrogram |FFT|^2 of the windowed frames.

    y: (..., L) float32 with L == geom.window_samples
    returns (..., T, n_bins) float32
    """
    if y.shape[-1] != geom.window_samples:
        raise ValueError(f"expected windows of {geom.window_samples} samples, got {y.shape[-1]}")
    x = pre_emphasis(y, pre_emph)
    frames = np.lib.stride_tricks.sliding_window_view(x, geom.frame_length, axis=-1)
    frames = frames[..., ::geom.hop, :][..., :geom.n_frames, :] * analysis_window(geom.frame_length)
    spec = scipy.fft.rfft(frames, n=geom.n_fft, axis=-1)  # complex64 for float32 input
    # |X|^2 without the complex abs's sqrt
    return np.square(spec.real) + np.square(spec.imag)
