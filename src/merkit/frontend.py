"""One front end: a file (or an array) → its analysis window → the views a model reads.

::

    file ──decode, resample, mono──> y ──window (60 s from 15 s), −23 LUFS──> win (L,) at 44.1 kHz
        ├── Mel spectrogram + cochleagram (one power spectrum)       "mel" (128, T), "coch" (84, T)
        └── per encoder: resample to its rate, set its level, embed  "musicnn" (1906,), "musicnn_seq" (P, 200)

``merkit extract`` stores every view of every track in the Memo2496 layout (one ``.npy`` per
view); models read the views they need. An encoder view is named after the encoder; its frame
sequence is ``<name>_seq``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .audio import AudioError, AudioInfo, load_window, resample
from .config import AudioConfig, ConfigError, FeatureConfig
from .encoders import ENCODERS, Encoder, get_encoder
from .features.extractor import FeatureExtractor

SPECTRAL_VIEWS = ("mel", "coch")
SEQ_SUFFIX = "_seq"


def parse_views(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"mel,coch,musicnn"`` → ``("mel", "coch", "musicnn")``. The Mel and cochleagram views
    are always included (every model and the Memo2496 layout read them)."""
    if spec is None:
        return SPECTRAL_VIEWS
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    unknown = [n for n in names if n not in SPECTRAL_VIEWS and n not in ENCODERS]
    if unknown:
        raise ConfigError(f"unknown view {unknown[0]!r}; views: mel, coch, {', '.join(sorted(ENCODERS))}")
    encoders = [n for n in dict.fromkeys(names) if n in ENCODERS]
    return SPECTRAL_VIEWS + tuple(encoders)


@dataclass
class WindowViews:
    """Every view of one analysis window; ``arrays`` maps view name → array."""

    arrays: dict[str, np.ndarray]
    info: AudioInfo | None = None


def encoder_level_gain(enc, audio: AudioConfig, loudness_lufs: float | None = None) -> float:
    """The one rule for an encoder's input level: the linear gain that takes audio normalised to
    ``audio.target_lufs`` to the level ``enc`` was trained at (``enc.target_lufs``; musicnn
    hears -14 LUFS). 1 when either level is unset, and for audio below the silence gate
    (``loudness_lufs`` under ``audio.silence_lufs``): the loudness step left it unscaled, so it
    is left so here. ``loudness_lufs=None``: the level is not known, the gain applies."""
    target = getattr(enc, "target_lufs", None)
    if target is None or audio.target_lufs is None:
        return 1.0
    if loudness_lufs is not None and not (np.isfinite(loudness_lufs) and loudness_lufs >= audio.silence_lufs):
        return 1.0
    return float(10.0 ** ((target - audio.target_lufs) / 20.0))


class FrontEnd:
    """Turns audio into the views ``views`` (see :func:`parse_views`).

    >>> fe = FrontEnd(views=("mel", "coch", "musicnn"))
    >>> v = fe.file("song.mp3")
    >>> v.arrays["mel"].shape, v.arrays["musicnn"].shape     # ((128, 87), (1906,))
    """

    def __init__(self, audio: AudioConfig | None = None, features: FeatureConfig | None = None,
                 views=None, *, encoders: dict[str, Encoder] | None = None):
        self.views = parse_views(views)
        self.fx = FeatureExtractor(audio, features)
        self.audio = self.fx.audio
        self.encoders: dict[str, Encoder] = dict(encoders or {})
        for name in self.views:
            if name in ENCODERS and name not in self.encoders:
                self.encoders[name] = get_encoder(name)

    def __repr__(self) -> str:
        return f"FrontEnd(views={self.views}, {self.fx!r})"

    def row_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each stored array per track (the analysis window is fixed, so these are too)."""
        T = self.fx.n_frames
        shapes = {"mel": (self.fx.cfg.n_mels, T), "coch": (self.fx.cfg.n_gammatone, T)}
        for name, enc in self.encoders.items():
            n = int(round(self.audio.window_seconds * enc.sample_rate))
            shapes[name] = (enc.dim,)
            shapes[name + SEQ_SUFFIX] = (enc.n_patches(n), enc.seq_dim)
        return shapes

    def info(self) -> dict:
        d = self.fx.info()
        d["views"] = list(self.views)
        if self.encoders:
            d["encoders"] = {name: enc.info() for name, enc in self.encoders.items()}
        return d

    def encoder_input(self, win: np.ndarray, info: AudioInfo | None, enc: Encoder, *,
                      gain: float = 1.0) -> np.ndarray:
        """The analysis window as ``enc`` takes it: at its sample rate and at its level.
        ``gain``: a linear gain the window has not had yet (the timeline passes the raw track
        and the track window's gain), applied after resampling, in the same multiply."""
        y = resample(win, self.audio.sample_rate, enc.sample_rate)
        gain *= encoder_level_gain(enc, self.audio, None if info is None else info.loudness_lufs)
        if gain != 1.0:
            y = y * np.float32(gain)
        return np.ascontiguousarray(y, dtype=np.float32)

    def heard_once(self, win: np.ndarray, info: AudioInfo | None) -> np.ndarray:
        """What the encoders hear of an analysis window: a clip that was extended to the window
        (``info.repeated``) is cut back to the clip itself when ``audio.encoder_once`` (see
        :class:`~merkit.config.AudioConfig`), else the window as it is."""
        if info is None or not info.repeated or not self.audio.encoder_once:
            return win
        n = int(round((info.duration - info.window_start) * self.audio.sample_rate))
        return win[:max(1, min(len(win), n))]

    def spectral(self, wins: np.ndarray):
        """The Mel spectrogram and cochleagram (``.mel``, ``.coch``) of one analysis window
        ``(L,)`` or of a batch of equally long windows ``(B, L)`` (the timeline's), without the
        encoders."""
        return self.fx(wins)

    def window(self, win: np.ndarray, info: AudioInfo | None = None) -> WindowViews:
        """Every view of an analysis window that :func:`merkit.audio.prepare` made."""
        f = self.fx(win)
        arrays = {"mel": f.mel, "coch": f.coch}
        heard = self.heard_once(win, info)
        shapes = self.row_shapes()
        for name, enc in self.encoders.items():
            e = enc.embed(self.encoder_input(heard, info, enc))
            arrays[name] = e.pooled
            # a row of the stored layout has the window's patch count: a clip heard once
            # repeats its patch sequence to fill it (the pooled view is the clip's own)
            seq = e.sequence
            if seq.ndim == 2 and seq.shape[1:] == shapes[name + SEQ_SUFFIX][1:]:
                seq = np.resize(seq, shapes[name + SEQ_SUFFIX])
            arrays[name + SEQ_SUFFIX] = seq
        for name, a in arrays.items():
            if a.shape != shapes[name]:
                raise AudioError(f"view {name}: expected shape {shapes[name]}, got {a.shape}")
            if not np.isfinite(a).all():
                raise AudioError(f"view {name} is not finite")
        return WindowViews(arrays, info)

    def file(self, path: str | os.PathLike) -> WindowViews:
        win, info = load_window(path, self.audio)
        try:
            return self.window(win, info)
        except AudioError as e:
            raise AudioError(f"{path}: {e}") from None
