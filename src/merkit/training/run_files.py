"""A run folder's files and the helpers every trainer shares (the DAMER loop, the classical
models, the seed runner): names, atomic text/JSON writes, what a checkpoint records about its
data, and the tracks training can use.

::
    RUN/run.json              the settings (for ``merkit train --resume``)
    RUN/results.json          per-seed test metrics, mean ± std per head, the printed table
    RUN/seed_<k>/last.pt      the newest epoch (resumable), best.pt the selected one, log.csv
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..config import TrainConfig
from ..data.memo2496 import FeatureSet
from ..data.splits import Splits, drop_nonfinite
from ..outputs import write_text as write

log = logging.getLogger("merkit.training.loop")

LAST, BEST, LOG_CSV, RESULTS, RUN_JSON = "last.pt", "best.pt", "log.csv", "results.json", "run.json"


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (:func:`merkit.outputs.write_text`)."""

    write(path, text)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=True))


def data_description(fs: FeatureSet, splits: Splits, cfg: TrainConfig,
                     unlabelled: FeatureSet | None) -> dict:
    """What a checkpoint records about its data: source, task, split and its track ids."""
    return {
        "data": str(fs.root) if fs.root else "",
        "n_tracks": len(fs),
        "task": cfg.label,
        "threshold": cfg.threshold,
        "n_classes": cfg.n_classes,
        "split": cfg.split,
        "split_seed": cfg.seed,
        "sizes": splits.sizes(),
        "track_ids": {k: [fs.tracks[i].track_id for i in getattr(splits, k)]
                      for k in ("train", "val", "test")},
        "feature_info": fs.feature_info,
        "normalisation": "per-band mean and std over tracks and frames of the training part",
        "unlabelled": ({"data": str(unlabelled.root) if unlabelled.root else "", "n_tracks": len(unlabelled)}
                       if unlabelled is not None else None),
    }


def usable(fs: FeatureSet, what: str) -> FeatureSet:
    """``fs`` without tracks whose features hold nan/inf (skipped with a warning)."""
    fs, bad = drop_nonfinite(fs)
    if bad:
        log.warning("%s: skipping %d %s track(s) with non-finite features (e.g. %s)",
                    fs.root or "data", len(bad), what, bad[0])
    return fs


__all__ = ["BEST", "LAST", "LOG_CSV", "RESULTS", "RUN_JSON", "data_description", "usable", "write_json", "write_text"]
