"""Metrics (numpy in, float out) and the evaluation protocol (predictions, seed tables); the
splits are :mod:`merkit.data.splits`."""
from .metrics import (accuracy, ccc, classification_metrics, f1_positive, macro_f1, pearson_r, r2,
                      regression_metrics, rmse, roc_auc)
from .protocol import format_table, head_metrics, predict, summarise_seeds

__all__ = ["accuracy", "ccc", "classification_metrics", "f1_positive", "macro_f1", "pearson_r", "r2",
           "regression_metrics", "rmse", "roc_auc", "format_table", "head_metrics", "predict", "summarise_seeds"]
