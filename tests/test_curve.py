"""The shipped 2 Hz timeline (merkit.models.curve, merkit.training.curve_fit): change points on
synthetic frames, the part pooling in the track model's layout, easing and lag, fitting on
synthetic medleys, and the predictor's curve (streamed and whole, self-check, outputs)."""
import dataclasses

import numpy as np
import pytest

from conftest import melody
from merkit.data.manifest import Track
from merkit.models import curve as C
from merkit.training import curve_fit as F

D, PEN = 12, 4  # small frames: 4 "penultimate" values, 8 "mid-end" values


def _cfg(**kw) -> C.CurveConfig:
    """A detector that fires on distance alone (equal weights on every log distance)."""
    base = dict(weights=(1.0,) * C.N_NOVELTY, bias=6.0, mean=(0.0,) * D, std=(1.0,) * D, pen_dim=PEN,
                threshold=0.5, min_part=4.0, ease=0.0, lag=0.0)
    return C.CurveConfig(**{**base, **kw})


def _steps(levels, lengths, noise=0.05, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.full((n, D), v) for v, n in zip(levels, lengths)]) + noise * rng.standard_normal(
        (sum(lengths), D))


def test_change_found_where_the_frames_step_and_nowhere_in_steady_frames():
    f = _steps([0.0, 2.0], [40, 40])
    p = C.change_probability(f, _cfg())
    assert int(np.argmax(p)) == 40  # the first frame of the new part
    assert C.pick_changes(p, 0.5, 4.0) == [0, 40]
    steady = _steps([1.0], [80])
    assert C.change_probability(steady, _cfg()).max() < 0.5
    assert C.pick_changes(C.change_probability(steady, _cfg()), 0.5, 4.0) == [0]


def test_pick_changes_keeps_parts_apart_and_off_the_ends():
    p = np.zeros(40)
    p[[2, 10, 12, 30, 38]] = [0.99, 0.9, 0.95, 0.8, 0.99]
    # min_part 3 s = 6 frames: 2 and 38 are too near the ends, 10 too near the stronger 12
    assert C.pick_changes(p, 0.5, 3.0) == [0, 12, 30]
    assert C.pick_changes(p, 0.85, 3.0) == [0, 12]


def test_pooled_parts_has_the_track_models_layout():
    f = np.zeros((10, D))
    f[:, :PEN] = np.arange(10)[:, None]  # penultimate values 0..9 over time
    f[:, PEN:] = 3.0
    x = C.pooled_parts(f, [0, 4], PEN)
    assert x.shape == (2, 2 * D)
    # [pen mean, pen std, mid mean, mid std]
    np.testing.assert_allclose(x[0, :PEN], 1.5)
    np.testing.assert_allclose(x[0, PEN:2 * PEN], np.std([0, 1, 2, 3]), rtol=1e-6)
    np.testing.assert_allclose(x[1, 2 * PEN:2 * PEN + D - PEN], 3.0)
    np.testing.assert_allclose(x[1, 2 * PEN + D - PEN:], 0.0)


def test_local_pooled_matches_pooling_each_window_directly():
    f = np.random.default_rng(1).standard_normal((30, D))
    got = C.local_pooled(f, 2.0, PEN)  # 4 frames each side
    for t in (0, 3, 15, 29):
        want = C.pooled_parts(f[max(0, t - 4):t + 5], [0], PEN)[0]
        np.testing.assert_allclose(got[t], want, rtol=1e-5, atol=1e-6)


def test_eased_and_lagged_known_values():
    v = np.array([[0.0], [1.0]])
    step = C.eased(v, [0, 10], 20, 0.0)
    assert step[:10].max() == 0 and step[10:].min() == 1
    ramp = C.eased(v, [0, 10], 20, 2.0)  # the change at 4.75 s, eased over 3.75-5.75 s
    t = 0.5 * np.arange(20)
    np.testing.assert_allclose(ramp[:, 0], np.clip((t - 3.75) / 2.0, 0, 1))
    lag = C.lagged(step, 3.0)
    np.testing.assert_allclose(lag[:10], 0.0)
    # a first-order lag of 3 s: 1 - exp(-3 / 3) of the step 3 s (6 frames) after it
    assert lag[10 + 5, 0] == pytest.approx(1 - np.exp(-3.0 / 3.0), abs=1e-9)
    cfg = _cfg(ease=2.0, lag=3.0)
    np.testing.assert_allclose(C.follow(v, [0, 10], 20, cfg), C.lagged(ramp, 3.0))


