"""Task labels and train/validation/test splits (the paper's protocol).

Arousal and valence are separate binary tasks (label >= threshold is class 1); ``quadrant`` is a
4-class task (Russell quadrants 1..4 become classes 0..3). Splits follow the paper: a
stratified 70/30 train/test split, grouped by song (``Track.group``) so that no song has clips
on both sides; or the dataset's official split. The validation part that selects the model is
always carved from the training part, never taken from the test part.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from .manifest import quadrant_from_va
from .memo2496 import FeatureSet

# Splits are assembled from this many stratified group folds, so shares are exact in steps of
# 1/20 = 5 % (the paper's 30 % test and our 15 % validation are both multiples).
MAX_FOLDS = 20


def task_labels(fs: FeatureSet, label: str, threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Class labels of a task for the tracks whose label is known.

    Returns ``(index, y)``: positions in ``fs`` of the usable tracks and their int64 classes.
    ``label``: ``"a"`` / ``"v"`` (1 if value >= ``threshold``) or ``"quadrant"`` (the track's
    ``quadrant`` when set, else from ``(label_v, label_a)`` around ``threshold``; class = Q - 1).
    """
    if label in ("a", "v"):
        values = fs.labels(label)
        known = np.isfinite(values)
        idx = np.flatnonzero(known)
        return idx, (values[idx] >= threshold).astype(np.int64)
    if label != "quadrant":
        raise ValueError(f"label must be 'a', 'v' or 'quadrant', got {label!r}")
    q = np.array([t.quadrant or quadrant_from_va(float(v) - threshold, float(a) - threshold)
                  for t, v, a in zip(fs.tracks, fs.label_v, fs.label_a)], dtype=np.int64)
    idx = np.flatnonzero(q > 0)
    return idx, q[idx] - 1


def drop_nonfinite(fs: FeatureSet, *, chunk: int = 256) -> tuple[FeatureSet, list[str]]:
    """``fs`` without the tracks whose features hold nan or inf (a failed extraction), and the
    ids of the tracks left out. Reads the arrays in chunks, so memory maps stay cheap."""
    bad = []
    for s in range(0, len(fs), chunk):
        mel = np.asarray(fs.mel[s:s + chunk])
        coch = np.asarray(fs.coch[s:s + chunk])
        ok = np.isfinite(mel).all(axis=(1, 2)) & np.isfinite(coch).all(axis=(1, 2))
        bad.extend(s + np.flatnonzero(~ok))
    if not bad:
        return fs, []
    keep = np.setdiff1d(np.arange(len(fs)), bad)
    return fs.subset(keep), [fs.tracks[i].track_id for i in bad]


def track_groups(fs: FeatureSet, idx=None) -> np.ndarray:
    """Song id of each track (``group``, falling back to ``track_id``: a track is its own song)."""
    tracks = fs.tracks if idx is None else [fs.tracks[i] for i in idx]
    return np.array([t.group or t.track_id for t in tracks])


def stratified_group_split(y, groups, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..N-1`` into ``(train, test)``, stratified by ``y`` and never cutting
    a group; the test share is ``test_size`` up to the fold resolution (1/20) and the class and
    group balance that grouping allows. Deterministic for a given ``seed``."""
    y = np.asarray(y)
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"cannot split {n_groups} group(s) into train and test")
    # scikit-learn refuses more folds than the largest class has members (a small corpus): fewer,
    # coarser folds then (sets that split before keep their folds)
    n_splits = min(MAX_FOLDS, n_groups, max(2, int(np.unique(y, return_counts=True)[1].max())))
    k = min(max(int(round(test_size * n_splits)), 1), n_splits - 1)
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Small sets have classes rarer than n_splits; the folds are still valid groupings.
        warnings.simplefilter("ignore", UserWarning)
        folds = [test for _, test in sgkf.split(np.zeros(len(y)), y, groups)]
    test = np.sort(np.concatenate(folds[:k]))
    train = np.setdiff1d(np.arange(len(y)), test)
    return train, test


@dataclass
class Splits:
    """Positions in the FeatureSet of each part, and the task labels of each part."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    y_train: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def make_splits(fs: FeatureSet, label: str, *, threshold: float = 0.0, mode: str = "protocol",
                test_size: float = 0.3, val_size: float = 0.15, seed: int = 0,
                regression: bool = False) -> Splits:
    """Train/validation/test parts for one task and seed.

    ``mode="protocol"``: stratified, song-grouped ``1 - test_size`` / ``test_size`` split, then
    ``val_size`` of the training part (stratified, grouped) for validation. ``mode="official"``:
    the tracks' ``split`` field (``train`` / ``val`` / ``test``); without official validation
    tracks, ``val_size`` of the official training part is carved out instead. ``val_size=0``
    gives an empty validation part.
    """
    idx, y = task_labels(fs, label, threshold)
    if len(idx) == 0:
        where = f" in {fs.root}" if fs.root else ""
        raise ValueError(f"no track{where} has a known {label!r} label")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2 and not regression:
        where = f" in {fs.root}" if fs.root else ""
        raise ValueError(f"every labelled track{where} ({len(idx)}) is in one {label!r} class ({classes[0]}), "
                         f"with threshold {threshold:g}: there is nothing to learn, and accuracy would be "
                         "1.000. Check the labels (and --threshold)")
    groups = track_groups(fs, idx)
    if mode == "protocol":
        train, test = stratified_group_split(y, groups, test_size, seed)
        val = np.array([], dtype=np.int64)
    elif mode == "official":
        split = np.array([fs.tracks[i].split for i in idx])
        train, val, test = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
        if len(train) == 0 or len(test) == 0:
            where = f"{fs.root}: " if fs.root else ""
            raise ValueError(f"{where}--split official needs tracks marked 'train' and 'test' "
                             f"(found {len(train)} train, {len(test)} test)")
    else:
        raise ValueError(f"split mode must be 'protocol' or 'official', got {mode!r}")
    if len(val) == 0 and val_size > 0:
        tr, va = stratified_group_split(y[train], groups[train], val_size, seed)
        train, val = train[tr], train[va]
    if regression:
        if label not in ("a", "v"):
            raise ValueError(f"regression needs a continuous label (a or v), got {label!r}")
        y = fs.labels(label)[idx].astype(np.float32)
    return Splits(train=idx[train], val=idx[val], test=idx[test],
                  y_train=y[train], y_val=y[val], y_test=y[test])


__all__ = ["MAX_FOLDS", "Splits", "drop_nonfinite", "make_splits", "stratified_group_split", "task_labels",
           "track_groups"]
