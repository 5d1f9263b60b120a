"""Pretrained audio encoders: an analysis window in, embeddings out.

An encoder is one module with a class that satisfies :class:`Encoder` and one line in
:data:`ENCODERS`. merkit ships musicnn and the wheel's VGG baselines (their weights come inside
the package, converted from the ``musicnn`` wheel; nothing is downloaded). Another encoder, e.g.
MERT, CLAP or MusicFM loaded from a file the user already has, is added the same way; merkit
never fetches weights.

>>> enc = get_encoder("musicnn")
>>> e = enc.embed(y16k)          # y16k: (n,) mono float32 at enc.sample_rate
>>> e.pooled.shape, e.sequence.shape      # ((enc.dim,), (P, enc.seq_dim))
"""
from __future__ import annotations

from typing import Callable

from .base import Embedding, Encoder
from .madmom_tonal import MadmomTonalEncoder

def _musicnn(checkpoint: str) -> Callable[..., Encoder]:
    def make(**kw) -> Encoder:
        from .musicnn import MusicnnEncoder

        return MusicnnEncoder(checkpoint, **kw)

    return make


def _musicnn_vgg(checkpoint: str) -> Callable[..., Encoder]:
    def make(**kw) -> Encoder:
        from .musicnn_vgg import MusicnnVggEncoder

        return MusicnnVggEncoder(checkpoint, **kw)

    return make


def _madmom(**kw) -> Encoder:
    return MadmomTonalEncoder(**kw)


# name -> factory. "musicnn" is the Million Song Dataset checkpoint: preferred for anything
# scored on Emotify, whose recordings come from Magnatune like MagnaTagATune's (MTT) training data.
ENCODERS: dict[str, Callable[..., Encoder]] = {
    "musicnn": _musicnn("MSD_musicnn"),
    "musicnn_mtt": _musicnn("MTT_musicnn"),
    # the VGG baselines shipped with musicnn (same front end and patches; 256-d pooled)
    "musicnn_vgg": _musicnn_vgg("MSD_vgg"),
    "musicnn_vgg_mtt": _musicnn_vgg("MTT_vgg"),
    # optional (pip install 'merkit[madmom]'; models CC BY-NC-SA 4.0): key and chord networks,
    # summarised like merkit.features.tonal
    "madmom": _madmom,
}


def get_encoder(name: str, **kw) -> Encoder:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name](**kw)


__all__ = ["ENCODERS", "Embedding", "Encoder", "get_encoder"]