def test_config_round_trips_through_a_dict():
    cfg = _cfg(fitted_on={"train": 3})
    assert C.CurveConfig.from_dict(cfg.to_dict()) == cfg


def _medley_tracks(n, rng):
    tracks, frames = [], []
    for i in range(n):
        secs = rng.uniform(6, 15, size=4)
        segs = [{"seconds": float(s), "source": "x", "track": str(k), "offset": 0.0} for k, s in enumerate(secs)]
        t = Track(track_id=f"m{i}", path="", extra={"segments": segs})
        lengths, levels = [], rng.normal(0, 1.5, size=(4, D))
        edges = [0] + [int(round(j / 0.5 + 0.5)) for j in F.joins(t, 1.0)] + [120]
        f = np.concatenate([np.tile(levels[k], (edges[k + 1] - edges[k], 1)) for k in range(4)])
        frames.append(f + 0.3 * rng.standard_normal(f.shape))
        tracks.append(t)
    return tracks, frames


def test_joins_and_labels_of_a_medley_plan():
    t = Track(track_id="m", path="", extra={"segments": [{"seconds": 10.0}, {"seconds": 8.0}, {"seconds": 5.0}]})
    assert F.joins(t, 1.0) == pytest.approx([9.5, 16.5])  # the crossfades' middles
    y = F.change_labels(0.5 * np.arange(40), F.joins(t, 1.0))
    assert np.flatnonzero(y).tolist() == [18, 19, 20, 32, 33, 34]


def test_fitted_detector_finds_held_out_joins():
    rng = np.random.default_rng(0)
    tracks, frames = _medley_tracks(40, rng)
    times = 0.5 * np.arange(120)
    w, b, mean, std = F.fit_detector(frames[:30], [F.change_labels(times, F.joins(t, 1.0)) for t in tracks[:30]],
                                     pen_dim=PEN)
    cfg = C.CurveConfig(weights=tuple(w), bias=b, mean=tuple(mean), std=tuple(std), pen_dim=PEN, threshold=0.5,
                        min_part=4.0)
    hits = total = 0
    for t, f in zip(tracks[30:], frames[30:]):
        found = C.pick_changes(C.change_probability(f, cfg), cfg.threshold, cfg.min_part)[1:]
        want = [j / 0.5 for j in F.joins(t, 1.0)]
        hits += sum(any(abs(g - j) <= 2 for g in found) for j in want)
        total += len(want)
        assert len(found) <= len(want) + 1
    assert hits >= 0.9 * total


def test_single_songs_teach_the_detector_what_is_not_a_change():
    """Medley joins move every frame value; a song's own sections move only the mid-end values.
    Shown such songs as negatives, the detector is less sure of a section change (the hard
    negatives are few: a handful of frames per song) and still finds the joins."""
    rng = np.random.default_rng(2)
    tracks, frames = _medley_tracks(30, rng)
    times = 0.5 * np.arange(120)
    labels = [F.change_labels(times, F.joins(t, 1.0)) for t in tracks]

    def song():
        f = np.full((60, D), rng.normal(0, 1.5)) + 0.3 * rng.standard_normal((60, D))
        f[30:, PEN:] += rng.normal(0, 1.5, D - PEN)
        return f

    songs = [song() for _ in range(100)]
    held_out = song()

    def detector(unchanged):
        w, b, mean, std = F.fit_detector(frames, labels, pen_dim=PEN, unchanged=unchanged)
        return C.CurveConfig(weights=tuple(w), bias=b, mean=tuple(mean), std=tuple(std), pen_dim=PEN)

    plain, taught = detector([]), detector(songs)
    at = slice(29, 32)
    assert C.change_probability(held_out, taught)[at].max() < C.change_probability(held_out, plain)[at].max() - 0.2
    join = int(round(F.joins(tracks[0], 1.0)[0] / 0.5 + 0.5))
    assert C.change_probability(frames[0], taught)[join - 1:join + 2].max() > 0.5


