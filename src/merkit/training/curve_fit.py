"""Fitting the shipped timeline's change detector on medleys (:mod:`merkit.models.curve`).

1. **Logistic weights** on the training medleys: every 2 Hz frame is a sample, positive when it
   lies within ``tolerance`` s of a join between two clips (the middle of the crossfade; the
   medleys' plans are in their manifest), classes balanced; every frame of single songs from the
   corpora's training parts is a negative (:func:`fit_detector`).
2. **Threshold, shortest part, easing and lag** on the validation medleys: the grid point with the
   best mean per-song correlation (valence and arousal averaged) of the curve built with the track
   head, a flat curve counting as r = 0 (it follows nothing), among the points whose curve holds
   still on single real clips (:func:`steadiness` ≤ :data:`STEADY_MAX` on every corpus's
   validation clips, both dimensions; the steadiest point if none does). The medleys alone
   would pick a detector that also splits single songs wherever their texture shifts, and a
   timeline whose curve wanders inside one labelled excerpt is what users saw before.

The test medleys are never looked at here; ``bench/dynamic.py`` scores them once.
"""
from __future__ import annotations

import itertools
import numpy as np

from ..data.manifest import Track
from ..models.curve import SCALES, CurveConfig, change_probability, follow, novelty, part_inputs, pick_changes

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MIN_PARTS = (6.0, 8.0, 10.0)
EASES = (2.0,)  # 0, 2 and 4 s changed validation r by < 0.01 on the first medley run
LAGS = (0.0, 1.5, 3.0)
# the most a curve may move inside one labelled clip: its within-clip standard deviation over
# the spread of track results across clips (issue 23's steadiness target)
STEADY_MAX = 0.25


def joins(track: Track, crossfade: float) -> list[float]:
    """Seconds into a medley where one clip gives way to the next (the crossfades' middles)."""
    out, t0 = [], 0.0
    segs = track.extra.get("segments", [])
    for k, s in enumerate(segs):
        if k > 0:
            out.append(t0 + crossfade / 2)
        t0 += float(s["seconds"]) - crossfade
    return out


def change_labels(times: np.ndarray, join_times: list[float], tolerance: float = 0.5) -> np.ndarray:
    """(T,) 1 where a frame lies within ``tolerance`` s of a join."""
    y = np.zeros(len(times), dtype=int)
    for b in join_times:
        y[np.abs(times - b) <= tolerance + 1e-9] = 1
    return y


def fit_detector(frames: list[np.ndarray], labels: list[np.ndarray], *, pen_dim: int = 200, scales=SCALES,
                 C: float = 1.0, unchanged: list[np.ndarray] = ()) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """(weights, bias, mean, std) of the change logistic on training medleys' frames, plus every
    frame of the single songs ``unchanged`` as a negative: a medley's clips are 5-20 s, so
    without them the detector never sees a song's own sections (verse to chorus, a quiet intro)
    and learns to call those changes too. The standardisation is the medleys' frames'."""
    from sklearn.linear_model import LogisticRegression

    allf = np.concatenate([f[np.isfinite(f).all(1)] for f in frames]).astype(np.float64)
    mean, std = allf.mean(0), allf.std(0)
    std[std < 1e-6] = 1.0
    X = np.concatenate([novelty(f, mean, std, pen_dim=pen_dim, scales=scales) for f in list(frames) + list(unchanged)])
    y = np.concatenate(list(labels) + [np.zeros(len(f), dtype=int) for f in unchanged])
    lr = LogisticRegression(C=C, class_weight="balanced", max_iter=2000).fit(X, y)
    return lr.coef_[0], float(lr.intercept_[0]), mean, std


