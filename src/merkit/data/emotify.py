"""Emotify (Aljanaki, Wiering & Veltkamp 2016): 400 one-minute excerpts with induced-emotion votes.

Layout (``shared/data/emotify``)::

    audio/{classical,rock,electronic,pop}/<n>.mp3   n = 1..100 within each genre
    annotations.csv                                 one row per listener and track: track id,
                                                    genre, 0/1 votes on the nine GEMS emotions, ...

Track ids run 1-100 (classical), 101-200 (rock), 201-300 (electronic), 301-400 (pop), so the file
of track ``t`` is ``audio/<genre>/<t - offset>.mp3``; the reader checks every annotation row
against this.

Labels. ``extra["gems"]`` holds, per GEMS category, the share of the track's listeners who ticked
it (``extra["n_listeners"]`` of them). Emotify has no valence/arousal ratings, so ``label_v`` and
``label_a`` come from a heuristic: each GEMS category is placed on Russell's circumplex
(:data:`GEMS_CIRCUMPLEX_DEG`), a track's point is the vote-share-weighted mean of its categories'
unit vectors, and each dimension is then centred by subtracting its median over the corpus, so
that thresholding at 0 splits the corpus into two near-equal halves. These are *induced* (felt)
emotions mapped by a rule, not perceived-emotion ratings: use them for sanity checks and
transfer experiments, and report them as such. The uncentred values are kept in
``extra["valence_raw"]`` / ``extra["arousal_raw"]``.
"""
from __future__ import annotations

import csv
import logging
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from .manifest import Track, quadrant_from_va
from .paths import DatasetError, shared_data_root

log = logging.getLogger(__name__)

SOURCE = "emotify"
LICENCE = "Magnatune, Creative Commons non-commercial"
ANNOTATIONS_FILE = "annotations.csv"
# Track-id offset of each genre (README of the shared data, Emotify's numbering).
GENRE_OFFSET = {"classical": 0, "rock": 100, "electronic": 200, "pop": 300}
TRACKS_PER_GENRE = 100
GEMS = ("amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power", "joyful_activation",
        "tension", "sadness")

# Angle of each GEMS category on the valence (x) / arousal (y) plane, in degrees counter-clockwise
# from "pleasant". Anchors: Russell (1980), "A circumplex model of affect", J. Pers. Soc. Psychol.
# 39(6), which places pleasure 0, excitement 45, arousal 90, distress 135, displeasure 180,
# depression 225, sleepiness 270 and relaxation 315 degrees. Each category sits on the anchor (or
# halfway between the two anchors) that matches the adjectives GEMS groups under it (Zentner,
# Grandjean & Scherer 2008, Emotion 8(4), the GEMS-25 terms); the GEMS second-order factors agree: vitality
# (power, joyful activation) is pleasant and aroused, unease (tension, sadness) unpleasant,
# sublimity (the other five) is low-arousal.
GEMS_CIRCUMPLEX_DEG = {
    "joyful_activation": 22.5,  # joyful, amused, bouncy, animated: pleasure-excitement
    "amazement": 45.0,  # wonder: filled with wonder, dazzled, allured, moved: excitement
    "power": 67.5,  # strong, triumphant, energetic, fiery: excitement-arousal
    "tension": 112.5,  # tense, agitated, nervous, irritated: arousal-distress
    "sadness": 225.0,  # sad, sorrowful: depression
    "nostalgia": 247.5,  # nostalgic, sentimental, dreamy, melancholic: depression-sleepiness
    "solemnity": 270.0,  # transcendence: inspired, spiritual, thrills: low arousal, neutral valence
    "calmness": 315.0,  # peacefulness: calm, relaxed, serene, meditative: relaxation
    "tenderness": 337.5,  # tender, affectionate, softened-up: relaxation-pleasure
}
assert set(GEMS_CIRCUMPLEX_DEG) == set(GEMS)


def gems_positions() -> np.ndarray:
    """(9, 2) unit vectors (valence, arousal) of the GEMS categories, in the order of :data:`GEMS`."""
    rad = np.deg2rad([GEMS_CIRCUMPLEX_DEG[g] for g in GEMS])
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def gems_to_va(shares: dict[str, float]) -> tuple[float, float]:
    """Uncentred (valence, arousal) of one track: the share-weighted mean of the category
    positions, in [-1, 1]; ``(nan, nan)`` when no listener ticked anything."""
    w = np.array([shares.get(g, 0.0) for g in GEMS], dtype=np.float64)  # (9,)
    if not np.isfinite(w).all() or w.min() < 0:
        raise ValueError(f"GEMS shares must be finite and >= 0, got {shares}")
    if w.sum() == 0:
        return math.nan, math.nan
    v, a = w @ gems_positions() / w.sum()
    return float(v), float(a)


