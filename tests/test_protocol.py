"""The evaluation protocol (merkit.evaluation.protocol): task labels, grouped splits, tables."""
import math

import numpy as np
import pytest

from merkit.data.manifest import Track
from merkit.data.memo2496 import FeatureSet
from merkit.data.splits import drop_nonfinite, make_splits, stratified_group_split, task_labels
from merkit.evaluation.protocol import format_table, summarise_seeds


def featureset(label_a, label_v=None, groups=None, splits=None, quadrants=None):
    n = len(label_a)
    label_a = np.asarray(label_a, dtype=np.float32)
    label_v = np.zeros(n, np.float32) if label_v is None else np.asarray(label_v, dtype=np.float32)
    tracks = [Track(track_id=f"t{i}", label_a=float(label_a[i]), label_v=float(label_v[i]),
                    group=groups[i] if groups is not None else "",
                    split=splits[i] if splits is not None else "",
                    quadrant=quadrants[i] if quadrants is not None else 0) for i in range(n)]
    return FeatureSet(np.zeros((n, 2, 3), np.float32), np.zeros((n, 2, 3), np.float32),
                      label_a, label_v, tracks)


def test_task_labels_binarise_at_the_threshold_and_drop_unknown():
    fs = featureset([-0.5, 0.0, 0.7, np.nan, 0.3])
    idx, y = task_labels(fs, "a")
    assert idx.tolist() == [0, 1, 2, 4] and y.tolist() == [0, 1, 1, 1]
    idx, y = task_labels(fs, "a", threshold=0.5)  # e.g. PMEmo's [0, 1] scale
    assert y.tolist() == [0, 0, 1, 0]


def test_quadrant_labels_from_tracks_or_from_va():
    fs = featureset(label_a=[0.5, 0.5, -0.5, -0.5, np.nan, 0.1], label_v=[0.5, -0.5, -0.5, 0.5, 0.2, 0.1],
                    quadrants=[0, 0, 0, 0, 0, 3])
    idx, y = task_labels(fs, "quadrant")
    # Q1 = +V+A, Q2 = -V+A, Q3 = -V-A, Q4 = +V-A -> classes 0..3; a set quadrant wins
    assert idx.tolist() == [0, 1, 2, 3, 5] and y.tolist() == [0, 1, 2, 3, 2]
    with pytest.raises(ValueError):
        task_labels(fs, "dominance")


def test_grouped_split_keeps_songs_together_and_hits_the_share():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(200), 3)  # 200 songs, 3 clips each
    y = np.repeat(rng.integers(0, 2, 200), 3)
    train, test = stratified_group_split(y, groups, 0.3, seed=1)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(y)
    assert not set(groups[train]) & set(groups[test])
    assert abs(len(test) / len(y) - 0.3) < 0.02
    assert abs(y[test].mean() - y.mean()) < 0.05  # stratified
    again, _ = stratified_group_split(y, groups, 0.3, seed=1)
    other, _ = stratified_group_split(y, groups, 0.3, seed=2)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def test_protocol_splits_are_disjoint_and_validation_comes_from_training():
    rng = np.random.default_rng(0)
    n = 300
    fs = featureset(rng.uniform(-1, 1, n), groups=[f"s{i // 2}" for i in range(n)])
    s = make_splits(fs, "a", seed=3)
    parts = [set(s.train), set(s.val), set(s.test)]
    assert sum(map(len, parts)) == n and len(set.union(*parts)) == n
    songs = {k: {fs.tracks[i].group for i in getattr(s, k)} for k in ("train", "val", "test")}
    assert not songs["train"] & songs["val"] and not songs["train"] & songs["test"]
    assert not songs["val"] & songs["test"]
    assert abs(len(s.test) / n - 0.3) < 0.03
    assert abs(len(s.val) / (n - len(s.test)) - 0.15) < 0.03
    idx, y = task_labels(fs, "a")
    np.testing.assert_array_equal(s.y_test, y[np.searchsorted(idx, s.test)])


