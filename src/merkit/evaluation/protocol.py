"""The evaluation protocol: predictions, per-head metrics, seed tables. Task labels and the
splits are :mod:`merkit.data.splits`."""
from __future__ import annotations

import math

import numpy as np

from ..metrics import classification_metrics, regression_metrics

HEADS = ("mel", "coch", "fused", "ensemble")
METRICS = ("acc", "f1", "auc")


def head_metrics(y, outputs: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per head: :func:`classification_metrics` of its probabilities ``(N, C)``, or
    :func:`regression_metrics` of its values ``(N,)``."""
    return {head: (regression_metrics(y, p) if np.ndim(p) == 1 else classification_metrics(y, p))
            for head, p in outputs.items()}


def summarise_seeds(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and sample standard deviation (ddof = 1; 0 for one seed) over seeds of
    ``{head: {metric: value}}`` -> ``{head: {metric: {"mean", "std", "n"}}}``; nan values
    (undefined metrics) are left out of their cell."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for head in per_seed[0] if per_seed else ():
        summary[head] = {}
        for metric in per_seed[0][head]:
            vals = np.array([r[head][metric] for r in per_seed], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            n = len(vals)
            summary[head][metric] = {
                "mean": float(vals.mean()) if n else math.nan,
                "std": float(vals.std(ddof=1)) if n > 1 else (0.0 if n else math.nan),
                "n": n,
            }
    return summary


def format_cell(c: dict) -> str:
    """``mean ± std`` of a :func:`summarise_seeds` cell; ``mean (1 seed)`` when one seed gives no
    spread (a "± 0.0000" would read as a measured zero); ``n/a`` when empty or undefined."""
    if not c or not math.isfinite(c.get("mean", math.nan)):
        return "n/a"
    if c.get("n", 2) == 1:
        return f"{c['mean']:.4f} (1 seed)"
    return f"{c['mean']:.4f} ± {c['std']:.4f}"


def format_table(summary: dict[str, dict[str, dict[str, float]]], *, title: str = "") -> str:
    """A plain-text table: one row per head, ``mean ± std`` per metric."""
    metrics = list(next(iter(summary.values())).keys()) if summary else list(METRICS)
    lines = [title] if title else []
    lines.append(f"{'head':<10}" + "".join(f"{m.upper():>17}" for m in metrics))
    for head, row in summary.items():
        cells = [format_cell(row[m]) for m in metrics]
        lines.append(f"{head:<10}" + "".join(f"{cell:>17}" for cell in cells))
    return "\n".join(lines)
