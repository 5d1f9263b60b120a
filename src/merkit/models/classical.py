"""Classical (scikit-learn) baselines on the Memo2496 arrays.

    svm     StandardScaler + RBF SVC (Platt-calibrated probabilities) on handcrafted descriptors
            (MFCC, chroma, spectral statistics): the Memo2496 paper's Table II SVM baseline
    logreg  StandardScaler + LogisticRegression on mean MFCCs: the EMOPIA paper's audio
            logistic-regression baseline (Hung et al. 2021, §5)

With ``n_classes == 1`` (regression of a continuous arousal or valence label) the twins are an
RBF SVR (targets standardised, so its epsilon-tube is in units of the label's std) and Ridge
regression on mean MFCCs, the least-squares counterpart of logistic regression.

The one hyper-parameter (C, or Ridge's alpha) is picked from a fixed grid by the validation
metric, accuracy or CCC; without a validation part, by 5-fold cross-validation on the training
part. The test part never reaches :meth:`ClassicalModel.fit`.

>>> model = ClassicalModel("svm", n_classes=2, feature_info=fs.feature_info)
>>> report = model.fit(mel_tr, coch_tr, y_tr, mel_val, coch_val, y_val)   # report["chosen"]
>>> proba = model.predict_heads(mel_te, coch_te)["out"]                   # (N, 2)
>>> model.save("runs/svm_a/model.skops"); model = ClassicalModel.load("runs/svm_a/model.skops")

Model files are written with ``skops.io``, which stores the fitted estimator as data, and read
back only if every type in them is on :data:`TRUSTED_TYPES` (the scikit-learn classes these
baselines use): a model file cannot run code. Pickled files (``.pkl``, merkit < 0.2) are refused.

Size: just over ~400 lines: the estimator, its hyper-parameter choice and its safe (skops)
file format belong to one model.
"""
from __future__ import annotations

import math
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR
from threadpoolctl import threadpool_limits

from ..metrics import accuracy, ccc
from ..features.descriptors import N_MFCC, handcrafted_descriptors, mean_mfcc
from .. import __version__
from ..outputs import atomic_path

KINDS = ("svm", "logreg")
# The only types outside skops's own safe list that a merkit classical model file may hold (the
# calibration internals of CalibratedClassifierCV and the estimators above); anything else in a
# file makes ClassicalModel.load refuse it.
TRUSTED_TYPES = ("sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration",
                 "sklearn.compose._target.TransformedTargetRegressor", "sklearn.svm._classes.SVC",
                 "sklearn.svm._classes.SVR", "sklearn.linear_model._logistic.LogisticRegression",
                 "sklearn.linear_model._ridge.Ridge", "sklearn.preprocessing._data.StandardScaler",
                 "sklearn.pipeline.Pipeline", "sklearn.calibration.CalibratedClassifierCV",
                 "sklearn.model_selection._split.StratifiedKFold", "sklearn.model_selection._split.KFold")
# Exponentially spaced grids, as Hsu, Chang & Lin ("A practical guide to support vector
# classification", 2003, §3.2) recommend for C; each spans the library default (C = 1,
# alpha = 1) by decades. RBF gamma stays at sklearn's "scale", 1 / n_features on standardised
# inputs.
SVM_C_GRID = (0.1, 1.0, 10.0, 100.0)
LOGREG_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
RIDGE_ALPHA_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
# lbfgs stops at sklearn's default of 100 iterations on weakly regularised fits (large C)
# before converging; 1000 is ample for 20 standardised inputs.
LOGREG_MAX_ITER = 1000
CV_FOLDS = 5  # cross-validation folds when there is no validation part
# Folds of the SVM's Platt calibration: libsvm's own choice for SVC(probability=True).
CALIBRATION_FOLDS = 5
# BLAS threads for fit and predict. The matrices are small (tracks x 20..74 descriptors, 128 x 87
# per track) and libsvm is single-threaded: measured on a shared 2-core machine, fitting 1 500
# tracks ran 2-7x faster with one BLAS thread than with two.
BLAS_THREADS = 1
FILE_FORMAT = "merkit.classical"
FILE_VERSION = 1  # bump when the saved dict changes


