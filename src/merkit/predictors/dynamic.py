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
from ..frontend import FrontEnd
from ..checkpoint import upgrade
from ..models.dsaml import DSAML, DSAMLConfig
from ..dynamic_features import frame_features

KIND = "dsaml"


class DynamicModel(Predictor):
    def __init__(self, net, config: PredictorConfig | None = None, *, hop: float = 0.5,
                 info: dict | None = None, encoder: str = "musicnn"):
        import torch

        self.net = net.eval()
        self.config = config or PredictorConfig()
        self.hop = float(hop)
        self.info = info or {}
        self._fe = FrontEnd(self.config.audio, self.config.features, ("mel", "coch", encoder))
        self.encoder = self._fe.encoders[encoder]
        self._torch = torch

    def __repr__(self) -> str:
        return f"DynamicModel(DSAML, {1 / self.hop:g} Hz curve, window {self.config.audio.window_seconds:g} s)"

    @classmethod
    def from_blob(cls, blob: dict, *, path: str | os.PathLike | None = None) -> "DynamicModel":
        blob = upgrade(blob, path or "checkpoint")
        if blob["kind"] != KIND:
            raise ValueError(f"{path}: a {blob['kind']} model file, not a DSAML model")
        net = DSAML(DSAMLConfig(**blob["model_config"]))
        net.load_state_dict(blob["state_dict"])
        pred, metrics = blob["predictor"], blob["metrics"]
        return cls(net, hop=float(pred.get("hop", 0.5)), encoder=pred.get("encoder", "musicnn"),
                   info={"checkpoint": str(path), "test": metrics.get("test"), "best_epoch": metrics.get("best_epoch")})

    # -- features ----------------------------------------------------------------------------
    def _front(self, audio=None):
        """The one front end (the timeline runs the encoder over the whole track, not windows)."""
        return self._fe

    def _curve(self, y_enc: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
        """(times (T,), (T, 2) valence/arousal) of an encoder-ready signal ``duration`` s long."""

        times = self.hop / 2 + self.hop * np.arange(max(1, int(duration / self.hop)))
        frames = self.encoder.frame_sequence(y_enc)
        f = frame_features(self.encoder, y_enc, times, frames=frames)
        g = self.encoder.embed_segments(frames, [0], frames.shape[1])[0].pooled
        torch = self._torch
        with torch.inference_mode():
            out = self.net(torch.from_numpy(f[None]), torch.from_numpy(g[None].astype(np.float32)))[0].numpy()
        return times, out.astype(np.float64)

    def _features_of(self, track: tuple, timeline, name: str) -> dict:
        win, times, info = track
        content = self._check_track(win, info, self._fe.spectral(win).mel)
        feats = {"times": [times], "duration": info.duration, "content": content, "window_flags": []}
        if content[0]:
            return feats
        _, curve = self._curve(self._fe.encoder_input(win, info, self.encoder), self.config.audio.window_seconds)
        feats["track"] = curve.mean(0)
        if timeline is not None:
            # the sequence model reads the whole track at once (its global embedding is of the
            # whole track), so its timeline audio is joined; --timeline-max-minutes bounds it
            y_timeline = np.concatenate(list(timeline))
            gain = float(10.0 ** (info.gain_db / 20.0))
            t, c = self._curve(self._fe.encoder_input(y_timeline, info, self.encoder, gain=gain),
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
