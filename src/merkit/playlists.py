"""Playlists from a library's predictions: by mood, by a region of the valence-arousal plane,
along a mood arc, or near a song.

The plane: each track is a point ``(v, a)`` in [-1, 1]², its valence and arousal scores (the
CSV's ``valence_score`` / ``arousal_score``; where a model gives only probabilities, ``2p - 1``).
Named moods are points on Russell's circumplex (:data:`MOODS`, at radius 0.7 and the angle of
the word in Russell 1980 / Posner et al. 2005); a mood playlist takes the tracks nearest to it.
Region filters use the probabilities, the numbers of the CSV's ``valence`` / ``arousal``
columns (``--valence 0.6:`` is P(positive) ≥ 0.6). A **mood arc** ``--from energetic --to
calm`` spaces ``n`` targets evenly along the straight path between the two moods and gives each
target its own track, choosing the assignment with the least total distance (the Hungarian
method, scipy's ``linear_sum_assignment``), so neighbours in the list are near each other on
the plane and the playlist moves steadily from one mood to the other.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .outputs import PLAYLIST_MARK

# angle in degrees on the circumplex (0 = pleasant, 90 = aroused); radius 0.7
_ANGLES = {"happy": 30, "excited": 60, "energetic": 80, "alert": 90, "tense": 110, "angry": 130,
           "afraid": 150, "upset": 165, "sad": 210, "depressed": 225, "bored": 240, "tired": 260,
           "calm": 300, "relaxed": 320, "serene": 330, "content": 345, "pleased": 10}
MOODS = {name: (0.7 * math.cos(math.radians(a)), 0.7 * math.sin(math.radians(a))) for name, a in _ANGLES.items()}


@dataclass(frozen=True)
class Track:
    path: str
    v: float  # valence score in [-1, 1]
    a: float  # arousal score in [-1, 1]
    p_valence: float | None
    p_arousal: float | None
    quadrant: int | None
    mood_words: str


def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _track(path: str, row: dict) -> Track | None:
    pv, pa = _num(row.get("valence")), _num(row.get("arousal"))
    sv, sa = _num(row.get("valence_score")), _num(row.get("arousal_score"))
    v = sv if sv is not None else (2 * pv - 1 if pv is not None else None)
    a = sa if sa is not None else (2 * pa - 1 if pa is not None else None)
    if v is None or a is None:
        return None
    q = _num(row.get("quadrant"))
    return Track(path, v, a, pv, pa, int(q) if q else None, str(row.get("mood_words") or ""))


def load_library(path: str | os.PathLike) -> list[Track]:
    """The tracks of a `merkit predict` output (CSV or JSON) that have an emotion (error and
    not-music rows and timeline windows are left out). Relative paths in it are taken relative
    to the file's folder."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    base = path.parent
    out = []
    if text.lstrip().startswith("{"):
        for r in json.loads(text).get("results", []):
            if r.get("status") == "ok" and r.get("prediction"):
                t = _track(r["path"], r["prediction"])
                out.append(t)
    else:
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "path" not in rows[0] or "valence" not in rows[0]:
            raise ValueError(f"{path}: not a `merkit predict` CSV or JSON (no path/valence columns)")
        for r in rows:
            if r.get("kind", "track") == "track" and r.get("status") == "ok":
                out.append(_track(r["path"], r))
    return [t if os.path.isabs(t.path) else dataclasses.replace(t, path=str(base / t.path))
            for t in out if t is not None]


def _xy(tracks) -> np.ndarray:
    return np.array([[t.v, t.a] for t in tracks], dtype=np.float64).reshape(-1, 2)


def mood_point(name: str) -> tuple[float, float]:
    key = name.strip().lower()
    if key not in MOODS:
        raise ValueError(f"unknown mood {name!r}; moods: {', '.join(sorted(MOODS))}")
    return MOODS[key]


