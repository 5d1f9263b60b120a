"""Any folder of audio (or MIDI), optionally with a CSV of labels: the manifest of a user's corpus.

The labels CSV needs an id column (``track_id``, ``file`` or ``filename``, or the one named by
``id_column``) whose values name files in the folder: a path relative to the folder
(``rock/a.mp3``), a file name (``a.mp3``) or a name without extension (``a``); names must then be
unambiguous. Optional columns: ``arousal`` and ``valence`` (or ``label_a`` and ``label_v``),
``quadrant`` (1-4, also ``Q1``..``Q4``), ``split`` (train / val / validation / test / empty),
``group`` (song id; default the track id). Other columns go to ``extra`` as strings.
``centre`` is subtracted from arousal and valence, e.g. 5 for ratings on a 1-9 scale; merkit's
labels are centred at 0.
"""
from __future__ import annotations

import csv
import logging
import math
import os
from collections import Counter
from pathlib import Path

from ..audio import AUDIO_EXTENSIONS, MIDI_EXTENSIONS
from .manifest import Track, check_utf8, quadrant_from_va
from .paths import DatasetError

log = logging.getLogger(__name__)

SOURCE = "generic"
# the formats `merkit predict` reads too (merkit.audio): a folder gives the same files to both
AUDIO_EXTS = tuple(e.lstrip(".") for e in AUDIO_EXTENSIONS + MIDI_EXTENSIONS)
ID_COLUMNS = ("track_id", "file", "filename")
AROUSAL_COLUMNS = ("arousal", "label_a")
VALENCE_COLUMNS = ("valence", "label_v")
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "test", "": ""}
_KNOWN = {"quadrant", "split", "group", *AROUSAL_COLUMNS, *VALENCE_COLUMNS}


def list_audio(audio_dir: str | os.PathLike, exts=AUDIO_EXTS) -> list[Path]:
    """Audio and MIDI files under ``audio_dir`` (recursive, hidden files skipped), sorted."""
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise DatasetError(f"{audio_dir}: audio folder not found")
    exts = {e.lower() for e in exts}
    # a dangling symbolic link is listed too, so that it is reported as a failure, not skipped
    return sorted(p for p in audio_dir.rglob("*")
                  if p.suffix[1:].lower() in exts and (p.is_file() or (p.is_symlink() and not p.exists()))
                  and not any(part.startswith(".") for part in p.relative_to(audio_dir).parts))


def _track_ids(files: list[Path], audio_dir: Path) -> dict[Path, str]:
    """Track id of each file: its relative path (POSIX separators) without the extension, or with
    it where two files differ only in extension (``a.wav`` and ``a.mp3``)."""
    stems = {p: p.relative_to(audio_dir).with_suffix("").as_posix() for p in files}
    count = Counter(stems.values())
    return {p: s if count[s] == 1 else p.relative_to(audio_dir).as_posix() for p, s in stems.items()}


def _pick(columns: list[str], choices, what: str, path: Path) -> str | None:
    found = [c for c in choices if c in columns]
    if len(found) > 1:
        raise DatasetError(f"{path}: both {found[0]!r} and {found[1]!r} columns given for {what}; keep one")
    return found[0] if found else None


def _float(value: str, centre: float, path: Path, line: int, col: str) -> float:
    value = (value or "").strip()
    if value == "" or value.lower() == "nan":
        return math.nan
    try:
        x = float(value)
    except ValueError:
        raise DatasetError(f"{path}:{line}: {col} {value!r} is not a number") from None
    if not math.isfinite(x):
        raise DatasetError(f"{path}:{line}: {col} {value!r} is not finite")
    return x - centre


def _quadrant(value: str, path: Path, line: int) -> int:
    value = (value or "").strip().upper().removeprefix("Q")
    if value == "":
        return 0
    if value not in ("0", "1", "2", "3", "4"):
        raise DatasetError(f"{path}:{line}: quadrant {value!r} is not 1-4 (or Q1-Q4)")
    return int(value)


