"""The MIREX-like mood dataset (Panda, Malheiro, Rocha, Oliveira & Paiva, CMMR 2013).

891 real 30 s song previews (AllMusic) in the five MIREX Audio Mood Classification clusters
(Hu & Downie 2007), as laid out in ``shared/data/mirex_mood``::

    audio/NNN.opus      mono 48 kHz Opus, 32 kb/s (soundfile reads Opus)
    labels.csv          id, file, cluster (1-5), category (the AllMusic tag), title, artist, album, year

Labels. ``extra["cluster"]`` is the 5-class label. The dataset has no valence/arousal, so
``label_v`` / ``label_a`` place each cluster on Russell's circumplex by its adjectives
(:data:`CLUSTER_CIRCUMPLEX_DEG`, the same anchors as :mod:`merkit.data.emotify`): a unit vector
per cluster, for weak dimensional supervision and for zero-shot scoring. Clusters 2 and 4 sit
close to the arousal midline, so :data:`CONFIDENT_AROUSAL` lists the clusters whose arousal is
unambiguous (1, 3, 5); scorers that binarise arousal should use only those.

No official split: clips of one artist share a ``group`` (the artist name, normalised), so that
grouped splits never put an artist on both sides.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import re
from pathlib import Path

import numpy as np

from .manifest import Track, quadrant_from_va
from .paths import DatasetError, shared_data_root

log = logging.getLogger(__name__)

SOURCE = "mirex_mood"
LICENCE = "AllMusic previews, research use only"
LABELS_FILE = "labels.csv"
CLUSTERS = {1: "passionate, rousing, confident, boisterous, rowdy",
            2: "rollicking, cheerful, fun, sweet, amiable/good-natured",
            3: "literate, poignant, wistful, bittersweet, autumnal, brooding",
            4: "humorous, silly, campy, quirky, whimsical, witty, wry",
            5: "aggressive, fiery, tense/anxious, intense, volatile, visceral"}
# Degrees counter-clockwise from "pleasant" on the valence (x) / arousal (y) plane, with
# Russell's (1980) anchors: pleasure 0, excitement 45, arousal 90, distress 135, depression 225,
# sleepiness 270, relaxation 315. Each cluster sits where most of its adjectives do.
CLUSTER_CIRCUMPLEX_DEG = {
    1: 60.0,  # rousing, boisterous, rowdy, confident: excitement, towards arousal
    2: 20.0,  # cheerful, fun, sweet, amiable: pleasure, mildly excited
    3: 235.0,  # wistful, brooding, poignant, autumnal: depression, towards sleepiness
    4: 30.0,  # humorous, silly, whimsical, quirky: pleasant, moderately aroused
    5: 120.0,  # aggressive, tense/anxious, fiery, volatile: arousal-distress
}
# Where each adjective sits on Russell's plane (quadrant 1 happy/excited, 2 angry/tense, 3
# sad/depressed, 4 calm/relaxed), by its meaning: the mood words shown with a quadrant are the
# ones of this table that lie in it (see mood_words), so that "sad" never comes with "aggressive"
# and a calm piece is not always "literate" (the first word of cluster 3).
ADJECTIVE_QUADRANT = {
    "passionate": 1, "rousing": 1, "confident": 1, "boisterous": 1, "rowdy": 1,
    "rollicking": 1, "cheerful": 1, "fun": 1, "sweet": 4, "amiable/good-natured": 4,
    "literate": 4, "poignant": 3, "wistful": 3, "bittersweet": 3, "autumnal": 4, "brooding": 3,
    "humorous": 1, "silly": 1, "campy": 1, "quirky": 1, "whimsical": 1, "witty": 1, "wry": 4,
    "aggressive": 2, "fiery": 2, "tense/anxious": 2, "intense": 2, "volatile": 2, "visceral": 2,
}


def mood_words(quadrant: int, cluster_probs) -> tuple[int, str]:
    """``(cluster, words)`` to show with a ``quadrant``: the most likely MIREX cluster (by
    ``cluster_probs``, clusters 1..5 in order) that has adjectives in that quadrant, and those
    adjectives (in the cluster's own order). Every quadrant has at least one such cluster."""
    order = sorted(range(1, 6), key=lambda c: -float(cluster_probs[c - 1]))
    for c in order:
        words = [w for w in CLUSTERS[c].split(", ") if ADJECTIVE_QUADRANT[w] == quadrant]
        if words:
            return c, ", ".join(words)
    raise ValueError(f"no MIREX adjective lies in quadrant {quadrant}")


CONFIDENT_AROUSAL = (1, 3, 5)  # |sin| >= 0.8: high (1, 5) or low (3) beyond doubt
CONFIDENT_VALENCE = (1, 2, 3, 4, 5)  # every cluster is clearly on one side of the valence axis


def cluster_va(cluster: int, positions: dict[int, float] | None = None) -> tuple[float, float]:
    """(valence, arousal) unit vector of a MIREX cluster (1-5)."""
    deg = (positions or CLUSTER_CIRCUMPLEX_DEG)[cluster]
    rad = math.radians(deg)
    return math.cos(rad), math.sin(rad)


def artist_group(artist: str) -> str:
    """An artist's name normalised (lower case, runs of other characters as one space): the
    group of its clips, here and in the 4Q corpus (merkit.data.q4), so splits agree across both."""
    return re.sub(r"[^a-z0-9]+", " ", artist.lower()).strip() or "unknown"


_group = artist_group


def mirex_mood_manifest(root: str | os.PathLike | None = None, *, require_audio: bool = True,
                        positions: dict[int, float] | None = None) -> list[Track]:
    """The manifest, sorted by id. A row with an unknown cluster is an error naming the line;
    a missing audio file is skipped with a warning (kept with ``path=""`` when
    ``require_audio`` is False). ``positions`` overrides :data:`CLUSTER_CIRCUMPLEX_DEG`."""
    root = Path(root) if root is not None else shared_data_root() / "mirex_mood"
    path = root / LABELS_FILE
    if not path.is_file():
        raise DatasetError(f"{path}: MIREX-like mood labels not found")
    tracks, missing = [], []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            need = [c for c in ("id", "file", "cluster", "artist") if c not in (reader.fieldnames or [])]
            if need:
                raise DatasetError(f"{path}: missing columns {', '.join(need)}")
            for line, row in enumerate(reader, start=2):
                try:
                    cluster = int(row["cluster"])
                except (TypeError, ValueError):
                    raise DatasetError(f"{path}:{line}: cluster {row['cluster']!r} is not a number") from None
                if cluster not in CLUSTERS:
                    raise DatasetError(f"{path}:{line}: cluster {cluster} is not one of 1-5")
                audio = root / row["file"]
                if not audio.is_file():
                    if require_audio:
                        missing.append(row["id"])
                        continue
                    audio = ""
                v, a = cluster_va(cluster, positions)
                tracks.append(Track(
                    track_id=row["id"], path=str(audio), source=SOURCE, split="", label_a=a, label_v=v,
                    quadrant=quadrant_from_va(v, a), group=_group(row.get("artist", "")), licence=LICENCE,
                    extra={"cluster": cluster, "category": row.get("category", ""),
                           "title": row.get("title", ""), "artist": row.get("artist", ""),
                           "year": row.get("year", "")}))
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e})") from None
    if missing:
        log.warning("%d MIREX-like clips have no audio under %s and are skipped, e.g. %s",
                    len(missing), root / "audio", ", ".join(missing[:5]))
    if not tracks:
        raise DatasetError(f"{path}: no usable clips")
    return sorted(tracks, key=lambda t: t.track_id)


def cluster_labels(tracks: list[Track]) -> np.ndarray:
    """(n,) int cluster 1-5 of each track (0 where a track has none)."""
    return np.array([int(t.extra.get("cluster", 0) or 0) for t in tracks])


__all__ = ["mirex_mood_manifest", "cluster_va", "cluster_labels", "CLUSTERS", "CLUSTER_CIRCUMPLEX_DEG",
           "CONFIDENT_AROUSAL", "CONFIDENT_VALENCE", "LICENCE"]
