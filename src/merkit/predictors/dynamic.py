"""A dynamic (DSAML) model behind ``merkit predict``: a valence/arousal curve at 2 Hz.

::

    track (44.1 kHz) ──musicnn, one pass──> 3 s patches centred every 0.5 s ──> frames (T, 953)
                     └─ pooled patches ──> global (1906)           ──DSAML──> (T, 2) valence, arousal in [-1, 1]

* ``merkit predict --timeline --model runs/dsaml_.../seed_0/model.pt``: one timeline entry per
  0.5 s (``start``/``end`` = t ± 0.25 s) with ``valence_score`` / ``arousal_score`` from the
  model and the quadrant of their signs.
* The track result: the curve over the paper's analysis window (60 s from 15 s), averaged.
* A regression model gives no probabilities: ``valence`` / ``arousal`` (P(high)) and
  ``certainty`` are None, and the plots and the page draw the scores instead.
* Level: the track window is brought to −23 LUFS and musicnn hears it at −14 LUFS, as in
  ``merkit extract-dynamic``; the timeline uses the track window's gain for the whole track.
"""
from __future__ import annotations

import os

import numpy as np

from ..data.manifest import QUADRANT_WORDS
from ..results import Prediction
from .base import Predictor, PredictorConfig

KIND = "dsaml"


class DynamicModel(Predictor):
    def __init__(self, net, config: PredictorConfig | None = None, *, hop: float = 0.5,
                 info: dict | None = None, encoder: str = "musicnn"):
        import torch

        from ..encoders import get_encoder
        from ..features.extractor import FeatureExtractor

        self.net = net.eval()
        self.config = config or PredictorConfig()
        self.hop = float(hop)
        self.info = info or {}
        self.encoder = get_encoder(encoder)
        self._fx = FeatureExtractor(self.config.audio, self.config.features)
        self._torch = torch

    def __repr__(self) -> str:
        return f"DynamicModel(DSAML, {1 / self.hop:g} Hz curve, window {self.config.audio.window_seconds:g} s)"

    @classmethod
    def from_blob(cls, blob: dict, *, path: str | os.PathLike | None = None) -> "DynamicModel":
        from ..models.dsaml import DSAML, DSAMLConfig

        if blob.get("kind") != KIND:
            raise ValueError(f"{path}: not a DSAML model file")
        net = DSAML(DSAMLConfig(**blob["model"]))
        net.load_state_dict(blob["state_dict"])
        grid = (blob.get("dynamic_features") or {}).get("grid", {})
        enc = ((blob.get("dynamic_features") or {}).get("encoder") or {}).get("encoder", "musicnn")
        return cls(net, hop=float(grid.get("hop", 0.5)), encoder=enc,
                   info={"checkpoint": str(path), "test": blob.get("test"), "best_epoch": blob.get("best_epoch")})

    # -- features ----------------------------------------------------------------------------
    def _encoder_input(self, y: np.ndarray, gain: float, loudness_lufs: float) -> np.ndarray:
        """``y`` (already at ``gain`` x its level) as the encoder takes it: its rate and its level
        (:func:`merkit.frontend.encoder_level_gain`, the rule every caller shares)."""
        from ..audio import resample
        from ..frontend import encoder_level_gain

        a = self.config.audio
        g = gain * encoder_level_gain(self.encoder, a, loudness_lufs)
        return (resample(y, a.sample_rate, self.encoder.sample_rate) * np.float32(g)).astype(np.float32)

    def _curve(self, y_enc: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
        """(times (T,), (T, 2) valence/arousal) of an encoder-ready signal ``duration`` s long."""
        from ..dynamic_features import frame_features

        times = self.hop / 2 + self.hop * np.arange(max(1, int(duration / self.hop)))
        frames = self.encoder.frame_sequence(y_enc)
        f = frame_features(self.encoder, y_enc, times, frames=frames)
        g = self.encoder.embed_segments(frames, [0], frames.shape[1])[0].pooled
        torch = self._torch
        with torch.inference_mode():
            out = self.net(torch.from_numpy(f[None]), torch.from_numpy(g[None].astype(np.float32)))[0].numpy()
        return times, out.astype(np.float64)

    def _features_of(self, track: tuple, y_timeline: np.ndarray | None, name: str) -> dict:
        win, times, info = track
        content = self._check_track(win, info, self._fx(win).mel)
        feats = {"times": [times], "duration": info.duration, "content": content, "window_flags": []}
        if content[0]:
            return feats
        _, curve = self._curve(self._encoder_input(win, 1.0, info.loudness_lufs), self.config.audio.window_seconds)
        feats["track"] = curve.mean(0)
        if y_timeline is not None:
            gain = float(10.0 ** (info.gain_db / 20.0))
            t, c = self._curve(self._encoder_input(y_timeline, gain, info.loudness_lufs),
                               len(y_timeline) / self.config.audio.sample_rate)
            feats["curve"], feats["curve_times"] = c, t
        return feats

    def _results(self, feats: dict) -> tuple[Prediction, list[Prediction]]:
        start, end, looped = feats["times"][0]
        track = self._prediction(feats["track"], start, end, looped)
        tl = [self._prediction(va, t - self.hop / 2, t + self.hop / 2, False)
              for t, va in zip(feats.get("curve_times", []), feats.get("curve", []))]
        return track, tl

    @staticmethod
    def _prediction(va: np.ndarray, start: float, end: float, looped: bool) -> Prediction:
        v, a = float(va[0]), float(va[1])
        q = (1 if v >= 0 else 2) if a >= 0 else (4 if v >= 0 else 3)
        return Prediction(arousal=None, valence=None, quadrant=q, quadrant_word=QUADRANT_WORDS[q], quadrant_probs=None,
                          certainty=None, start=float(start), end=float(end), looped=looped,
                          arousal_score=a, valence_score=v)


__all__ = ["DynamicModel"]