def parse_range(spec: str | None, flag: str) -> tuple[float, float]:
    """``"0.6:"`` → (0.6, 1), ``":0.4"`` → (0, 0.4), ``"0.2:0.5"``; values in [0, 1]."""
    if spec is None:
        return 0.0, 1.0
    lo, sep, hi = spec.partition(":")
    try:
        lo_v = float(lo) if lo.strip() else 0.0
        hi_v = float(hi) if hi.strip() else 1.0
    except ValueError:
        raise ValueError(f"{flag} {spec}: give LO:HI with probabilities in [0, 1], e.g. 0.6: or :0.4") from None
    if not sep or not (0.0 <= lo_v <= hi_v <= 1.0):
        raise ValueError(f"{flag} {spec}: give LO:HI with 0 <= LO <= HI <= 1, e.g. 0.6: or :0.4")
    return lo_v, hi_v


def in_region(tracks, valence=(0.0, 1.0), arousal=(0.0, 1.0)) -> list[Track]:
    def p(prob, score):
        return prob if prob is not None else (score + 1) / 2

    return [t for t in tracks if valence[0] <= p(t.p_valence, t.v) <= valence[1]
            and arousal[0] <= p(t.p_arousal, t.a) <= arousal[1]]


def nearest(tracks, point, n: int, *, exclude: str | None = None) -> list[Track]:
    """The ``n`` tracks nearest to ``point`` on the plane, nearest first (ties: by path)."""
    pool = [t for t in tracks if t.path != exclude]
    if not pool:
        return []
    d = np.hypot(*(_xy(pool) - np.asarray(point)).T)
    order = sorted(range(len(pool)), key=lambda i: (d[i], pool[i].path))
    return [pool[i] for i in order[:n]]


def arc(tracks, start, end, n: int) -> list[Track]:
    """``n`` tracks along the straight path from ``start`` to ``end`` (module docstring)."""
    from scipy.optimize import linear_sum_assignment

    n = min(n, len(tracks))
    if n == 0:
        return []
    s = np.linspace(0.0, 1.0, n)[:, None]
    targets = (1 - s) * np.asarray(start) + s * np.asarray(end)
    cost = np.hypot(*(targets[:, None, :] - _xy(tracks)[None, :, :]).transpose(2, 0, 1))
    rows, cols = linear_sum_assignment(cost)
    return [tracks[c] for _, c in sorted(zip(rows, cols))]


def find_track(tracks, song: str | os.PathLike) -> Track:
    want = os.path.realpath(song)
    for t in tracks:
        if os.path.realpath(t.path) == want:
            return t
    name = os.path.basename(str(song))
    same = [t for t in tracks if os.path.basename(t.path) == name]
    if len(same) == 1:
        return same[0]
    raise ValueError(f"{song}: not in the library file (predict it first, or give its path as the library has it)")


def m3u8(tracks, playlist_path: str | os.PathLike | None, title: str) -> str:
    """An extended M3U playlist (UTF-8) with paths relative to the playlist's folder, or absolute
    ones when the playlist's place is not known (``playlist_path=None``: a browser download)."""
    folder = Path(playlist_path).resolve().parent if playlist_path is not None else None
    lines = ["#EXTM3U", PLAYLIST_MARK, f"#PLAYLIST:{title}"]
    for t in tracks:
        p = Path(t.path).resolve()
        try:
            rel = os.path.relpath(p, folder) if folder is not None else str(p)
        except ValueError:  # another drive (Windows): the absolute path
            rel = str(p)
        words = f" ({t.mood_words.split(',')[0]})" if t.mood_words else ""
        lines += [f"#EXTINF:-1,{p.stem}{words} [V {t.v:+.2f} A {t.a:+.2f}]", rel.replace(os.sep, "/")]
    return "\n".join(lines) + "\n"


__all__ = ["MOODS", "Track", "arc", "find_track", "in_region", "load_library", "m3u8", "mood_point", "nearest",
           "parse_range"]
