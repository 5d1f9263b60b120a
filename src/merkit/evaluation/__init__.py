"""The evaluation protocol (predictions, per-head metrics, seed tables), model comparisons and
ablations. The metrics themselves (numpy in, float out) are :mod:`merkit.metrics`; the splits
:mod:`merkit.data.splits`."""
from .protocol import format_table, head_metrics, summarise_seeds

__all__ = ["format_table", "head_metrics", "summarise_seeds"]