class ClassicalModel:
    """A scikit-learn baseline with merkit's prediction interface (one head, ``"out"``).

    Parameters
    ----------
    kind : "svm" (handcrafted descriptors) or "logreg" (mean MFCCs; Ridge for regression)
    n_classes : 2 or more classes (labels 0..n_classes-1), or 1 for regression
    seed : seeds the cross-validation folds (of the grid search and the SVM's calibration)
    feature_info : the FeatureSet's ``feature_info`` (sample rate, Mel range, cochleagram
        frequencies) that the descriptors need; ``None`` means the paper preset
    """

    heads = ("out",)
    default_head = "out"

    def __init__(self, kind: str, *, n_classes: int, seed: int = 0, feature_info: dict | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if int(n_classes) != n_classes or n_classes < 1:
            raise ValueError(f"n_classes must be an integer >= 1 (1: regression), got {n_classes}")
        self.kind = kind
        self.n_classes = int(n_classes)
        self.seed = int(seed)
        self.feature_info = feature_info
        self.estimator = None  # the fitted pipeline
        self.chosen: float | None = None
        self.fit_report: dict[str, Any] | None = None

    def __repr__(self) -> str:
        state = f"{self.param}={self.chosen:g}" if self.chosen is not None else "unfitted"
        return f"ClassicalModel({self.kind!r}, n_classes={self.n_classes}, {state})"

    # --- configuration ---------------------------------------------------------------------------

    @property
    def regression(self) -> bool:
        return self.n_classes == 1

    @property
    def param(self) -> str:
        """Name of the tuned hyper-parameter."""
        return "alpha" if self.kind == "logreg" and self.regression else "C"

    @property
    def grid(self) -> tuple[float, ...]:
        if self.kind == "svm":
            return SVM_C_GRID
        return RIDGE_ALPHA_GRID if self.regression else LOGREG_C_GRID

    @property
    def metric(self) -> str:
        return "ccc" if self.regression else "acc"

    def _build(self, value: float, y: np.ndarray):
        """An unfitted estimator with hyper-parameter ``value`` for training labels ``y``."""
        if self.kind == "svm" and self.regression:
            return TransformedTargetRegressor(
                regressor=make_pipeline(StandardScaler(), SVR(kernel="rbf", C=value)),
                transformer=StandardScaler())
        if self.kind == "svm":
            # The interface returns probabilities (the ROC-AUC needs them): Platt scaling fitted
            # on cross-validated decision values, the SVC itself on all of X. This is what
            # SVC(probability=True) did inside libsvm, deprecated in scikit-learn 1.9.
            folds = min(CALIBRATION_FOLDS, int(np.unique(y, return_counts=True)[1].min()))
            if folds < 2:
                raise ValueError("the SVM's probability calibration needs at least 2 training "
                                 "tracks of every class")
            svc = SVC(kernel="rbf", C=value)
            return make_pipeline(StandardScaler(), CalibratedClassifierCV(
                svc, method="sigmoid", ensemble=False,
                cv=StratifiedKFold(folds, shuffle=True, random_state=self.seed)))
        if self.regression:
            return make_pipeline(StandardScaler(), Ridge(alpha=value))
        return make_pipeline(StandardScaler(), LogisticRegression(C=value, max_iter=LOGREG_MAX_ITER))

    # --- features ---------------------------------------------------------------------------------

    def features(self, mel, coch) -> np.ndarray:
        """The model's input matrix: handcrafted descriptors (svm) or mean MFCCs (logreg), (N, D).
        Spectrograms with fewer Mel bands than :data:`N_MFCC` give one coefficient per band."""
        n_mfcc = min(N_MFCC, np.shape(mel)[-2])
        if self.kind == "svm":
            return handcrafted_descriptors(mel, coch, self.feature_info, n_mfcc=n_mfcc)
        return mean_mfcc(mel, n_mfcc)

    def _labels(self, y, name: str) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1:
            raise ValueError(f"{name} must be 1-D (N,), got shape {y.shape}")
        if self.regression:
            return y
        ok = np.isfinite(y)
        bad = ok & ((y != np.round(y)) | (y < 0) | (y >= self.n_classes))
        if bad.any():
            raise ValueError(f"{name} must hold class indices 0..{self.n_classes - 1}; got "
                             f"{y[bad][0]!r} at row {int(np.flatnonzero(bad)[0])}")
        return y

    def _usable(self, X: np.ndarray, y: np.ndarray, part: str) -> np.ndarray:
        """Rows whose features and label are finite; the others are skipped with a warning."""
        keep = np.isfinite(X).all(axis=1) & np.isfinite(y)
        if not keep.all():
            rows = np.flatnonzero(~keep)
            warnings.warn(f"{part}: skipping {len(rows)} of {len(y)} tracks with non-finite "
                          f"features or labels (rows {', '.join(map(str, rows[:10]))}"
                          f"{', ...' if len(rows) > 10 else ''})", stacklevel=3)
        if not keep.any():
            raise ValueError(f"{part}: no track has finite features and labels")
        return keep

    # --- fitting ------------------------------------------------------------------------------------

    def _outputs(self, est, X: np.ndarray) -> np.ndarray:
        """(N, n_classes) probabilities, or (N,) values for regression, of finite rows X."""
        if self.regression:
            return np.asarray(est.predict(X), dtype=np.float64).ravel()
        proba = np.zeros((len(X), self.n_classes))
        # columns for the classes seen in training; a class absent there gets probability 0
        proba[:, est.classes_.astype(np.int64)] = est.predict_proba(X)
        return proba

    def _score(self, est, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(metric, loss) on a held-out part: accuracy and log-loss, or CCC and squared error.
        The loss only breaks ties of the metric (accuracy ties often on an easy task, and the
        most regularised of the tied models then has the flattest probabilities)."""
        out = self._outputs(est, X)
        if self.regression:
            return ccc(y, out), float(np.mean((y - out) ** 2))
        return (accuracy(y, out.argmax(axis=1)),
                float(log_loss(y, out, labels=np.arange(self.n_classes))))

    def _folds(self, y: np.ndarray, groups):
        """Cross-validation splits of the training part (song-grouped when ``groups`` is given)."""
        if self.regression:
            n_max = len(y) if groups is None else len(np.unique(groups))
        else:
            counts = np.unique(y, return_counts=True)[1]
            n_max = int(counts.min()) if groups is None else min(
                len(np.unique(groups[y == c])) for c in np.unique(y))
        k = min(CV_FOLDS, n_max)
        if k < 2:
            raise ValueError("too few training tracks (or songs) per class for cross-validation; "
                             "pass a validation part")
        if groups is None:
            cv = (KFold if self.regression else StratifiedKFold)(k, shuffle=True, random_state=self.seed)
        else:
            cv = (GroupKFold if self.regression else StratifiedGroupKFold)(
                k, shuffle=True, random_state=self.seed)
        return list(cv.split(np.zeros(len(y)), y, groups)), k

    def fit(self, mel_tr, coch_tr, y_tr, mel_val=None, coch_val=None, y_val=None, *,
            groups=None) -> dict[str, Any]:
        """Fit on the training part, choosing the hyper-parameter on the validation part.

        Parameters
        ----------
        mel_tr, coch_tr : (N, n_mels, T), (N, n_coch, T) training features (raw, as stored)
        y_tr : (N,) class indices, or continuous labels for regression
        mel_val, coch_val, y_val : the validation part, all three or none. Without it the grid is
            scored by 5-fold cross-validation on the training part (stratified for classes;
            grouped by ``groups``, e.g. song ids, so that no song straddles two folds).
        groups : (N,) group ids of the training tracks, used only for cross-validation

        Returns
        -------
        dict with ``param`` ("C" or "alpha"), ``grid``, ``scores`` (the validation metric per
        grid value, ``nan`` where undefined), ``losses`` (the validation loss per grid value),
        ``chosen``, ``metric`` ("acc" or "ccc"), ``loss`` ("log_loss" or "mse"), ``selection``
        ("validation" or "k-fold cv"), ``n_train``, ``n_val`` and ``n_skipped``. Cross-validated
        scores are means over the folds. The chosen value has the best metric; ties go to the
        lower loss, then to the smaller C / larger alpha (the more regularised model). The model
        kept is the one fitted on the training part with the chosen value (refitted on the whole
        training part after cross-validation).
        """
        with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
            return self._fit(mel_tr, coch_tr, y_tr, mel_val, coch_val, y_val, groups)

    def _fit(self, mel_tr, coch_tr, y_tr, mel_val, coch_val, y_val, groups) -> dict[str, Any]:
        given = [a is not None for a in (mel_val, coch_val, y_val)]
        if any(given) and not all(given):
            raise ValueError("pass mel_val, coch_val and y_val together, or none of them")
        y = self._labels(y_tr, "y_tr")
        X = self.features(mel_tr, coch_tr)
        if len(X) != len(y):
            raise ValueError(f"y_tr has {len(y)} labels for {len(X)} training tracks")
        keep = self._usable(X, y, "training part")
        X, y = X[keep], y[keep]
        n_skipped = int((~keep).sum())
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != keep.shape:
                raise ValueError(f"groups must be ({len(keep)},), got shape {groups.shape}")
            groups = groups[keep]
        if not self.regression and len(np.unique(y)) < 2:
            raise ValueError("the training labels hold a single class; need at least two")

        # Larger C is less regularised; larger alpha more: order the grid so that the first of
        # equal scores is the more regularised model.
        order = list(self.grid) if self.param == "C" else list(self.grid)[::-1]
        scores: list[float] = []
        if all(given):
            yv = self._labels(y_val, "y_val")
            Xv = self.features(mel_val, coch_val)
            if len(Xv) != len(yv):
                raise ValueError(f"y_val has {len(yv)} labels for {len(Xv)} validation tracks")
            kv = self._usable(Xv, yv, "validation part")
            n_skipped += int((~kv).sum())
            Xv, yv = Xv[kv], yv[kv]
            fitted = []
            for v in order:
                est = self._build(v, y).fit(X, y)
                fitted.append(est)
                scores.append(self._score(est, Xv, yv))
            best = _best(scores)
            self.estimator = fitted[best]
            selection, n_val = "validation", len(yv)
        else:
            folds, k = self._folds(y, groups)
            for v in order:
                per_fold = [self._score(self._build(v, y[tr]).fit(X[tr], y[tr]), X[te], y[te])
                            for tr, te in folds]
                scores.append(tuple(float(np.mean(col)) for col in zip(*per_fold)))
            best = _best(scores)
            self.estimator = self._build(order[best], y).fit(X, y)
            selection, n_val = f"{k}-fold cv", 0
        self.chosen = float(order[best])
        by_value = dict(zip(order, scores))
        self.fit_report = {
            "kind": self.kind, "param": self.param, "grid": [float(v) for v in self.grid],
            "scores": [by_value[v][0] for v in self.grid],
            "losses": [by_value[v][1] for v in self.grid], "chosen": self.chosen,
            "metric": self.metric, "loss": "mse" if self.regression else "log_loss",
            "selection": selection, "n_train": int(len(y)), "n_val": int(n_val),
            "n_skipped": n_skipped,
        }
        return dict(self.fit_report)

    # --- prediction -------------------------------------------------------------------------------

    def predict_heads(self, mel, coch) -> dict[str, np.ndarray]:
        """``{"out": (N, n_classes) probabilities}``, or ``{"out": (N,) values}`` for regression.

        A track with non-finite features gets ``nan`` outputs in its row; the others are
        unaffected.
        """
        if self.estimator is None:
            raise RuntimeError("ClassicalModel is not fitted: call fit() or load() first")
        with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
            X = self.features(mel, coch)
            ok = np.isfinite(X).all(axis=1)
            shape = (len(X),) if self.regression else (len(X), self.n_classes)
            out = np.full(shape, np.nan)
            if ok.any():
                out[ok] = self._outputs(self.estimator, X[ok])
        return {"out": out}

    # --- persistence ------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model with its settings and library versions (``skops.io``, no
        pickle), atomically (a temporary file renamed over ``path``)."""
        if self.estimator is None:
            raise RuntimeError("ClassicalModel is not fitted: nothing to save")

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FILE_FORMAT, "format_version": FILE_VERSION, "kind": self.kind,
            "n_classes": self.n_classes, "seed": self.seed, "feature_info": self.feature_info,
            "param": self.param, "chosen": self.chosen, "fit_report": self.fit_report,
            "estimator": self.estimator,
            "versions": {"merkit": str(__version__), "sklearn": sklearn.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
        }
        import skops.io as sio

        with atomic_path(path) as tmp:
            sio.dump(payload, tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ClassicalModel":
        """Read a model written by :meth:`save`; refuses any file holding a type outside
        :data:`TRUSTED_TYPES` (and any pickle), so loading never runs code from the file."""
        import skops.io as sio

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80" or path.suffix == ".pkl":
            raise ValueError(f"{path}: a pickled model file; merkit no longer unpickles model files (that "
                             "can run any code). Retrain with this version (it writes model.skops)")
        try:
            untrusted = sio.get_untrusted_types(file=path)
        except Exception as e:  # not a zip, or not skops's layout
            raise ValueError(f"{path}: not a readable merkit classical model ({type(e).__name__}: {e})") from None
        refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
        if refused:
            raise ValueError(f"{path}: refused, it holds types a merkit classical model never does: "
                             f"{', '.join(refused[:5])}")
        try:
            payload = sio.load(path, trusted=list(untrusted))
        except Exception as e:
            raise ValueError(f"{path}: not a readable merkit classical model ({type(e).__name__}: {e})") from None
        if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
            raise ValueError(f"{path}: not a merkit classical model file")
        if payload.get("format_version") != FILE_VERSION:
            raise ValueError(f"{path}: classical model format {payload.get('format_version')}, "
                             f"this merkit reads {FILE_VERSION}")
        saved = payload["versions"].get("sklearn")
        if saved != sklearn.__version__:
            warnings.warn(f"{path}: saved with scikit-learn {saved}, loaded with "
                          f"{sklearn.__version__}; predictions may differ", stacklevel=2)
        model = cls(payload["kind"], n_classes=payload["n_classes"], seed=payload["seed"],
                    feature_info=payload["feature_info"])
        model.estimator = payload["estimator"]
        model.chosen = payload["chosen"]
        model.fit_report = payload["fit_report"]
        return model


def _best(scores: list[tuple[float, float]]) -> int:
    """Index of the highest metric, ties broken by the lower loss, then by the first (the more
    regularised model); ``nan`` (e.g. the CCC of a constant prediction) ranks last."""
    def key(i):
        metric, loss = scores[i]
        return (-math.inf if math.isnan(metric) else metric, -math.inf if math.isnan(loss) else -loss, -i)
    return max(range(len(scores)), key=key)


__all__ = ["ClassicalModel", "KINDS", "SVM_C_GRID", "LOGREG_C_GRID", "RIDGE_ALPHA_GRID"]
