"""Evaluation metrics: numpy arrays in, Python floats out.

Classification takes integer labels ``(N,)`` and class probabilities ``(N, C)``; regression
takes two ``(N,)`` arrays. A metric that is undefined for the input (e.g. ROC-AUC when the test
part holds one class only) is ``nan`` rather than an exception, so multi-seed tables still fill.
"""
from __future__ import annotations

import math

import numpy as np



def _skm():
    """scikit-learn's metrics, imported on first use: sklearn takes about a second to import,
    which `merkit ... --help` and the commands that never score should not pay."""
    from sklearn import metrics

    return metrics

def _labels(y_true) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    return y.astype(np.int64)


def _proba(proba, n: int) -> np.ndarray:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim == 1:  # probability of the positive class of a binary task
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[0] != n:
        raise ValueError(f"probabilities must be (N, C) with N = {n}, got shape {p.shape}")
    return p


def accuracy(y_true, y_pred) -> float:
    return float(_skm().accuracy_score(_labels(y_true), _labels(y_pred)))


def f1_positive(y_true, y_pred, *, positive: int = 1) -> float:
    """F1 of the positive class (high arousal / positive valence) of a binary task."""
    return float(_skm().f1_score(_labels(y_true), _labels(y_pred), pos_label=positive,
                              average="binary", zero_division=0))


def macro_f1(y_true, y_pred, *, n_classes: int | None = None) -> float:
    labels = None if n_classes is None else list(range(n_classes))
    return float(_skm().f1_score(_labels(y_true), _labels(y_pred), labels=labels, average="macro",
                              zero_division=0))


def roc_auc(y_true, proba) -> float:
    """ROC-AUC from probabilities: of the positive class for 2 classes, macro one-vs-rest for
    more; ``nan`` when a class is missing from ``y_true``."""
    y = _labels(y_true)
    p = _proba(proba, len(y))
    n_classes = p.shape[1]
    if len(np.unique(y)) < n_classes:
        return math.nan
    if n_classes == 2:
        return float(_skm().roc_auc_score(y, p[:, 1]))
    p = p / p.sum(axis=1, keepdims=True)  # sklearn requires rows summing to 1 for multi-class
    return float(_skm().roc_auc_score(y, p, multi_class="ovr", average="macro",
                                   labels=list(range(n_classes))))


def classification_metrics(y_true, proba) -> dict[str, float]:
    """``acc``, ``f1`` and ``auc`` of probabilities ``(N, C)``; the prediction is the argmax.

    ``f1`` is the positive-class F1 for a binary task and the macro-F1 for more classes; ``auc``
    likewise the binary or macro one-vs-rest ROC-AUC.
    """
    y = _labels(y_true)
    p = _proba(proba, len(y))
    pred = p.argmax(axis=1)
    n_classes = p.shape[1]
    f1 = f1_positive(y, pred) if n_classes == 2 else macro_f1(y, pred, n_classes=n_classes)
    return {"acc": accuracy(y, pred), "f1": f1, "auc": roc_auc(y, p)}


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(y_true, dtype=np.float64).ravel()
    b = np.asarray(y_pred, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"need two non-empty arrays of one length, got {a.shape} and {b.shape}")
    return a, b


def r2(y_true, y_pred) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (``nan`` for constant targets)."""
    a, b = _pair(y_true, y_pred)
    ss_tot = float(((a - a.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return math.nan
    return 1.0 - float(((a - b) ** 2).sum()) / ss_tot


def pearson_r(y_true, y_pred) -> float:
    a, b = _pair(y_true, y_pred)
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((da ** 2).sum()) * float((db ** 2).sum()))
    return float((da * db).sum()) / denom if denom > 0 else math.nan


def ccc(y_true, y_pred) -> float:
    """Lin's concordance correlation coefficient ``2 cov / (var_a + var_b + (mean_a - mean_b)^2)``
    (population moments)."""
    a, b = _pair(y_true, y_pred)
    cov = float(((a - a.mean()) * (b - b.mean())).mean())
    denom = float(a.var() + b.var() + (a.mean() - b.mean()) ** 2)
    return 2.0 * cov / denom if denom > 0 else math.nan


def rmse(y_true, y_pred) -> float:
    a, b = _pair(y_true, y_pred)
    return math.sqrt(float(((a - b) ** 2).mean()))


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    return {"r2": r2(y_true, y_pred), "pearson": pearson_r(y_true, y_pred),
            "ccc": ccc(y_true, y_pred), "rmse": rmse(y_true, y_pred)}


__all__ = ["accuracy", "f1_positive", "macro_f1", "roc_auc", "classification_metrics", "r2",
           "pearson_r", "ccc", "rmse", "regression_metrics"]
