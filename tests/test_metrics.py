"""Known answers for merkit.metrics."""
import math

import numpy as np
import pytest
from scipy import stats

from merkit.metrics import (accuracy, ccc, classification_metrics, f1_positive, macro_f1,
                                       pearson_r, r2, regression_metrics, rmse, roc_auc)


def test_binary_metrics_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    pred = np.array([1, 1, 0, 0, 0, 1, 0, 1])
    assert accuracy(y, pred) == pytest.approx(6 / 8)
    tp, fp, fn = 3, 1, 1
    assert f1_positive(y, pred) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert isinstance(accuracy(y, pred), float)


def test_roc_auc_known_values():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(y, np.full(4, 0.5)) == 0.5
    # one mis-ordered pair of four: AUC 3/4
    assert roc_auc(y, np.array([0.1, 0.6, 0.5, 0.9])) == pytest.approx(0.75)
    # (N, 2) probabilities give the same as the positive column
    p = np.array([0.1, 0.6, 0.5, 0.9])
    assert roc_auc(y, np.stack([1 - p, p], 1)) == pytest.approx(0.75)


def test_undefined_auc_is_nan_not_an_error():
    assert math.isnan(roc_auc(np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9])))


def test_four_class_metrics():
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    proba = np.eye(4)[[0, 1, 2, 3, 1, 1, 2, 3]] * 0.7 + 0.075  # rows sum to 1
    m = classification_metrics(y, proba)
    assert m["acc"] == pytest.approx(7 / 8)
    # per-class F1: class 0: tp 1, fn 1 -> 2/3; class 1: tp 2, fp 1 -> 4/5; classes 2, 3: 1
    assert m["f1"] == pytest.approx((2 / 3 + 4 / 5 + 1 + 1) / 4)
    assert m["f1"] == pytest.approx(macro_f1(y, proba.argmax(1), n_classes=4))
    assert 0.5 < m["auc"] <= 1.0


def test_classification_metrics_binary_uses_positive_class_f1():
    y = np.array([0, 1, 1, 0, 1])
    p1 = np.array([0.2, 0.7, 0.4, 0.1, 0.9])
    m = classification_metrics(y, p1)  # 1-D: probability of class 1
    assert m["acc"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(f1_positive(y, (p1 >= 0.5).astype(int)))
    assert m["auc"] == 1.0


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="probabilities must be"):
        classification_metrics(np.array([0, 1]), np.ones((3, 2)) / 2)
    with pytest.raises(ValueError, match="one length"):
        rmse([1, 2], [1, 2, 3])


def test_regression_metrics_known_answers():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    assert r2(y, y) == 1.0 and ccc(y, y) == pytest.approx(1.0) and rmse(y, y) == 0.0
    assert r2(y, np.full_like(y, y.mean())) == pytest.approx(0.0)
    assert rmse(y, y + 0.5) == pytest.approx(0.5)
    # a constant shift c leaves r at 1 but lowers CCC to 2 var / (2 var + c^2)
    c = 0.8
    assert pearson_r(y, y + c) == pytest.approx(1.0)
    assert ccc(y, y + c) == pytest.approx(2 * y.var() / (2 * y.var() + c ** 2))
    pred = y + rng.normal(size=200)
    assert pearson_r(y, pred) == pytest.approx(stats.pearsonr(y, pred)[0])
    m = regression_metrics(y, pred)
    assert set(m) == {"r2", "pearson", "ccc", "rmse"} and all(isinstance(v, float) for v in m.values())
    assert math.isnan(r2(np.ones(4), np.arange(4.0)))