def generic_manifest(audio_dir: str | os.PathLike, labels_csv: str | os.PathLike | None = None, *,
                     id_column: str | None = None, centre: float = 0.0, source: str = SOURCE,
                     licence: str = "", keep_unlabelled: bool = False) -> list[Track]:
    """Manifest of a folder of audio, labelled by ``labels_csv`` when given.

    Without a CSV: every audio/MIDI file of the folder (recursive), unlabelled, with track id =
    relative path without extension. With a CSV: one track per row, in CSV order; a row that names
    no file (or an ambiguous one) is an error listing up to five such ids; files without a row
    give a warning and are left out, or kept unlabelled when ``keep_unlabelled``. The quadrant is
    the CSV's when given, else derived from valence and arousal.
    """
    audio_dir = Path(os.path.abspath(audio_dir))  # absolute paths survive a move of the manifest
    files = list_audio(audio_dir)
    if labels_csv is None:
        if not files:
            raise DatasetError(f"{audio_dir}: no audio files ({', '.join(AUDIO_EXTS)})")
        ids = _track_ids(files, audio_dir)
        return [_unlabelled(p, ids[p], source, licence) for p in files]

    labels_csv = Path(labels_csv)
    if not labels_csv.is_file():
        raise DatasetError(f"{labels_csv}: labels CSV not found")
    # Each file is reachable by relative path, by name and by stem; a name/stem shared by two
    # files maps to None (ambiguous).
    lookup: dict[str, Path | None] = {}
    for p in files:
        rel = p.relative_to(audio_dir)
        for key in {rel.name, rel.stem, rel.with_suffix("").as_posix()}:
            lookup[key] = p if lookup.get(key, p) == p else None
    lookup.update({p.relative_to(audio_dir).as_posix(): p for p in files})  # exact paths always win
    ids = _track_ids(files, audio_dir)

    check_utf8(labels_csv)
    with open(labels_csv, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = columns
        if id_column is not None:
            if id_column not in columns:
                raise DatasetError(f"{labels_csv}: no column {id_column!r} (columns: {', '.join(columns)})")
            id_col = id_column
        else:
            id_col = _pick(columns, ID_COLUMNS, "the track id", labels_csv)
            if id_col is None:
                raise DatasetError(f"{labels_csv}: no id column (one of {', '.join(ID_COLUMNS)}); "
                                   f"columns: {', '.join(columns)}")
        a_col = _pick(columns, AROUSAL_COLUMNS, "arousal", labels_csv)
        v_col = _pick(columns, VALENCE_COLUMNS, "valence", labels_csv)
        tracks, unmatched, ambiguous, seen = [], [], [], {}
        for line, row in enumerate(reader, start=2):
            key = (row.get(id_col) or "").strip().replace("\\", "/")
            if not key:
                raise DatasetError(f"{labels_csv}:{line}: empty {id_col}")
            if key not in lookup:
                unmatched.append(key)
                continue
            p = lookup[key]
            if p is None:
                ambiguous.append(key)
                continue
            if p in seen:
                raise DatasetError(f"{labels_csv}:{line}: {key} names the same file as line {seen[p]}")
            seen[p] = line
            a = _float(row.get(a_col, ""), centre, labels_csv, line, a_col) if a_col else math.nan
            v = _float(row.get(v_col, ""), centre, labels_csv, line, v_col) if v_col else math.nan
            q = _quadrant(row["quadrant"], labels_csv, line) if "quadrant" in columns else 0
            split = (row.get("split") or "").strip().lower()
            if split not in SPLIT_NAMES:
                raise DatasetError(f"{labels_csv}:{line}: split {split!r} is not train, val, test or empty")
            tid = ids[p]
            extra = {c: row[c] for c in columns if c not in _KNOWN and c != id_col and row.get(c) not in (None, "")}
            tracks.append(Track(track_id=tid, path=str(p), source=source, split=SPLIT_NAMES[split], label_a=a,
                                label_v=v, quadrant=q or quadrant_from_va(v, a),
                                group=(row.get("group") or "").strip() or tid, licence=licence, extra=extra))
    if unmatched or ambiguous:
        parts = []
        if unmatched:
            parts.append(f"{len(unmatched)} ids name no file in {audio_dir} (e.g. {', '.join(unmatched[:5])})")
        if ambiguous:
            parts.append(f"{len(ambiguous)} ids match several files; use relative paths "
                         f"(e.g. {', '.join(ambiguous[:5])})")
        raise DatasetError(f"{labels_csv}: " + "; ".join(parts))
    rest = [p for p in files if p not in seen]
    if rest:
        log.warning("%d files in %s have no labels in %s%s, e.g. %s", len(rest), audio_dir, labels_csv.name,
                    " (kept unlabelled)" if keep_unlabelled else " and are left out",
                    ", ".join(str(p.relative_to(audio_dir)) for p in rest[:5]))
        if keep_unlabelled:
            tracks += [_unlabelled(p, ids[p], source, licence) for p in rest]
    if not tracks:
        raise DatasetError(f"{labels_csv}: no rows")
    return tracks


def _unlabelled(p: Path, tid: str, source: str, licence: str) -> Track:
    return Track(track_id=tid, path=str(p), source=source, group=tid, licence=licence)


__all__ = ["generic_manifest", "list_audio", "AUDIO_EXTS", "ID_COLUMNS"]
