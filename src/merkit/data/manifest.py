"""The manifest: one row per track, the common form every dataset is read into.

A manifest is a list of :class:`Track`; on disk it is ``tracks.csv`` (UTF-8, header row).
Labels follow the Memo2496 convention: continuous, centred at 0 (positive = high arousal /
positive valence), ``nan`` when unknown.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable
from ..outputs import atomic_path

QUADRANT_WORDS = {1: "happy/excited", 2: "angry/tense", 3: "sad/depressed", 4: "calm/relaxed"}


@dataclass
class Track:
    track_id: str
    path: str = ""  # audio (or MIDI) file; "" when only features exist
    source: str = ""  # dataset name, e.g. "emopia"
    split: str = ""  # "train" | "val" | "test" | "" (unassigned)
    label_a: float = math.nan  # arousal, centred at 0
    label_v: float = math.nan  # valence, centred at 0
    quadrant: int = 0  # 1..4 (Russell quadrant), 0 when unknown
    duration: float = math.nan  # seconds, nan when not yet measured
    group: str = ""  # song id: clips of one song share it, splits never cut a group
    licence: str = ""
    extra: dict = field(default_factory=dict)  # dataset-specific fields (genre, vote shares, ...)


_FLOATS = {"label_a", "label_v", "duration"}
_INTS = {"quadrant"}


def quadrant_from_va(valence: float, arousal: float) -> int:
    """Russell quadrant of a (valence, arousal) point centred at 0: Q1 = +V+A, Q2 = -V+A,
    Q3 = -V-A, Q4 = +V-A; 0 when either is nan."""
    if math.isnan(valence) or math.isnan(arousal):
        return 0
    if arousal >= 0:
        return 1 if valence >= 0 else 2
    return 4 if valence >= 0 else 3


def write_manifest(tracks: Iterable[Track], path: str | os.PathLike) -> Path:
    """Write ``tracks.csv`` atomically (temporary file, then rename)."""

    path = Path(path)
    names = [f.name for f in fields(Track)]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=names)
        w.writeheader()
        for t in tracks:
            row = asdict(t)
            row["extra"] = json.dumps(row["extra"], sort_keys=True) if row["extra"] else ""
            w.writerow(row)
    return path


def check_utf8(path: str | os.PathLike) -> None:
    """Raise ValueError naming ``path`` unless it is UTF-8 text (label and manifest CSVs are
    small; Python's own decode error does not say which file it was)."""
    try:
        Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 CSV") from None


def read_manifest(path: str | os.PathLike) -> list[Track]:
    path = Path(path)
    check_utf8(path)
    return _read_manifest(path)


def _read_manifest(path: Path) -> list[Track]:
    tracks = []
    with open(path, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=2):
            try:
                kw = {}
                for f in fields(Track):
                    v = row.get(f.name, "")
                    if v is None:
                        v = ""
                    if f.name in _FLOATS:
                        kw[f.name] = float(v) if v != "" else math.nan
                    elif f.name in _INTS:
                        kw[f.name] = int(float(v)) if v != "" else 0
                    elif f.name == "extra":
                        kw[f.name] = json.loads(v) if v else {}
                    else:
                        kw[f.name] = v
                tracks.append(Track(**kw))
            except (ValueError, json.JSONDecodeError) as e:
                raise ValueError(f"{path}:{i}: bad manifest row: {e}") from None
    return tracks
