"""The unified model behind ``merkit predict``: a window's views → valence, arousal, quadrant,
mood words.

::
    window (44.1 kHz, −23 LUFS) ──FrontEnd──> musicnn pooled (1906) + cochleagram → tonal (31)
        └──UnifiedMER──> va scores (s_v, s_a), MIREX cluster probabilities, GEMS shares

Outputs (:class:`~merkit.results.Prediction`), one consistent story:
* ``valence_score`` / ``arousal_score`` = tanh(s - s½): the regression head's scores, centred
  where the calibrated probability is 1/2 and squashed into [-1, 1] (training targets were each
  corpus's V/A map in units of its standard deviation);
* ``valence`` / ``arousal`` = P(positive) / P(high): a logistic calibration of each score,
  fitted on the validation parts of the training corpora (Platt scaling);
* ``quadrant_probs``: the products of the two marginals, so that the quadrant is the one the
  signs of the scores point to (the web page's dot and the card never disagree);
* ``certainty``: the probability of that quadrant (the calibrated marginals' product; its
  reliability on the test parts is in the model card);
* ``mood_cluster`` / ``mood_words``: the most likely MIREX cluster that has adjectives in the
  quadrant, and those adjectives (:func:`merkit.data.mirex_mood.mood_words`); ``gems``: predicted GEMS
  vote shares.

The timeline (``--timeline``): a model file with a fitted change detector (the shipped one)
gives a 2 Hz curve (:mod:`merkit.models.curve`: the track head on each passage between
detected changes, eased and lagged, with ``valence_band`` / ``arousal_band``);
``timeline_mode = "windows"`` (``merkit predict --timeline-windows``) gives the sliding 10 s
windows every 5 s, each through the track head, as every model without a detector does.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..config import AudioConfig
from ..data.manifest import QUADRANT_WORDS
from ..data.mirex_mood import mood_words
from ..data.multi_corpus import GEMS_ORDER, assemble_inputs
from ..results import Prediction, quadrant_probs
from .segments import encoder_align
from .curve_timeline import CurveTimeline
from ..models import curve as curvemod
from ..models.curve import CurveConfig
from .base import FP16_TOLERANCE, Predictor, PredictorConfig
from ..checkpoint import save_checkpoint, upgrade
from ..models.unified import load_unified, unified_checkpoint
from ..frontend import FrontEnd
from ..encoders.musicnn import MusicnnEncoder, OnDevice, torch_module_of
from ..features.tonal import hop_seconds_from_info
from ..onnx_backend import BACK_END, BackEndGraph, FRAMES, FramesGraph, Graph, HEADS_GRAPH, HeadsGraph, MUSICNN_OUTPUTS


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class UnifiedModel(CurveTimeline, Predictor):
    """The unified network (:class:`~merkit.models.unified.UnifiedMER`) with its front end and
    calibration.

    calibration: ``{"valence": (slope, intercept), "arousal": (slope, intercept)}`` mapping a
    raw score to P(positive / high) (defaults: slope 1.7, intercept 0, i.e. a logistic on the
    score in standard-deviation units, when none was fitted).
    """

    def __init__(self, net, config: PredictorConfig | None = None, *, calibration: dict | None = None,
                 info: dict | None = None):
        import torch

        self.net = net.eval()
        self.config = config or PredictorConfig()
        self.calibration = {k: tuple(v) for k, v in (calibration or {}).items()}
        for k in ("valence", "arousal"):
            self.calibration.setdefault(k, (1.7, 0.0))
        self.info = info or {}
        self.reference: dict | None = None
        self._fronts: dict[float, object] = {}
        self._torch = torch
        encoders = [v for v in net.cfg.inputs if v != "tonal"]
        self.encoders = tuple(encoders)

    def __repr__(self) -> str:
        front = self._front_end_repr()
        if self.timeline_mode == "curve":
            front = front.replace(f"timeline={self.config.timeline_window:g} s every {self.config.timeline_hop:g} s",
                                  "timeline=2 Hz curve")
        return f"UnifiedModel(inputs={self.net.cfg.inputs}, heads={self.net.cfg.heads}, {front})"

    # -- files -------------------------------------------------------------------------------
    @classmethod
    def from_blob(cls, blob: dict, *, path: str | os.PathLike | None = None) -> "UnifiedModel":
        blob = upgrade(blob, path or "checkpoint")
        net = load_unified(blob)
        pred = blob["predictor"]
        if "audio" in pred:
            config = PredictorConfig.from_dict(pred)
            info = pred.get("info", {})
        else:  # a run without its own front end: the one of its feature folders
            config = PredictorConfig.from_feature_info(blob["data_info"].get("feature_info"))
            info = {"checkpoint": str(path) if path else None, "test": blob["metrics"].get("test")}
        model = cls(net, config, calibration=pred.get("calibration"), info=info)
        model.reference = pred.get("reference")
        if pred.get("curve"):
            model.set_curve(CurveConfig.from_dict(pred["curve"]))
        return model

    def to_blob(self, **fields) -> dict:
        """The model file's dict (``fields``: train_config, data_info, metrics of its training)."""

        pred = {**self.config.to_dict(), "info": self.info, "reference": self.reference,
                "calibration": {k: list(v) for k, v in self.calibration.items()},
                "curve": self.curve.to_dict() if self.curve is not None else None}
        return unified_checkpoint(self.net, predictor=pred, **fields)

    def save(self, path: str | os.PathLike, *, half: bool = True, **fields) -> Path:
        """Write the model file atomically (float16 weights by default, float32 buffers);
        ``fields``: train_config, data_info, metrics of its training."""

        blob = self.to_blob(**fields)
        if half:
            blob["state_dict"] = {k: v.half() if v.is_floating_point() and k not in ("mean", "std") else v
                                  for k, v in blob["state_dict"].items()}
        return save_checkpoint(path, blob)

    # -- features ----------------------------------------------------------------------------
    def _front(self, audio: AudioConfig):
        key = audio.window_seconds
        if key not in self._fronts:
            # the track and timeline fronts share one set of encoders (one copy of the weights)
            shared = next(iter(self._fronts.values())).encoders if self._fronts else None
            self._fronts[key] = FrontEnd(audio, self.config.features, ("mel", "coch", *self.encoders),
                                         encoders=shared)
        return self._fronts[key]

    def _swap_networks(self, runner) -> None:
        """Each encoder's network (shared by the track and timeline front ends) runs in
        ``runner``'s graphs (an :class:`~merkit.onnx_backend.OnnxMusicnn` stands in for the
        torch module), or in torch again (None); the head network is :meth:`outputs`'s call."""

        for name, enc in self._front(self.config.audio).encoders.items():
            if runner is None and not hasattr(enc, "model"):
                continue  # an encoder without a torch network (the export refuses those)
            torch_net = torch_module_of(enc.model)
            enc.model = torch_net if runner is None else runner.musicnn(name, torch_net)

    def _place(self, device) -> None:
        self.net.to(device)
        for enc in self._front(self.config.audio).encoders.values():  # shared with the timeline's
            if hasattr(enc, "model"):
                module = torch_module_of(enc.model)
                enc.model = OnDevice(module, device) if device.type != "cpu" else module.to(device)

    def _inputs(self, front, views: dict[str, np.ndarray]) -> np.ndarray:
        """(B, D) network input of B windows' stacked views (``front`` made their cochleagrams)."""

        info = front.fx.info()
        return assemble_inputs(views.__getitem__, self.net.cfg.inputs, hop_seconds=hop_seconds_from_info(info),
                               features=info["features"])

    def _features_of(self, track: tuple, timeline, name: str) -> dict:
        win, times, info = track
        front = self._front(self.config.audio)
        views = front.window(win, info).arrays
        x = [self._inputs(front, {k: v[None] for k, v in views.items()})]
        all_times = [times]
        flags = []
        content = self._check_track(win, info, views["mel"])
        if timeline is not None and not content[0] and self.timeline_mode == "curve":
            feats = {"x": x[0], "times": all_times, "duration": info.duration, "content": content}
            feats["curve"], feats["window_flags"] = self._curve_features(timeline, info, x[0][0])
            return feats
        if timeline is not None and not content[0]:  # no timeline for input that is not music
            tx, t_times, lufs = self._timeline_inputs(timeline, name, info)
            x.append(tx)
            all_times += t_times
            flags = self._window_flags(lufs)
        return {"x": np.concatenate(x), "times": all_times, "duration": info.duration,
                "content": content, "window_flags": flags}

    def _timeline_inputs(self, blocks, name: str, info) -> tuple[np.ndarray, list[tuple], np.ndarray]:
        """(B, D) inputs of the timeline windows of the audio ``blocks`` (an array, or the
        consecutive blocks of :func:`merkit.audio.iter_mono`), their (start, end, looped) and
        loudness.

        The spectral views come from each window, loudness-normalised on its own, as in
        training. The encoder sees the track at the level of the track window (its gain applied
        to every sample), and each window pools the frames inside it
        (:meth:`~merkit.encoders.musicnn.MusicnnEncoder.embed_segments`): overlapping windows
        share the encoder's work, so the timeline costs about one pass over the track instead of
        two, and level changes along the track stay visible to the model. The track is read and
        reduced a segment of a few minutes at a time (:mod:`merkit.predictors.segments`): only
        one segment's audio, frames and spectrograms are held, whatever the track's length.
        """
        if isinstance(blocks, np.ndarray):
            blocks = [blocks]
        tfront = self._front(self.config.timeline_audio())
        sr = self.config.audio.sample_rate
        framed = {n: e for n, e in tfront.encoders.items() if hasattr(e, "frame_sequence")}
        gain = float(10.0 ** (info.gain_db / 20.0))
        xs, times, lufs = [], [], []
        for seg in self._timeline_segments(blocks, align=encoder_align(sr, framed.values())):
            arrays: dict[str, list] = {"mel": [], "coch": []}
            seg_times = []
            for wins, t, l in self._timeline_chunks(seg, name):  # a few windows at a time
                f = tfront.spectral(wins)
                arrays["mel"].append(f.mel)
                arrays["coch"].append(f.coch)
                for enc_name, enc in tfront.encoders.items():  # an encoder without frames: each window on its own
                    if enc_name not in framed:
                        arrays.setdefault(enc_name, []).append(
                            np.stack([enc.embed(tfront.encoder_input(w, None, enc)).pooled for w in wins]))
                seg_times += t
                lufs.append(l)
            views = {k: np.concatenate(v) for k, v in arrays.items()}
            for enc_name, enc in framed.items():
                y_enc = tfront.encoder_input(seg.y, info, enc, gain=gain)  # the gain after resampling: no copy
                frames = enc.frame_sequence(y_enc)
                hop = enc.front_end.hop_length / enc.sample_rate
                first = int(round(seg.offset / sr / hop))  # the segment starts on a whole hop (encoder_align)
                n = int(round(self.config.timeline_window / hop))
                embs = enc.embed_segments(frames, [int(round(t[0] / hop)) - first for t in seg_times], n)
                views[enc_name] = np.stack([e.pooled for e in embs])
            xs.append(self._inputs(tfront, views))
            times += seg_times
        return np.concatenate(xs), times, np.concatenate(lufs)

    # -- the network -------------------------------------------------------------------------
    def outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Raw head outputs (probabilities; ``va`` scores) of inputs ``(B, D)``: the torch head
        network, or its exported graph (:meth:`use_onnx`)."""
        if self.onnx is not None:
            return self.onnx.heads(x)
        torch = self._torch
        with torch.inference_mode():
            out = self.net.predict(torch.from_numpy(x).to(self.device))
            return {k: v.double().cpu().numpy() for k, v in out.items()}

    def score_centres(self) -> tuple[float, float]:
        """(valence, arousal) head scores at which the calibrated probability is 1/2."""
        return tuple(-b / a if a > 0 else 0.0 for a, b in (self.calibration[d] for d in ("valence", "arousal")))

    def predict_inputs(self, x: np.ndarray) -> list[dict]:
        """Prediction fields of network inputs ``(B, D)``."""
        return self.fields_of(self.outputs(x))

    def va_probabilities(self, va: np.ndarray) -> np.ndarray:
        """(B, 2) P(positive valence), P(high arousal) of raw ``va`` scores (the calibration)."""
        return np.stack([_sigmoid(self.calibration[d][0] * va[:, j] + self.calibration[d][1])
                         for j, d in enumerate(("valence", "arousal"))], 1)

    def va_scores(self, va: np.ndarray) -> np.ndarray:
        """(B, 2) valence_score, arousal_score of raw ``va`` scores: centred where the calibrated
        P is 1/2, so that their signs, the sides of P and the quadrant always agree, then tanh."""
        return np.tanh(va - np.asarray(self.score_centres()))

    def fields_of(self, out: dict[str, np.ndarray]) -> list[dict]:
        """Prediction fields of raw head outputs (:meth:`outputs`)."""
        (pv, pa), (zv, za) = self.va_probabilities(out["va"]).T, self.va_scores(out["va"]).T
        pq = quadrant_probs(pa, pv)
        fields = []
        for i in range(len(pv)):
            q = int(np.argmax(pq[i])) + 1
            f = {"arousal": float(pa[i]), "valence": float(pv[i]), "quadrant": q,
                 "quadrant_word": QUADRANT_WORDS[q], "quadrant_probs": tuple(float(p) for p in pq[i]),
                 "certainty": float(pq[i, q - 1]),
                 "arousal_score": float(za[i]), "valence_score": float(zv[i])}
            if "mirex" in out:  # the most likely cluster with words in this quadrant, and those words
                f["mood_cluster"], f["mood_words"] = mood_words(q, out["mirex"][i])
            if "gems" in out:
                f["gems"] = {g: round(float(p), 4) for g, p in zip(GEMS_ORDER, out["gems"][i])}
            fields.append(f)
        return fields

    def _results(self, feats: dict) -> tuple[Prediction, list[Prediction]]:
        fields = self.predict_inputs(feats["x"])
        preds = [Prediction(**f, start=t[0], end=t[1], looped=t[2]) for f, t in zip(fields, feats["times"])]
        if "curve" not in feats:
            return preds[0], preds[1:]
        c, half = feats["curve"], curvemod.HOP_SECONDS / 2
        tl = [Prediction(**f, start=float(t - half), end=float(t + half), valence_band=float(b[0]),
                         arousal_band=float(b[1]))
              for f, t, b in zip(self.fields_of(c["outputs"]), c["times"], c["band"])]
        return preds[0], tl

    # -- self-check --------------------------------------------------------------------------
    def reference_probabilities(self) -> dict[str, list[list[float]]]:
        """Head outputs on the track and timeline windows of :func:`reference_signal`."""
        mode, self.timeline_mode = self.timeline_mode, "curve" if self.curve is not None else "windows"
        try:  # the stored reference is of the model's own timeline, whichever a caller picked since
            feats = self._reference_features()
        finally:
            self.timeline_mode = mode
        out = {k: v.tolist() for k, v in self.outputs(feats["x"]).items()}
        if "curve" in feats:  # the 2 Hz timeline's eased outputs and band
            out.update({f"timeline_{k}": v.tolist() for k, v in feats["curve"]["outputs"].items()})
            out["timeline_band"] = feats["curve"]["band"].tolist()
        return out

    def check(self, tolerance: float = FP16_TOLERANCE) -> float:
        """Largest difference between this model's outputs on :func:`reference_signal` and those
        stored at export (float32); raises ValueError above ``tolerance``."""
        if not self.reference:
            raise ValueError("this model file stores no reference predictions")
        now = self.reference_probabilities()
        missing = sorted(set(now) - set(self.reference))
        if missing:  # e.g. a timeline attached without storing its reference
            raise ValueError(f"this model file stores no reference for {', '.join(missing)}")
        diff = max(float(np.abs(np.asarray(now[k]) - np.asarray(self.reference[k])).max()) for k in now)
        if diff > tolerance:
            raise ValueError(f"predictions differ from the stored reference by {diff:.4f} > {tolerance}")
        return diff

    # -- ONNX (merkit export, --backend onnx) ------------------------------------------------------
    def onnx_modules(self) -> list:
        """The heads network, then each musicnn encoder's network."""

        out = [(HEADS_GRAPH, self.net)]
        for name, enc in self._front(self.config.audio).encoders.items():
            if not isinstance(enc, MusicnnEncoder):
                raise ValueError(f"encoder {name!r} has no ONNX export (musicnn encoders do); use --backend torch")
            out.append((name, torch_module_of(enc.model)))
        return out

    def onnx_graphs(self) -> tuple[list, dict]:
        """The heads graph (x → each head), and per encoder its frames and back-end graphs."""
        import torch

        b = {0: "batch"}
        modules = self.onnx_modules()
        net = self.net
        heads = sorted(net.cfg.heads)
        g = torch.Generator().manual_seed(0)
        x = (net.mean[None] + net.std[None] * torch.randn(2, net.cfg.input_dim, generator=g)).float()
        graphs = [Graph(HEADS_GRAPH, HeadsGraph(net, heads), (x,), {"x": b}, {h: b for h in heads})]
        encoders = {}
        front = self._front(self.config.audio)
        bt = {0: "batch", 1: "time"}
        bf = {0: "batch", 2: "time"}
        for name, m in modules[1:]:
            enc = front.encoders[name]
            spec = torch.rand(2, enc.patch_frames, m.dims.n_mels, generator=g) * 3
            with torch.inference_mode():
                mid = m.frames(spec)
            graphs.append(Graph(f"{name}.{FRAMES}", FramesGraph(m), (spec,), {"log_mel": bt}, {"frames": bf}))
            graphs.append(Graph(f"{name}.{BACK_END}", BackEndGraph(m), (mid.clone(),), {"frames": bf},
                                 {k: b for k in MUSICNN_OUTPUTS}))
            encoders[name] = {**enc.info(), "graphs": [f"{name}.{FRAMES}", f"{name}.{BACK_END}"],
                              "pooled": "[mean, std] over a window's patches of penultimate, then of mean_pool "
                                        f"({enc.dim} values; merkit.encoders.musicnn.MusicnnEncoder.embed)"}
        side = {"kind": "unified", "inputs": list(net.cfg.inputs), "input_dim": net.cfg.input_dim, "outputs": heads,
                "encoders": encoders,
                "fields": "P(positive valence) = sigmoid(a_v * va[:, 0] + b_v), P(high arousal) likewise with "
                          "va[:, 1]; quadrant probabilities = products of the two; valence_score = "
                          "tanh(va[:, 0] + b_v / a_v) (merkit.predictors.unified)"}
        return graphs, side


def fit_calibration(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of P(label >= 0) = sigmoid(slope * score + intercept), by logistic
    regression (Platt scaling) on validation scores; labels are signed targets (nan ignored)."""
    from sklearn.linear_model import LogisticRegression

    ok = np.isfinite(labels) & np.isfinite(scores)
    y = (labels[ok] >= 0).astype(int)
    if len(np.unique(y)) < 2:
        return 1.7, 0.0
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(scores[ok, None], y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


__all__ = ["UnifiedModel", "fit_calibration"]