def test_selection_prefers_the_settings_that_follow_the_targets():
    """With a head that reads the part's level, the grid picks a threshold that finds the parts:
    its r beats the one-part (flat) curve's 0."""
    rng = np.random.default_rng(3)
    tracks, frames = _medley_tracks(12, rng)
    times = 0.5 * np.arange(120)
    w, b, mean, std = F.fit_detector(frames, [F.change_labels(times, F.joins(t, 1.0)) for t in tracks], pen_dim=PEN)
    base = C.CurveConfig(weights=tuple(w), bias=b, mean=tuple(mean), std=tuple(std), pen_dim=PEN)
    true = []
    for t, f in zip(tracks, frames):
        edges = [0] + [int(round(j / 0.5 + 0.5)) for j in F.joins(t, 1.0)] + [120]
        lv = np.concatenate([np.full(edges[k + 1] - edges[k], f[edges[k]:edges[k + 1], 0].mean()) for k in range(4)])
        true.append(np.stack([lv, -lv], -1))

    def head(x):  # valence = the part's mean first value, arousal its negative
        return np.stack([x[:, 0], -x[:, 0]], 1)

    best, rows = F.select(frames, np.stack(true), base, head, None, thresholds=(0.5, 1.01), min_parts=(4.0,),
                          eases=(0.0,), lags=(0.0,))
    assert best.threshold == 0.5
    by_thr = {r["threshold"]: r for r in rows}
    assert by_thr[0.5]["v_r"] > 0.9 and by_thr[1.01]["v_r"] == 0.0  # 1.01: no change, flat curve, r 0


def test_steadiness_constraint_overrules_the_medleys():
    """Single clips whose texture shifts halfway, with one label each: a detector that splits them
    moves the curve inside the clip. With the clips given, the selection takes the threshold that
    keeps them whole, though the medleys alone prefer the lower one."""
    rng = np.random.default_rng(5)
    tracks, frames = _medley_tracks(12, rng)
    times = 0.5 * np.arange(120)
    w, b, mean, std = F.fit_detector(frames, [F.change_labels(times, F.joins(t, 1.0)) for t in tracks], pen_dim=PEN)
    base = C.CurveConfig(weights=tuple(w), bias=b, mean=tuple(mean), std=tuple(std), pen_dim=PEN)
    true = np.stack([np.stack([f[:, 0], -f[:, 0]], -1) for f in frames])

    def head(x):
        return np.stack([x[:, 0], -x[:, 0]], 1)

    def prob_head(x):
        return 1 / (1 + np.exp(-head(x)))

    clips = []
    for k in range(20):  # a level per clip, and a texture shift in the values the head ignores
        lv = rng.normal(0, 1)
        f = np.full((60, D), lv) + 0.05 * rng.standard_normal((60, D))
        f[30:, 1:] += 2.0 * rng.standard_normal(D - 1)
        f[:30, 0] -= 1.0  # the head hears the shift: a split moves the curve
        clips.append({"frames": f, "tonal": None, "track": tuple(prob_head(f[:, :1].mean(0, keepdims=True).repeat(
            2 * D, 1))[0]), "silent": [False] * 60})
    free, rows = F.select(frames, true, base, head, None, thresholds=(0.5, 1.01), min_parts=(4.0,), eases=(0.0,),
                          lags=(0.0,))
    assert free.threshold == 0.5
    held, rows = F.select(frames, true, base, head, None, clips={"x": clips}, prob_head=prob_head,
                          thresholds=(0.5, 1.01), min_parts=(4.0,), eases=(0.0,), lags=(0.0,))
    by = {r["threshold"]: r for r in rows}
    assert by[0.5]["worst_steadiness"] > F.STEADY_MAX >= by[1.01]["worst_steadiness"] == 0.0
    assert held.threshold == 1.01 and by[1.01]["chosen"] and not by[0.5]["chosen"]


def test_per_song_r_flat_prediction_is_zero_and_flat_target_undefined():
    t = np.linspace(-1, 1, 20)
    true = np.stack([np.stack([t, np.zeros(20)], -1)])
    pred = np.stack([np.stack([np.zeros(20), t], -1)])
    r = F.per_song_r(pred, true)
    assert r[0, 0] == 0.0 and np.isnan(r[0, 1])