def test_official_split_is_used_and_validation_carved_when_missing():
    n = 60
    split = ["train"] * 40 + ["test"] * 20
    fs = featureset(np.linspace(-1, 1, n), splits=split)
    s = make_splits(fs, "a", mode="official", val_size=0.2, seed=0)
    assert set(s.test) == set(range(40, 60))
    assert set(s.train) | set(s.val) == set(range(40)) and len(s.val) == 8
    fs = featureset(np.linspace(-1, 1, n), splits=["train"] * 30 + ["val"] * 10 + ["test"] * 20)
    s = make_splits(fs, "a", mode="official", seed=0)
    assert set(s.val) == set(range(30, 40)) and len(s.train) == 30
    with pytest.raises(ValueError, match="official"):
        make_splits(featureset(np.linspace(-1, 1, 10)), "a", mode="official")


def test_seed_summary_and_table():
    per_seed = [{"ensemble": {"acc": a, "f1": 0.5, "auc": auc}}
                for a, auc in ((0.8, 0.9), (0.9, math.nan), (1.0, 0.7))]
    s = summarise_seeds(per_seed)
    assert s["ensemble"]["acc"]["mean"] == pytest.approx(0.9)
    assert s["ensemble"]["acc"]["std"] == pytest.approx(0.1)  # sample std, ddof = 1
    assert s["ensemble"]["f1"]["std"] == 0.0
    assert s["ensemble"]["auc"]["n"] == 2 and s["ensemble"]["auc"]["mean"] == pytest.approx(0.8)
    table = format_table(s, title="T")
    assert table.splitlines()[0] == "T" and "0.9000 ± 0.1000" in table and "ACC" in table


def test_tracks_with_nonfinite_features_are_dropped():
    fs = featureset(np.linspace(-1, 1, 7))
    fs.mel[2, 1, 0] = np.nan
    fs.coch[5, 0, 2] = np.inf
    kept, bad = drop_nonfinite(fs, chunk=3)  # chunks of 3 cross the bad rows
    assert bad == ["t2", "t5"]
    assert [t.track_id for t in kept.tracks] == ["t0", "t1", "t3", "t4", "t6"]
    assert np.isfinite(kept.mel).all() and len(kept.label_a) == 5
    same, none = drop_nonfinite(kept)
    assert same is kept and none == []


def test_table_cells_show_a_spread_only_when_there_is_one():
    from merkit.evaluation.protocol import format_cell, summarise_seeds

    one = summarise_seeds([{"fused": {"acc": 0.75}}])["fused"]["acc"]
    two = summarise_seeds([{"fused": {"acc": 0.75}}, {"fused": {"acc": 0.25}}])["fused"]["acc"]
    assert format_cell(one) == "0.7500 (1 seed)"
    assert format_cell(two) == "0.5000 ± 0.3536"
    assert format_cell({}) == "n/a"


def test_one_class_labels_are_refused():
    """All tracks in one class would "train" to ACC 1.000: refused with the reason."""
    fs = featureset(np.linspace(0.1, 0.9, 100), groups=[f"g{i}" for i in range(100)])  # all high arousal
    with pytest.raises(ValueError, match=r"one 'a' class .*nothing to learn"):
        make_splits(fs, "a")
    # the same labels split at another threshold are two classes and train
    assert len(make_splits(fs, "a", threshold=0.5).test) > 0


def test_a_small_set_with_every_class_rarer_than_the_folds_still_splits():
    """Every class has fewer members than the 20 folds (scikit-learn refuses that): fewer folds,
    a valid split that keeps groups whole."""
    from merkit.data.splits import stratified_group_split

    y = np.repeat([0, 1, 2, 3, 4], 8)
    groups = np.arange(40) // 2
    train, test = stratified_group_split(y, groups, 0.2, seed=0)
    assert len(test) and len(train) and len(set(train) | set(test)) == 40 and not set(train) & set(test)
    assert not set(groups[train]) & set(groups[test])
