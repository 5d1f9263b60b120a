"""The 4Q audio emotion dataset (Panda, Malheiro & Paiva, "Novel audio features for music
emotion recognition", IEEE TAFFC 2018): 900 real ~30 s AllMusic clips, 225 per Russell
quadrant, manually validated, with artist, title, AllMusic moods and genres.

Layout (``git archive HEAD dataset`` of the repository the issue names, extracted into merkit's
cache, never into the project)::

    audios/<Song>.mp3                      the clips
    panda_dataset_taffc_metadata.csv       Song, Artist, Title, Quadrant (Q1-Q4), PQuad, moods, GenresStr, ...

Labels: the quadrant (``Track.quadrant`` 1-4, and ``extra["q4_quadrant"]`` for the unified
model's quadrant head) and its exact valence/arousal signs (``label_v``, ``label_a`` = ±1:
Q1 +V+A, Q2 -V+A, Q3 -V-A, Q4 +V-A). Moods and genres are kept in ``extra``. Clips of one
artist share a ``group`` (the artist's name normalised as the MIREX-like set's are), so grouped
splits never put an artist on both sides — within this corpus and, with the same rule, across it
and the MIREX-like set (measured: no song is in both by normalised artist + title, 16 artists are).
Where it is: ``$MERKIT_Q4_DIR``, else ``<cache>/data/q4/dataset``.
"""
from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from .manifest import Track
from .mirex_mood import artist_group
from .paths import DatasetError, cache_dir

log = logging.getLogger(__name__)

SOURCE = "q4"
LICENCE = "AllMusic previews, research use only"
METADATA_FILE = "panda_dataset_taffc_metadata.csv"
ROOT_ENV = "MERKIT_Q4_DIR"
# the exact signs of each quadrant: (valence, arousal)
QUADRANT_VA = {1: (1.0, 1.0), 2: (-1.0, 1.0), 3: (-1.0, -1.0), 4: (1.0, -1.0)}


def default_root() -> Path:
    env = os.environ.get(ROOT_ENV)
    return Path(env).expanduser() if env else cache_dir("data") / "q4" / "dataset"


def q4_manifest(root: str | os.PathLike | None = None, *, require_audio: bool = True) -> list[Track]:
    """The manifest, sorted by song id. A row with an unknown quadrant is an error naming the
    line; a missing clip is skipped with a warning (kept with ``path=""`` when
    ``require_audio`` is False)."""
    root = Path(root) if root is not None else default_root()
    path = root / METADATA_FILE
    if not path.is_file():
        raise DatasetError(f"{path}: 4Q metadata not found (fetch the dataset as issue 23 says and set "
                           f"${ROOT_ENV}, or pass its folder)")
    tracks, missing = [], []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            need = [c for c in ("Song", "Artist", "Title", "Quadrant") if c not in (reader.fieldnames or [])]
            if need:
                raise DatasetError(f"{path}: missing columns {', '.join(need)}")
            for line, row in enumerate(reader, start=2):
                q = row["Quadrant"].strip().upper()
                if q not in ("Q1", "Q2", "Q3", "Q4"):
                    raise DatasetError(f"{path}:{line}: quadrant {row['Quadrant']!r} is not Q1-Q4")
                quadrant = int(q[1])
                audio = root / "audios" / f"{row['Song']}.mp3"
                if not audio.is_file():
                    if require_audio:
                        missing.append(row["Song"])
                        continue
                    audio = ""
                v, a = QUADRANT_VA[quadrant]
                tracks.append(Track(
                    track_id=row["Song"], path=str(audio), source=SOURCE, split="", label_a=a, label_v=v,
                    quadrant=quadrant, group=artist_group(row["Artist"]), licence=LICENCE,
                    extra={"q4_quadrant": quadrant, "title": row["Title"], "artist": row["Artist"],
                           "moods": row.get("MoodsStrSplit") or row.get("MoodsStr", ""),
                           "genres": [g.strip() for g in (row.get("GenresStr") or "").split(";") if g.strip()],
                           "pquad": row.get("PQuad", "")}))
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e})") from None
    if missing:
        log.warning("%d 4Q clips have no audio under %s and are skipped, e.g. %s", len(missing), root / "audios",
                    ", ".join(missing[:5]))
    if not tracks:
        raise DatasetError(f"{path}: no usable clips")
    return sorted(tracks, key=lambda t: t.track_id)


__all__ = ["QUADRANT_VA", "ROOT_ENV", "SOURCE", "default_root", "q4_manifest"]