# -- the shipped model's curve ---------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    from merkit.predict import load_model

    m = load_model()
    assert m.timeline_mode == "curve" and m.curve is not None  # the shipped model has its timeline
    return m


SR = 44_100


def test_shipped_curve_is_2hz_consistent_and_self_checks(model):
    y = melody(30.0, SR, seed=4)
    res = model._predictions(model.features(y, SR, timeline=True))
    track, tl = res
    assert len(tl) == 60 and tl[0].start == pytest.approx(0.0) and tl[1].start == pytest.approx(0.5)
    for p in tl:
        assert p.quadrant == ((1 if p.valence_score >= 0 else 2) if p.arousal_score >= 0 else
                              (4 if p.valence_score >= 0 else 3))
        assert (p.arousal >= 0.5) == (p.arousal_score >= 0) and 0 <= p.arousal_band <= 0.5
    assert model.check() <= 0.02
    # the sliding windows stay available, and the self-check still reads the model's own timeline
    model.timeline_mode = "windows"
    try:
        wins = model._predictions(model.features(y, SR, timeline=True))[1]
        assert [w.start for w in wins] == [0.0, 5.0, 10.0, 15.0, 20.0] and wins[0].arousal_band is None
        assert model.check() <= 0.02
    finally:
        model.timeline_mode = "curve"


def test_steady_music_gives_one_part_whose_mean_is_the_track_result(model):
    """One 5 s phrase played six times (30 s, looped to fill the track window): the curve holds
    one value (no change detected), within 0.1 of the track result."""
    y = np.tile(melody(5.0, SR, seed=11), 6)
    feats = model.features(y, SR, timeline=True)
    assert feats["curve"]["starts"] == [0]
    track, tl = model._predictions(feats)
    a = np.array([p.arousal for p in tl])
    assert a.std() < 1e-9 and abs(a.mean() - track.arousal) < 0.1


def _drums(seconds, seed=0):
    """Noise bursts four times a second (a hi-hat-like pulse)."""
    rng = np.random.default_rng(seed)
    y, n = np.zeros(int(seconds * SR)), int(0.08 * SR)
    for k in range(int(seconds * 4)):
        a = int(k * SR / 4)
        y[a:a + n] += 0.5 * rng.standard_normal(n) * np.exp(-np.arange(n) / (0.02 * SR))
    return y


def test_a_change_in_the_music_moves_the_curve_at_the_change(model):
    """A quiet piece, then a loud one over a pulse: the one change found is at the join (30 s),
    and the two parts' outputs differ."""
    y = np.concatenate([0.05 * melody(30.0, SR, seed=2), melody(30.0, SR, seed=8) + _drums(30.0)]).astype(np.float32)
    c = model.features(y, SR, timeline=True)["curve"]
    assert c["starts"] == [0, 60]
    va = c["outputs"]["va"]
    assert np.abs(va[50] - va[-1]).max() > 0.05 and np.abs(va[:55] - va[0]).max() < 1e-9


def test_streamed_curve_matches_one_pass(model, monkeypatch):
    """The curve of a 70 s track read 20 s of cells at a time, in 13 s blocks, against one
    segment: the 3 s margins give every patch its whole-track context."""
    y = np.concatenate([melody(35.0, SR, seed=s) for s in (5, 6)])
    whole = model._features_of(model._track_window(y, "x"), [y], "x")["curve"]
    monkeypatch.setattr(type(model), "curve_segment_frames", 40)
    blocks = [y[i:i + 13 * SR] for i in range(0, len(y), 13 * SR)]
    parts = model._features_of(model._track_window(y, "x"), blocks, "x")["curve"]
    np.testing.assert_allclose(parts["times"], whole["times"])
    assert parts["starts"] == whole["starts"]
    for k in whole["outputs"]:
        np.testing.assert_allclose(parts["outputs"][k], whole["outputs"][k], rtol=0, atol=1e-4)


def test_curve_needs_a_musicnn_model(model):
    other = dataclasses.replace(model.net.cfg, inputs=("musicnn_vgg",))
    from merkit.models.unified import UnifiedMER
    from merkit.predictors.unified import UnifiedModel

    m = UnifiedModel(UnifiedMER(other))
    with pytest.raises(ValueError, match="musicnn"):
        m.set_curve(model.curve)
