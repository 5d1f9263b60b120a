"""Medleys of labelled clips (merkit.data.medley): targets follow the segments, the lag is a
first-order response, no clip (or song) is in two splits, and the audio is what was planned."""
import json

import numpy as np
import pytest
import soundfile as sf

from conftest import melody
from merkit.data.manifest import Track, read_manifest
from merkit.data.medley import MedleyConfig, make_medleys, plan, split_clips, target_curves

SR = 22_050


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    tracks = []
    for i in range(24):
        p = d / f"c{i}.wav"
        sf.write(p, melody(25.0, SR, seed=i), SR)
        v, a = rng.uniform(-1, 1, 2)
        tracks.append(Track(track_id=f"c{i}", path=str(p), source="emotify" if (i // 2) % 2 else "mirex_mood",
                            label_a=float(a), label_v=float(v), group=f"song{i // 2}"))
    return tracks


def test_targets_follow_the_segments():
    cfg = MedleyConfig(seconds=30.0, min_segment=5.0, max_segment=10.0, crossfade=1.0, lag_seconds=0.0)
    labels = np.array([[0.5, -0.5], [-0.8, 0.2], [0.1, 0.9]])
    segs = [{"clip": 0, "offset": 0.0, "seconds": 10.0}, {"clip": 1, "offset": 0.0, "seconds": 11.0},
            {"clip": 2, "offset": 0.0, "seconds": 11.0}]  # 10 + 11 + 11 - 2 crossfades = 30 s
    v, a = target_curves(segs, labels, cfg)
    assert v.shape == a.shape == (60,)
    t = np.arange(60) * 0.5
    # the steps sit at the crossfades' midpoints: 9.5 s and 19.5 s
    for lo, hi, k in ((0, 9.5, 0), (9.5, 19.5, 1), (19.5, 30, 2)):
        m = (t >= lo) & (t < hi)
        assert np.allclose(v[m], labels[k, 0]) and np.allclose(a[m], labels[k, 1])
    # with a lag, the curve moves 1 - 1/e of the way one time constant after a step
    lagged, _ = target_curves(segs, labels, MedleyConfig(**{**cfg.__dict__, "lag_seconds": 3.0}))
    k = int((9.5 + 3.0) / 0.5)
    frac = (lagged[k] - labels[0, 0]) / (labels[1, 0] - labels[0, 0])
    assert frac == pytest.approx(1 - np.exp(-1), abs=0.02)
    assert lagged[0] == pytest.approx(labels[0, 0])


def test_plan_fills_the_medley(clips):
    cfg = MedleyConfig(seconds=40.0, min_segment=5.0, max_segment=12.0)
    rng = np.random.default_rng(1)
    durations = np.full(len(clips), 25.0)
    for _ in range(20):
        segs = plan(rng, np.arange(len(clips)), durations, cfg)
        total = sum(s["seconds"] for s in segs) - cfg.crossfade * (len(segs) - 1)
        assert total == pytest.approx(40.0)
        assert all(5.0 - 1e-9 <= s["seconds"] <= 25.0 and s["offset"] + s["seconds"] <= 25.0 + 1e-9 for s in segs)
        assert len({s["clip"] for s in segs}) == len(segs)  # a clip once per medley


def test_no_clip_or_song_in_two_splits(clips, tmp_path):
    cfg = MedleyConfig(n_medleys=12, seconds=20.0, min_segment=5.0, max_segment=8.0, sample_rate=SR,
                       val_size=0.25, test_size=0.25, seed=3)
    rows = make_medleys(clips, tmp_path / "m", cfg)
    assert len(rows) == 12 and {r.split for r in rows} == {"train", "val", "test"}
    by_split = {}
    group = {t.track_id: t.group for t in clips}
    for r in rows:
        by_split.setdefault(r.split, set()).update(s["track"] for s in r.extra["segments"])
    for a in by_split:
        for b in by_split:
            if a < b:
                assert not by_split[a] & by_split[b]
                assert not {group[x] for x in by_split[a]} & {group[x] for x in by_split[b]}
    # the files: audio of the planned length, targets (N, T), a manifest that reads back
    y, sr = sf.read(rows[0].path)
    assert sr == SR and len(y) == 20 * SR and np.abs(y).max() <= 0.9 + 1e-4
    dyn = np.load(tmp_path / "m" / "labels" / "dyn_a.npy")
    assert dyn.shape == (12, 40) and np.isfinite(dyn).all()
    back = read_manifest(tmp_path / "m" / "tracks.csv")
    assert [t.track_id for t in back] == [r.track_id for r in rows]
    assert back[0].label_a == pytest.approx(float(dyn[0].mean()), abs=1e-6)
    assert json.loads((tmp_path / "m" / "medleys.json").read_text())["config"]["seed"] == 3
    # seeded: the same call gives the same medleys
    again = make_medleys(clips, tmp_path / "m2", cfg)
    assert [r.extra for r in again] == [r.extra for r in rows]
    assert np.array_equal(np.load(tmp_path / "m2" / "labels" / "dyn_v.npy"),
                          np.load(tmp_path / "m" / "labels" / "dyn_v.npy"))


def test_split_is_by_group(clips):
    parts = split_clips(clips, MedleyConfig(val_size=0.2, test_size=0.2))
    seen = {}
    for name, idx in parts.items():
        for i in idx:
            assert seen.setdefault(clips[i].group, name) == name
    assert sum(len(v) for v in parts.values()) == len(clips)


def test_given_test_clips_make_the_test_split(clips, tmp_path):
    test_ids = {f"{clips[i].source}:{clips[i].track_id}" for i in (0, 5)}
    cfg = MedleyConfig(n_medleys=10, seconds=20.0, min_segment=5.0, max_segment=8.0, sample_rate=SR,
                       val_size=0.2, test_size=0.2)
    parts = split_clips(clips, cfg, test_ids)
    test_groups = {clips[i].group for i in parts["test"]}
    assert test_groups == {clips[0].group, clips[5].group}  # the given clips' songs, whole
    rows = make_medleys(clips, tmp_path / "m", cfg, test_ids=test_ids)
    used = {s["track"] for r in rows if r.split == "test" for s in r.extra["segments"]}
    assert used <= {clips[i].track_id for i in parts["test"]}
