"""The shipped timeline: a 2 Hz curve that holds still within a passage and moves where the music
changes (issue 23, section 3).

::
    frames at 2 Hz (musicnn's 3 s patch centred on each time: penultimate 200 + mid-end 753)
      ──novelty: distance between the mean frames before and after t, at 3 scales──> (T, 6)
      ──logistic, trained on medleys' known joins──> P(change at t)
      ──peaks above `threshold`, at least `min_part` s apart──> parts
      ──each part's frames pooled [mean, std] = the track model's musicnn input──> the track head
      ──eased across each change over `ease` s, lagged like a listener (`lag` s)──> the curve
      the spread of the 10 s windows' results inside each part ──> the curve's band

Why this shape and not a sequence network on frames: the track head was trained on thousands of
labelled clips, a frame network on a few hundred medleys. A DSAML on frames (bench/dynamic.py)
follows the medleys' steps less well than the track head applied to whole passages, and its curve
wanders inside a steady clip; here a steady clip is one part, so its curve is flat and its mean is
the track head's answer on (nearly) the same audio. What is learned from the medleys is where the
music changes: the logistic weights, the threshold, the shortest part and the easing
(:mod:`merkit.training.curve_fit`, on the training and validation medleys).

**Lag.** The curve answers "what would a listener rating the music continuously report now":
raters trail the music by 2-4 s (the medleys' targets model this with a 3 s first-order lag,
as DEAM's and PMEmo's curves show it), so the curve is passed through the same kind of lag,
its time constant chosen on the validation medleys with the rest. ``lag = 0`` gives a curve
that moves at the change itself.

Pooling over the 2 Hz patches (which overlap by 2.5 s) instead of the track window's consecutive
3 s patches: the same patches at finer offsets, so the mean is the same estimate with less noise
and the standard deviation nearly the same. The part's tonal view is the track window's: the
head barely uses it (test correlations change by < 0.03 without it) and it needs a chord
analysis the parts would otherwise repeat.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

HOP_SECONDS = 0.5
SCALES = (2.0, 4.0, 8.0)  # seconds on each side of t (4, 8 and 16 s of context)
N_NOVELTY = 2 * len(SCALES)  # per scale: the penultimate part and the mid-end part of the frames


@dataclass(frozen=True)
class CurveConfig:
    """A fitted change detector and its curve settings (stored in the model file)."""

    weights: tuple[float, ...]  # logistic weights of :func:`novelty`'s features
    bias: float
    mean: tuple[float, ...]  # frame standardisation (training medleys' frames)
    std: tuple[float, ...]
    pen_dim: int = 200  # the first pen_dim frame values are musicnn's penultimate layer
    threshold: float = 0.5  # P(change) a peak needs
    min_part: float = 6.0  # seconds: the shortest part (and the least distance between changes)
    ease: float = 2.0  # seconds over which the curve moves from one part's value to the next
    lag: float = 3.0  # seconds: time constant of a listener's response (0: the curve moves at the change)
    scales: tuple[float, ...] = SCALES
    fitted_on: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "CurveConfig":
        d = dict(d)
        for k in ("weights", "mean", "std", "scales"):
            d[k] = tuple(float(x) for x in d[k])
        return cls(**d)


def _standardise(frames: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (np.asarray(frames, np.float64) - mean) / std


def novelty(frames: np.ndarray, mean, std, *, pen_dim: int = 200, scales=SCALES,
            hop: float = HOP_SECONDS) -> np.ndarray:
    """(T, 2 * len(scales)) log distances between the mean standardised frame of the ``L`` s
    before each time and of the ``L`` s from it (per scale; the penultimate and the mid-end
    values apart, each divided by the square root of its size). Fixed standardisation, not the
    track's own: a steady clip then has small distances everywhere instead of its noise being
    blown up to the scale of a real change. At the ends a side holds what there is (≥ 1 frame)."""
    z = _standardise(frames, np.asarray(mean), np.asarray(std))
    T = len(z)
    c = np.concatenate([np.zeros((1, z.shape[1])), np.cumsum(z, 0)])
    t = np.arange(T)
    out = []
    for L in scales:
        n = max(1, int(round(L / hop)))
        lo, hi = np.maximum(0, t - n), np.minimum(T, t + n)
        left_n, right_n = np.maximum(1, t - lo), np.maximum(1, hi - t)
        left = (c[t] - c[lo]) / left_n[:, None]
        right = (c[hi] - c[t]) / right_n[:, None]
        d = left - right
        d[t == 0] = 0.0  # nothing before the first frame: no change there
        for part in (slice(0, pen_dim), slice(pen_dim, None)):
            width = d[:, part].shape[1]
            out.append(np.log(np.linalg.norm(d[:, part], axis=1) / np.sqrt(width) + 1e-3))
    return np.stack(out, 1)


def change_probability(frames: np.ndarray, cfg: CurveConfig, *, hop: float = HOP_SECONDS) -> np.ndarray:
    """(T,) P(the music changes at each frame) of the fitted logistic."""
    f = novelty(frames, cfg.mean, cfg.std, pen_dim=cfg.pen_dim, scales=cfg.scales, hop=hop)
    return 1.0 / (1.0 + np.exp(-(f @ np.asarray(cfg.weights) + cfg.bias)))


def pick_changes(p: np.ndarray, threshold: float, min_part: float, *, hop: float = HOP_SECONDS) -> list[int]:
    """Frame indices where a part starts (the first is 0): the most likely changes first, each
    above ``threshold`` and at least ``min_part`` s from the ends and from the others."""
    T = len(p)
    gap = max(1, int(round(min_part / hop)))
    chosen: list[int] = []
    for i in np.argsort(-p, kind="stable"):
        if p[i] < threshold:
            break
        if i < gap or T - i < gap or any(abs(i - j) < gap for j in chosen):
            continue
        chosen.append(int(i))
    return [0] + sorted(chosen)


def pooled_parts(frames: np.ndarray, starts: list[int], pen_dim: int = 200) -> np.ndarray:
    """(parts, 2 * D) ``[pen mean, pen std, mid mean, mid std]`` of each part's frames: the
    layout of the track model's musicnn view (:meth:`MusicnnEncoder.embed_segments`)."""
    f = np.asarray(frames, np.float64)
    ends = list(starts[1:]) + [len(f)]
    rows = []
    for a, b in zip(starts, ends):
        seg = f[a:b]
        pen, mid = seg[:, :pen_dim], seg[:, pen_dim:]
        rows.append(np.concatenate([pen.mean(0), pen.std(0), mid.mean(0), mid.std(0)]))
    return np.asarray(rows, np.float32)


