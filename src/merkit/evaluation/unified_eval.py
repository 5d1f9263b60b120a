"""Scores of the unified model on one corpus's clips, in each label space the corpus has.

* ``va``: binary arousal / valence from the sign of the ``va`` head's scores (0 is the
  circumplex centre of every corpus's map): ``a_acc``, ``v_acc``, ``a_auc``, ``v_auc``; Pearson
  ``a_r`` / ``v_r`` against continuous targets where a corpus has more than two target values
  (Emotify's GEMS heuristic, rated corpora). MIREX's arousal is scored only on the clusters whose
  arousal is unambiguous (:data:`merkit.data.mirex_mood.CONFIDENT_AROUSAL`).
* ``quadrant``: ``q_acc``, ``q_f1`` (macro), ``q_auc``; the same from the ``va`` head's quadrant
  (``q_va_acc``), which is what ``merkit predict`` reports.
* ``mirex``: ``mirex_f1`` (macro over the 5 clusters), ``mirex_acc``.

:func:`selection_score` folds these into the one number that selects the epoch (validation
parts only).
"""
from __future__ import annotations

import numpy as np

from ..data.mirex_mood import CONFIDENT_AROUSAL
from ..data.multi_corpus import Corpus
from .. import metrics


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return metrics.roc_auc(y, score)  # rank-based: any monotone score works


def va_quadrant(va: np.ndarray) -> np.ndarray:
    """0-3 quadrant index (Q1..Q4) of (valence, arousal) points: Q1 +V+A, Q2 -V+A, Q3 -V-A, Q4 +V-A."""
    v, a = va[:, 0] >= 0, va[:, 1] >= 0
    return np.where(a, np.where(v, 0, 1), np.where(v, 3, 2))


def corpus_metrics(corpus: Corpus, idx: np.ndarray, out: dict[str, np.ndarray]) -> dict[str, float]:
    """Metrics of predictions ``out`` (``UnifiedMER.predict`` as numpy, rows = ``idx``)."""
    idx = np.asarray(idx)
    res: dict[str, float] = {}
    va_true = corpus.va[idx]
    va_pred = out["va"]
    for j, dim in ((1, "a"), (0, "v")):
        t = va_true[:, j]
        ok = np.isfinite(t)
        if dim == "a" and (corpus.mirex[idx] >= 0).any():
            ok &= np.isin(corpus.mirex[idx] + 1, CONFIDENT_AROUSAL)
        if ok.sum() < 2:
            continue
        y = (t[ok] >= 0).astype(int)
        s = va_pred[ok, j]
        res[f"{dim}_acc"] = metrics.accuracy(y, (s >= 0).astype(int))
        res[f"{dim}_auc"] = _auc(y, s)
        if len(np.unique(t[ok])) > 2 and (corpus.mirex[idx] < 0).all():
            res[f"{dim}_r"] = metrics.pearson_r(t[ok], s)
    q = corpus.quadrant[idx]
    if (q >= 0).any() and "quadrant" in out:
        ok = q >= 0
        m = metrics.classification_metrics(q[ok], out["quadrant"][ok])
        res.update({"q_acc": m["acc"], "q_f1": m["f1"], "q_auc": m["auc"]})
        res["q_va_acc"] = metrics.accuracy(q[ok], va_quadrant(va_pred[ok]))
    c = corpus.mirex[idx]
    if (c >= 0).any() and "mirex" in out:
        ok = c >= 0
        pred = out["mirex"][ok].argmax(1)
        res["mirex_f1"] = metrics.macro_f1(c[ok], pred, n_classes=5)
        res["mirex_acc"] = metrics.accuracy(c[ok], pred)
    return res


def selection_score(corpus: Corpus, m: dict[str, float]) -> float:
    """One validation number per corpus: EMOPIA the mean of 4Q, arousal and valence accuracy;
    MIREX the cluster macro-F1; otherwise the mean of the V/A correlations (or accuracies)."""
    if "q_acc" in m:
        return float(np.mean([m["q_acc"], m.get("a_acc", m["q_acc"]), m.get("v_acc", m["q_acc"])]))
    if "mirex_f1" in m:
        return m["mirex_f1"]
    rs = [m[k] for k in ("a_r", "v_r") if k in m and np.isfinite(m[k])]
    if rs:
        return float(np.mean(rs))
    accs = [m[k] for k in ("a_acc", "v_acc") if k in m]
    return float(np.mean(accs)) if accs else float("nan")


__all__ = ["corpus_metrics", "selection_score", "va_quadrant"]
