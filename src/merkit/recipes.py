"""Turning a trained unified network into a model file `merkit predict` can use: the steps the
shipped model and every `merkit train --arch unified` run share.

1. **Calibration** on the validation parts of every corpus (never the test parts): a logistic
   map per dimension from the head's raw valence / arousal score to P(positive) / P(high)
   (:func:`merkit.predictors.unified.fit_calibration`). MIREX-like clusters whose arousal side
   is not clear-cut (:data:`merkit.data.mirex_mood.CONFIDENT_AROUSAL`) do not vote on arousal.
2. **Reference outputs**: the model's float32 outputs on :func:`merkit.reference.reference_signal`,
   stored so that a loaded copy can verify itself (``UnifiedModel.check``).
3. **float16 check** (:func:`fp16_change`): the largest change float16 weights make to any output
   on the given inputs; the shipped model is refused beyond :data:`FP16_LIMIT`.

Without step 1 a model fell back to a default slope (1.7), so its probabilities were not
calibrated; ``bench/train_default.py`` (the shipped model) and ``merkit train --arch unified``
now both call :func:`calibrated_model`.
"""
from __future__ import annotations

import numpy as np

from .data.mirex_mood import CONFIDENT_AROUSAL
from .predictors.base import PredictorConfig
from .predictors.unified import UnifiedModel, fit_calibration
from .training.unified_fit import predict_corpus

FP16_LIMIT = 0.02  # the largest output change float16 weights may make (the shipped model's bar)


def calibrate(net, corpora, splits) -> dict[str, tuple[float, float]]:
    """``{"valence": (slope, intercept), "arousal": ...}`` fitted on every corpus's validation part."""
    calib = {}
    for j, dim in ((0, "valence"), (1, "arousal")):
        scores, labels = [], []
        for c in corpora:
            va = splits[c.name].val
            if len(va) == 0:
                continue
            s = predict_corpus(net, c.x[va])["va"][:, j]
            t = c.va[va, j].copy()
            if dim == "arousal" and (c.mirex >= 0).any():
                t[~np.isin(c.mirex[va] + 1, CONFIDENT_AROUSAL)] = np.nan
            scores.append(s)
            labels.append(t)
        calib[dim] = fit_calibration(np.concatenate(scores), np.concatenate(labels)) if scores else (1.7, 0.0)
    return calib


def calibrated_model(net, corpora, splits, *, feature_info: dict | None, info: dict | None = None) -> UnifiedModel:
    """A :class:`UnifiedModel` of ``net`` with the front end of ``feature_info`` (the feature
    folders' ``features.json``), calibrated on the validation parts and carrying its reference
    outputs."""
    model = UnifiedModel(net, PredictorConfig.from_feature_info(feature_info),
                         calibration=calibrate(net, corpora, splits), info=info)
    model.reference = model.reference_probabilities()
    return model


def fp16_change(model: UnifiedModel, half: UnifiedModel, inputs: list[np.ndarray]) -> float:
    """The largest change between two copies' outputs (float32 ``model`` against a float16
    ``half``) on the input rows ``inputs``: probabilities directly, scores through tanh."""
    worst = 0.0
    for x in inputs:
        a, b = model.outputs(x), half.outputs(x)
        for k in a:
            d = np.abs(np.tanh(a[k]) - np.tanh(b[k])) if k == "va" else np.abs(a[k] - b[k])
            worst = max(worst, float(d.max()) if d.size else 0.0)
    return worst


__all__ = ["FP16_LIMIT", "calibrate", "calibrated_model", "fp16_change"]
