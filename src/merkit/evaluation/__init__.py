"""Metrics (numpy in, float out) and the evaluation protocol (splits, predictions, seed tables)."""
from .metrics import (accuracy, ccc, classification_metrics, f1_positive, macro_f1, pearson_r, r2,
                      regression_metrics, rmse, roc_auc)
from .protocol import (Splits, format_table, head_metrics, make_splits, predict,
                       stratified_group_split, summarise_seeds, task_labels)

__all__ = ["accuracy", "ccc", "classification_metrics", "f1_positive", "macro_f1", "pearson_r", "r2",
           "regression_metrics", "rmse", "roc_auc", "Splits", "format_table", "head_metrics",
           "make_splits", "predict", "stratified_group_split", "summarise_seeds", "task_labels"]