def per_song_r(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(N, 2) Pearson r per song and dimension: NaN where the target does not move (no r is
    defined), 0 where the prediction is flat (it follows nothing)."""
    from .dynamic_fit import FLAT

    out = np.full(pred.shape[::2], np.nan)
    for i in range(len(pred)):
        for j in range(pred.shape[-1]):
            p, t = pred[i, :, j], true[i, :, j]
            m = np.isfinite(p) & np.isfinite(t)
            if m.sum() < 3 or t[m].std() <= FLAT:
                continue
            out[i, j] = np.corrcoef(p[m], t[m])[0, 1] if p[m].std() > FLAT else 0.0
    return out


def steadiness(clips: dict[str, list[dict]], cfg: CurveConfig, prob_head) -> dict[str, dict[str, float]]:
    """Per corpus and dimension (``"v"``, ``"a"``): the mean within-clip standard deviation of the
    curve's probabilities over the standard deviation of the clips' track results, and the share of
    clips whose curve mean lies within 0.1 of the track result. ``clips``: per corpus, dicts with
    ``frames``, ``tonal``, ``track`` (P valence, P arousal) and ``silent`` (per frame, left out);
    ``prob_head``: inputs (B, D) -> (B, 2) P(positive valence), P(high arousal)."""
    out = {}
    for name, rows in clips.items():
        sd, gap, track = [], [], []
        for r in rows:
            f = r["frames"]
            starts = pick_changes(change_probability(f, cfg), cfg.threshold, cfg.min_part)
            p = follow(prob_head(part_inputs(f, starts, r["tonal"], cfg.pen_dim)), starts, len(f), cfg)
            keep = ~np.asarray(r["silent"], bool)[:len(p)]
            if not keep.any():
                continue
            sd.append(p[keep].std(0))
            gap.append(np.abs(p[keep].mean(0) - np.asarray(r["track"])))
            track.append(r["track"])
        sd, gap, across = np.array(sd), np.array(gap), np.array(track).std(0)
        out[name] = {d: {"steadiness": float(sd[:, j].mean() / across[j]), "within_0.1": float((gap[:, j] <= 0.1).mean())}
                     for j, d in enumerate("va")}
    return out


def select(frames: list[np.ndarray], true: np.ndarray, base: CurveConfig, head, tonal=None, *,
           clips: dict | None = None, prob_head=None, thresholds=THRESHOLDS, min_parts=MIN_PARTS, eases=EASES,
           lags=LAGS) -> tuple[CurveConfig, list[dict]]:
    """The grid point with the best mean per-song r on ``frames`` / ``true`` ((N, T, 2) valence,
    arousal targets) among those steady on ``clips`` (:func:`steadiness`, with ``prob_head``;
    no constraint without clips), and every point's scores. ``head`` gives (B, 2) valence,
    arousal scores."""
    from dataclasses import replace

    probs = [change_probability(f, base) for f in frames]
    rows = []
    for thr, mp in itertools.product(thresholds, min_parts):
        parts = [pick_changes(p, thr, mp) for p in probs]
        outs = [head(part_inputs(f, s, tonal, base.pen_dim)) for f, s in zip(frames, parts)]
        for e, lag in itertools.product(eases, lags):
            cfg = replace(base, threshold=thr, min_part=mp, ease=e, lag=lag)
            pred = np.stack([follow(o, s, len(f), cfg) for o, s, f in zip(outs, parts, frames)])
            r = np.nanmean(per_song_r(pred, true), 0)
            row = {"threshold": thr, "min_part": mp, "ease": e, "lag": lag, "v_r": float(r[0]), "a_r": float(r[1]),
                   "parts": float(np.mean([len(s) for s in parts])), "config": cfg}
            if clips:
                row["clips"] = steadiness(clips, cfg, prob_head)
                row["worst_steadiness"] = max(d["steadiness"] for c in row["clips"].values() for d in c.values())
            rows.append(row)
    steady = [r for r in rows if r.get("worst_steadiness", 0.0) <= STEADY_MAX]
    best = (max(steady, key=lambda r: r["v_r"] + r["a_r"]) if steady
            else min(rows, key=lambda r: r["worst_steadiness"]))
    for r in rows:
        r["chosen"] = r is best
    return best.pop("config"), [{k: v for k, v in r.items() if k != "config"} for r in rows]


__all__ = ["EASES", "LAGS", "MIN_PARTS", "STEADY_MAX", "THRESHOLDS", "steadiness", "change_labels", "fit_detector", "joins", "per_song_r",
           "select"]
