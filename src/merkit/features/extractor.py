"""Both views of the paper from one power spectrogram (paper §III-C).

    window (L,) ──pre-emphasis, Hamming N, hop N/2, 2N FFT──> |X|^2 (T, F)
        ├── Mel filters (sparse)       -> ln(max(E, floor))                  (n_mels, T)
        └── gammatone filters (sparse) -> log10(max(E, floor) ** power)      (n_gammatone, T)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import AudioConfig, FeatureConfig, to_dict
from .cochleagram import gammatone_filterbank
from .mel import mel_filterbank
from .spectrum import FrameGeometry, frame_geometry, power_spectrum


@dataclass(frozen=True)
class Features:
    mel: np.ndarray  # (n_mels, T) float32, natural log of Mel band energy
    coch: np.ndarray  # (n_gammatone, T) float32, log10 of compressed gammatone energy


class FeatureExtractor:
    """Computes the Mel spectrogram and the cochleagram of analysis windows.

    Filterbanks are built once (and cached across instances with the same settings).

    >>> fx = FeatureExtractor(AudioConfig(), FeatureConfig())
    >>> f = fx(window)              # window: (L,) float32 at 44.1 kHz, L = 60 s
    >>> f.mel.shape, f.coch.shape   # ((128, 87), (84, 87))
    """

    def __init__(self, audio: AudioConfig | None = None, features: FeatureConfig | None = None):
        self.audio = audio or AudioConfig()
        self.cfg = features or FeatureConfig()
        sr = self.audio.sample_rate
        self.geometry: FrameGeometry = frame_geometry(self.audio.window_samples, self.cfg)
        c = self.cfg
        self.mel_fb = mel_filterbank(sr, self.geometry.n_fft, c.n_mels, c.mel_fmin, c.mel_fmax,
                                     c.mel_htk, c.mel_norm)
        self.gt_fb = gammatone_filterbank(sr, self.geometry.n_fft, c.n_gammatone, c.gt_fmin,
                                          c.gt_bins_per_octave, c.gt_order, c.gt_bandwidth, c.gt_floor_db)
        # Both banks stacked: one sparse product over the spectrogram instead of two.
        import scipy.sparse

        self._fb = scipy.sparse.vstack([self.mel_fb, self.gt_fb], format="csr", dtype=np.float32)

    def __repr__(self) -> str:
        g = self.geometry
        return (f"FeatureExtractor(sr={self.audio.sample_rate}, N={g.frame_length}, hop={g.hop}, "
                f"n_fft={g.n_fft}, T={g.n_frames}, n_mels={self.cfg.n_mels}, "
                f"n_gammatone={self.cfg.n_gammatone})")

    @property
    def n_frames(self) -> int:
        return self.geometry.n_frames

    def info(self) -> dict:
        """Everything needed to reproduce these features (saved next to extracted arrays)."""
        g = self.geometry
        return {"audio": to_dict(self.audio), "features": to_dict(self.cfg),
                "geometry": {"window_samples": g.window_samples, "frame_length": g.frame_length,
                             "hop": g.hop, "n_frames": g.n_frames, "n_fft": g.n_fft}}

    def band_energies(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Linear band energies (before logs). window: (..., L) -> (..., n_mels, T), (..., n_gt, T)."""
        p = power_spectrum(np.asarray(window, dtype=np.float32), self.geometry, pre_emph=self.cfg.pre_emphasis)
        lead = p.shape[:-2]
        p2 = p.reshape(-1, p.shape[-1])  # (B*T, F)
        e = np.asarray((self._fb @ p2.T))  # (n_mels + n_gt, B*T)
        e = e.reshape(e.shape[0], *lead, self.n_frames)  # (bands, ..., T)
        e = np.moveaxis(e, 0, -2)  # (..., bands, T)
        m = self.cfg.n_mels
        return e[..., :m, :], e[..., m:, :]

    def __call__(self, window: np.ndarray) -> Features:
        """window: (L,) or (B, L) float32 -> Features with (…, bands, T) arrays."""
        mel_e, gt_e = self.band_energies(window)
        floor = self.cfg.log_floor
        mel = np.log(np.maximum(mel_e, floor))
        # log10(E ** p) == p * log10(E): the power-law compression becomes a scale in log space
        coch = np.float32(self.cfg.gt_power) * np.log10(np.maximum(gt_e, floor))
        return Features(mel.astype(np.float32, copy=False), coch.astype(np.float32, copy=False))