def audio_path(root: Path, track_id: int) -> Path:
    """``audio/<genre>/<n>.mp3`` of an Emotify track id (1..400)."""
    for genre, offset in GENRE_OFFSET.items():
        if offset < track_id <= offset + TRACKS_PER_GENRE:
            return root / "audio" / genre / f"{track_id - offset}.mp3"
    raise DatasetError(f"Emotify track id {track_id} is outside 1..{TRACKS_PER_GENRE * len(GENRE_OFFSET)}")


def read_annotations(path: str | os.PathLike) -> dict[int, dict]:
    """Per-track vote shares: track id -> {"genre", "n_listeners", "gems": {name: share}}.

    Rows with an unreadable track id or vote are skipped with a warning; a track whose rows
    disagree on the genre, or whose genre does not match its id range, is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: Emotify annotations not found")
    votes: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(len(GEMS)))
    listeners: dict[int, int] = defaultdict(int)
    genre: dict[int, str] = {}
    bad = []
    # The header and rows have a space after each comma ("track id, genre, ...").
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        missing = [c for c in ("track id", "genre", *GEMS) if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path}: missing columns {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                tid = int(row["track id"])
                v = np.array([int(row[g]) for g in GEMS], dtype=np.float64)
                if not np.isin(v, (0, 1)).all():
                    raise ValueError("votes must be 0 or 1")
            except (TypeError, ValueError) as e:
                bad.append(f"line {line}: {e}")
                continue
            g = row["genre"].strip()
            if genre.setdefault(tid, g) != g:
                raise DatasetError(f"{path}:{line}: track {tid} is {g!r} here but {genre[tid]!r} earlier")
            offset = GENRE_OFFSET.get(g)
            if offset is None or not offset < tid <= offset + TRACKS_PER_GENRE:
                raise DatasetError(f"{path}:{line}: track id {tid} does not belong to genre {g!r}")
            votes[tid] += v
            listeners[tid] += 1
    if bad:
        log.warning("%s: skipped %d unreadable rows, e.g. %s", path, len(bad), bad[0])
    return {tid: {"genre": genre[tid], "n_listeners": listeners[tid],
                  "gems": {g: float(s) for g, s in zip(GEMS, votes[tid] / listeners[tid])}}
            for tid in sorted(votes)}


def emotify_manifest(root: str | os.PathLike | None = None, *, require_audio: bool = True) -> list[Track]:
    """The Emotify manifest: one track per annotated excerpt, sorted by track id.

    Valence/arousal are the GEMS heuristic of the module docstring, centred at the median of all
    annotated tracks (before any track is dropped for missing audio, so that labels do not depend
    on which files are present). Tracks whose MP3 is missing are skipped with a warning, or kept
    with ``path=""`` when ``require_audio`` is False. No official split: ``split`` is "".
    """
    root = Path(root) if root is not None else shared_data_root() / "emotify"
    ann = read_annotations(root / ANNOTATIONS_FILE)
    if not ann:
        raise DatasetError(f"{root / ANNOTATIONS_FILE}: no annotated tracks")
    raw = np.array([gems_to_va(a["gems"]) for a in ann.values()])  # (n, 2) valence, arousal
    centre = np.nanmedian(raw, axis=0)  # (2,)
    tracks, missing = [], []
    for (tid, a), (v_raw, a_raw) in zip(ann.items(), raw):
        path = audio_path(root, tid)
        duration = math.nan
        if path.is_file():
            try:
                duration = sf.info(path).duration
            except (sf.LibsndfileError, RuntimeError) as e:
                log.warning("skipping %s: unreadable audio (%s)", path, e)
                continue
        elif require_audio:
            missing.append(str(tid))
            continue
        else:
            path = ""
        v, ar = float(v_raw - centre[0]), float(a_raw - centre[1])
        tracks.append(Track(track_id=str(tid), path=str(path), source=SOURCE, split="", label_a=ar, label_v=v,
                            quadrant=quadrant_from_va(v, ar), duration=duration, group=str(tid), licence=LICENCE,
                            extra={"genre": a["genre"], "n_listeners": a["n_listeners"], "gems": a["gems"],
                                   "valence_raw": float(v_raw), "arousal_raw": float(a_raw)}))
    if missing:
        log.warning("%d Emotify tracks have no audio under %s and are skipped, e.g. %s",
                    len(missing), root / "audio", ", ".join(missing[:5]))
    return tracks


__all__ = ["emotify_manifest", "read_annotations", "gems_to_va", "gems_positions", "audio_path",
           "GEMS", "GEMS_CIRCUMPLEX_DEG", "GENRE_OFFSET", "LICENCE"]