def eased(values: np.ndarray, starts: list[int], T: int, ease: float, *, hop: float = HOP_SECONDS) -> np.ndarray:
    """(T, ...) each part's ``values`` row held over its frames, moving linearly to the next
    part's over ``ease`` s centred on the change."""
    values = np.asarray(values, np.float64)
    idx = np.zeros(T, dtype=int)
    for k, s in enumerate(starts):
        idx[s:] = k
    out = values[idx].copy()
    half = ease / 2.0
    if half <= 0:
        return out
    t = np.arange(T) * hop
    for k in range(1, len(starts)):
        b = (starts[k] - 0.5) * hop  # the change lies between the last frame of part k-1 and the first of k
        near = np.abs(t - b) < half
        w = (t[near] - (b - half)) / (2 * half)
        if values.ndim > 1:
            w = w[:, None]
        out[near] = (1 - w) * values[k - 1] + w * values[k]
    return out


def lagged(curve: np.ndarray, lag: float, *, hop: float = HOP_SECONDS) -> np.ndarray:
    """A first-order low-pass of time constant ``lag`` s along axis 0, starting settled at the
    first value (a listener's delayed response; the medleys' targets are made the same way)."""
    if lag <= 0 or len(curve) == 0:
        return np.asarray(curve, np.float64)
    from scipy.signal import lfilter

    a = 1.0 - np.exp(-hop / lag)
    c = np.asarray(curve, np.float64)
    return lfilter([a], [1.0, a - 1.0], c, axis=0, zi=(1.0 - a) * c[:1])[0]


def follow(values: np.ndarray, starts: list[int], T: int, cfg: CurveConfig, *, hop: float = HOP_SECONDS) -> np.ndarray:
    """(T, ...) the curve of the parts' ``values``: held, eased across changes, lagged."""
    return lagged(eased(values, starts, T, cfg.ease, hop=hop), cfg.lag, hop=hop)


def local_pooled(frames: np.ndarray, half: float, pen_dim: int = 200, *, hop: float = HOP_SECONDS) -> np.ndarray:
    """(T, 2 * D) the pooled musicnn view (:func:`pooled_parts`'s layout) of the ``half`` s on
    each side of every frame (clipped at the ends): the sliding-window view at 2 Hz, from the
    same frames, for the curve's band."""
    f = np.asarray(frames, np.float64)
    T = len(f)
    zero = np.zeros((1, f.shape[1]))
    c1, c2 = np.concatenate([zero, np.cumsum(f, 0)]), np.concatenate([zero, np.cumsum(f * f, 0)])
    n = max(1, int(round(half / hop)))
    t = np.arange(T)
    lo, hi = np.maximum(0, t - n), np.minimum(T, t + n + 1)
    k = (hi - lo)[:, None]
    m = (c1[hi] - c1[lo]) / k
    sd = np.sqrt(np.maximum(0.0, (c2[hi] - c2[lo]) / k - m * m))
    return np.concatenate([m[:, :pen_dim], sd[:, :pen_dim], m[:, pen_dim:], sd[:, pen_dim:]], 1).astype(np.float32)


def part_spread(values: np.ndarray, starts: list[int]) -> np.ndarray:
    """(parts, ...) the standard deviation of per-frame ``values`` inside each part."""
    ends = list(starts[1:]) + [len(values)]
    return np.stack([np.asarray(values[a:b], np.float64).std(0) for a, b in zip(starts, ends)])


def part_inputs(frames: np.ndarray, starts: list[int], tonal: np.ndarray | None, pen_dim: int = 200) -> np.ndarray:
    """(parts, D) head inputs: each part's pooled musicnn view, then the track's tonal view."""
    return with_tonal(pooled_parts(frames, starts, pen_dim), tonal)


def with_tonal(x: np.ndarray, tonal: np.ndarray | None) -> np.ndarray:
    """Rows ``x`` with the track's tonal view appended to each (unchanged without one)."""
    if tonal is None:
        return x
    return np.concatenate([x, np.repeat(np.asarray(tonal, np.float32)[None], len(x), 0)], 1)


__all__ = ["CurveConfig", "HOP_SECONDS", "SCALES", "change_probability", "eased", "follow", "lagged", "local_pooled",
           "novelty", "part_inputs", "part_spread", "pick_changes", "pooled_parts", "with_tonal"]
