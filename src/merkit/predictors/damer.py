"""DAMER-family networks behind ``merkit predict`` (``merkit train`` checkpoints, one per task).

::
    file ──decode, 44.1 kHz mono──> y ──window, -23 LUFS──> (L,) ──Mel + cochleagram──> (128, T), (84, T)
                                                                     └──DAMER──> p_mel, p_coch, p_fused

>>> model = load_model()                       # the model shipped inside the package
>>> r = model.predict_file("song.mp3")
>>> r.quadrant, r.quadrant_word, r.arousal, r.valence, r.certainty

The track-level result uses the paper's analysis window (60 s from 15 s, §III-A). The timeline
uses windows of ``TIMELINE_WINDOW_S`` every ``TIMELINE_HOP_S``: the feature extractor derives
the frame length from the window (``N = L / 44``), so a 10 s window still gives the T = 87
frames the network takes, at a finer time resolution. The shipped model is trained on both
window lengths (``bench/train_default.py``), so both are in its training distribution.

A model holds one or more DAMER networks, each trained on one task:
* ``quadrant`` (4 classes): arousal and valence are the marginals,
  ``P(high A) = P(Q1) + P(Q2)`` and ``P(positive V) = P(Q1) + P(Q4)``;
* ``a`` and/or ``v`` (2 classes each): the quadrant probabilities are the products of the two
  marginals (the two networks are independent estimates).

``certainty`` is the probability of the predicted quadrant (for DAMER networks trained by
``merkit train``: not calibrated). ``view_agreement`` is DAMER's cross-view reliability
``r = exp(-JS(p_mel, p_coch))`` (paper Eq. 12, §IV-C), averaged over the networks: 1 when the Mel
and cochleagram views agree exactly, and at least ``exp(-log 2) = 0.5``; it says how much the two
views agree, not how likely the answer is.

Before any emotion is given, the track window is checked for music (:mod:`merkit.content`):
silence, steady signals and noise raise :class:`~merkit.content.NotMusicError` (``predict*``) or
give a "not music" result (``analyse_file*``); a silent timeline window gets no emotion and a
``warning``.
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from ..config import AudioConfig
from ..results import TASKS, Prediction, combine
from .base import FP16_TOLERANCE, PREDICTOR_KEY, Predictor, PredictorConfig
from ..models import network_from_checkpoint
from ..checkpoint import load_checkpoint
from ..frontend import FrontEnd
from ..training.losses import js_divergence_probs
from ..onnx_backend import Graph, NETWORKS_GRAPH, NetworksGraph

class EmotionModel(Predictor):
    """A predictor: DAMER network(s) and the front end they were trained with.

    Parameters
    ----------
    networks : ``{task: model}`` with task ``quadrant``, ``a`` or ``v``; each model takes raw
        features (``merkit.models.load_model``) and is put in eval mode.
    config : the front end (window, loudness, features, timeline).
    info : free-form description kept with the model (data, metrics, licences).
    """

    def __init__(self, networks: dict, config: PredictorConfig | None = None, *, info: dict | None = None):
        import torch

        if not networks or set(networks) - set(TASKS):
            raise ValueError(f"networks must be a non-empty dict with keys in {TASKS}, got {list(networks)}")
        self.networks = {k: m.eval() for k, m in networks.items()}
        self.config = config or PredictorConfig()
        self.info = info or {}
        self.reference: dict | None = None  # float32 predictions of reference_signal(), if stored
        self._fronts: dict[float, object] = {}  # one front end per window length (track, timeline)
        self._torch = torch
        for task, m in self.networks.items():
            want = 4 if task == "quadrant" else 2
            if m.cfg.n_classes != want:
                raise ValueError(f"a {task!r} network needs {want} classes, this one has {m.cfg.n_classes}")
            if m.cfg.n_frames != self.config.features.n_frames:
                raise ValueError(f"the {task!r} network takes T={m.cfg.n_frames} frames, the front end "
                                 f"makes {self.config.features.n_frames}")

    def __repr__(self) -> str:
        return f"EmotionModel(tasks={list(self.networks)}, {self._front_end_repr()})"

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike]) -> "EmotionModel":
        """A predictor from checkpoint files: the shipped model file or ``best.pt`` of
        ``merkit train`` runs (one per task; the front end comes from the first file, or from
        the feature folder's settings stored with a training run)."""

        networks, config, info, reference = {}, None, {}, None
        for path in paths:
            ckpt = load_checkpoint(path)
            net = network_from_checkpoint(ckpt, path).float()  # the file is read once
            task = ckpt["train_config"].get("label") or ckpt[PREDICTOR_KEY].get("task")
            if task not in TASKS:
                raise ValueError(f"{path}: checkpoint of unknown task {task!r}")
            if task in networks:
                raise ValueError(f"{path}: a second {task!r} network; give one file per task")
            networks[task] = net
            if config is None:
                if "audio" in ckpt[PREDICTOR_KEY]:
                    config = PredictorConfig.from_dict(ckpt[PREDICTOR_KEY])
                    info = ckpt[PREDICTOR_KEY].get("info", {})
                    reference = ckpt[PREDICTOR_KEY].get("reference")
                else:
                    config = PredictorConfig.from_feature_info(ckpt["data_info"].get("feature_info"))
                    info = {"checkpoint": str(path), "metrics": ckpt.get("metrics")}
        if not networks:
            raise ValueError("no model file given")
        model = cls(networks, config, info=info)
        model.reference = reference
        return model

    def reference_probabilities(self) -> dict[str, list[list[float]]]:
        """``{task: (B, C)}`` ensemble probabilities of the track and timeline windows of
        :func:`reference_signal` (stored in a model file at export, see :meth:`check`)."""
        feats = self._reference_features()
        return {t: p["ensemble"].double().tolist() for t, p in self._probabilities(feats["mel"], feats["coch"]).items()}

    def check(self, tolerance: float = FP16_TOLERANCE) -> float:
        """Largest difference between this model's probabilities on :func:`reference_signal` and
        those stored in its file when it was exported (float32); raises ValueError above
        ``tolerance`` (a damaged file, or a front end that changed since the model was trained)."""
        if not self.reference:
            raise ValueError("this model file stores no reference predictions")
        now = self.reference_probabilities()
        diff = max(float(np.abs(np.asarray(now[t]) - np.asarray(self.reference[t])).max()) for t in now)
        if diff > tolerance:
            raise ValueError(f"predictions differ from the stored reference by {diff:.4f} > {tolerance}")
        return diff

    # -- features --------------------------------------------------------------------------------
    def _front(self, audio: AudioConfig):
        key = audio.window_seconds
        if key not in self._fronts:  # filterbanks are built once per window length
            self._fronts[key] = FrontEnd(audio, self.config.features, ("mel", "coch"))
        return self._fronts[key]

    def _timeline_features(self, wins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mel ``(B, n_mels, T)`` and cochleagram ``(B, n_coch, T)`` of timeline windows ``(B, L)``."""
        f = self._front(self.config.timeline_audio()).spectral(wins)
        return f.mel, f.coch

    def _features_of(self, track: tuple, timeline, name: str) -> dict:
        """``{"mel": (B, n_mels, T), "coch": (B, n_coch, T), "times": [(start, end, looped)],
        "duration": s, ...}``: row 0 the track window, rows 1.. the timeline windows."""
        a = self.config.audio
        win, times, info = track
        f = self._front(a).spectral(win)
        mel, coch, all_times = [f.mel[None]], [f.coch[None]], [times]
        flags = []
        content = self._check_track(win, info, f.mel)
        if timeline is not None and not content[0]:  # no timeline for input that is not music
            # a few windows per call: the same features as one call (each window is
            # independent), but the windows and FFT temporaries of a call stay small enough to be
            # reused instead of freshly mapped (faster, and ~1 GB less peak memory for 10 min).
            # The audio is read a segment at a time; the windows' spectrograms are kept (the
            # networks' inputs, ~0.7 MB per window: 85 MB per 10 minutes of timeline).
            for seg in self._timeline_segments(timeline):
                for wins, t_times, lufs in self._timeline_chunks(seg, name):
                    t_mel, t_coch = self._timeline_features(wins)
                    mel.append(t_mel)
                    coch.append(t_coch)
                    all_times += t_times
                    flags += self._window_flags(lufs)
        return {"mel": np.concatenate(mel), "coch": np.concatenate(coch), "times": all_times,
                "duration": info.duration, "content": content,
                "window_flags": flags}

    # -- the networks ----------------------------------------------------------------------------
    def predict_features(self, mel: np.ndarray, coch: np.ndarray) -> list[dict]:
        """Prediction fields (see :func:`combine`) of raw features ``(B, n_mels, T)``, ``(B, n_coch, T)``."""

        torch = self._torch
        probs, rel = {}, []
        with torch.inference_mode():
            for task, p in self._probabilities(mel, coch).items():
                probs[task] = p["ensemble"].double().numpy()
                if "mel" in p and "coch" in p:  # two views to agree (a Mel-only CNN has one)
                    rel.append(torch.exp(-js_divergence_probs(p["mel"], p["coch"])).numpy())
        n = len(mel)
        return combine(probs, np.mean(rel, axis=0) if rel else np.full(n, np.nan))

    def _probabilities(self, mel: np.ndarray, coch: np.ndarray) -> dict[str, dict]:
        """``{task: {head: (B, C) tensor}}``: every network's ``predict_proba`` of raw features
        ``(B, n_mels, T)``, ``(B, n_coch, T)``, in torch or in the exported graph (:meth:`use_onnx`)."""
        mel = np.ascontiguousarray(mel, dtype=np.float32)
        coch = np.ascontiguousarray(coch, dtype=np.float32)
        if self.onnx is not None:
            return self.onnx.probabilities(mel, coch)
        torch = self._torch
        m, c = torch.from_numpy(mel).to(self.device), torch.from_numpy(coch).to(self.device)
        with torch.inference_mode():
            return {task: {h: p.float().cpu() for h, p in net.predict_proba(m, c).items()}
                    for task, net in self.networks.items()}

    def _place(self, device) -> None:
        for net in self.networks.values():
            net.to(device)

    def _results(self, feats: dict) -> tuple[Prediction, list[Prediction]]:
        fields = self.predict_features(feats["mel"], feats["coch"])
        preds = [Prediction(**f, start=t[0], end=t[1], looped=t[2]) for f, t in zip(fields, feats["times"])]
        return preds[0], preds[1:]

    # -- ONNX (merkit export, --backend onnx) ------------------------------------------------------
    def onnx_modules(self) -> list:
        return list(self.networks.items())

    def onnx_graphs(self) -> tuple[list, dict]:
        """One graph: mel, coch → every (task, head) probability."""
        import torch

        b = {0: "batch"}
        feats = self._reference_features(timeline=False)
        mel = torch.from_numpy(np.repeat(feats["mel"][:1], 2, axis=0))
        coch = torch.from_numpy(np.repeat(feats["coch"][:1], 2, axis=0))
        with torch.inference_mode():
            outputs = [(t, h) for t, net in self.networks.items() for h in sorted(net.predict_proba(mel, coch))]
        g = Graph(NETWORKS_GRAPH, NetworksGraph(dict(self.networks), outputs), (mel, coch),
                   {"mel": b, "coch": b}, {f"{t}.{h}": b for t, h in outputs})
        side = {"kind": "networks", "tasks": {t: [h for tt, h in outputs if tt == t] for t in self.networks},
                "outputs": [f"{t}.{h}" for t, h in outputs],
                "fields": "per task, the probabilities of each head (mel, coch, fused) and their mean "
                          "(ensemble); merkit.results.combine turns the ensembles into arousal, valence and "
                          "the quadrant, exp(-JS(mel, coch)) is the view agreement"}
        return [g], side


__all__ = ["EmotionModel"]
