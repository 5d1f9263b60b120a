"""Pretrained audio encoders: an analysis window in, embeddings out.

An encoder is one module with a class that satisfies :class:`Encoder` and one line in
:data:`ENCODERS`. merkit ships musicnn (its weights come inside the package, converted from the
``musicnn`` wheel; nothing is downloaded). A second encoder, e.g. MERT, CLAP or MusicFM loaded
from a file the user already has, is added the same way; merkit never fetches weights.

>>> enc = get_encoder("musicnn")
>>> e = enc.embed(y16k)          # y16k: (n,) mono float32 at enc.sample_rate
>>> e.pooled.shape, e.sequence.shape      # ((enc.dim,), (P, enc.seq_dim))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np


@dataclass
class Embedding:
    """What an encoder makes of one window.

    pooled:   (dim,) one vector for the window (for track-level models)
    sequence: (P, seq_dim) one vector per patch, ``hop_seconds`` apart (time-varying models)
    tags:     (P, n_tags) tag probabilities, if the encoder is a tagger (else None)
    """

    pooled: np.ndarray
    sequence: np.ndarray
    hop_seconds: float
    tags: np.ndarray | None = None


class Encoder(Protocol):
    name: str
    sample_rate: int  # the rate ``embed`` expects
    dim: int  # len(Embedding.pooled)
    seq_dim: int  # Embedding.sequence.shape[1]
    tag_names: tuple[str, ...]  # () when the encoder has no tag output

    def embed(self, y: np.ndarray) -> Embedding:
        ...

    def n_patches(self, n_samples: int) -> int:
        """Rows of ``Embedding.sequence`` for a window of ``n_samples`` samples."""
        ...

    def info(self) -> dict:
        """Everything that determines the output (stored with extracted embeddings)."""
        ...


def _musicnn(checkpoint: str) -> Callable[..., Encoder]:
    def make(**kw) -> Encoder:
        from .musicnn import MusicnnEncoder

        return MusicnnEncoder(checkpoint, **kw)

    return make


def _madmom(**kw) -> Encoder:
    from .madmom_tonal import MadmomTonalEncoder

    return MadmomTonalEncoder(**kw)


# name -> factory. "musicnn" is the Million Song Dataset checkpoint: preferred for anything
# scored on Emotify, whose recordings come from Magnatune like MagnaTagATune's (MTT) training data.
ENCODERS: dict[str, Callable[..., Encoder]] = {
    "musicnn": _musicnn("MSD_musicnn"),
    "musicnn_mtt": _musicnn("MTT_musicnn"),
    # optional (pip install 'merkit[madmom]'; models CC BY-NC-SA 4.0): key and chord networks,
    # summarised like merkit.features.tonal
    "madmom": _madmom,
}


def get_encoder(name: str, **kw) -> Encoder:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name](**kw)
