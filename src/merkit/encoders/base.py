"""What every encoder is: :class:`Encoder` (the protocol) and :class:`Embedding` (its output).

Kept apart from the registry in ``merkit.encoders`` so that the encoder modules import this and
the registry imports them, never the other way round.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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


__all__ = ["Embedding", "Encoder"]
