"""DEAM, PMEmo and emoMusic: song-level (static) valence/arousal ratings with official splits.

Labels and splits ship with merkit's shared data (``shared/data/labels/<name>/``, from the public
Music2Emotion repository); the audio does not, and is read from a folder the user supplies::

    <labels>/<name>/static_annotations.csv   song_id, valence_mean, valence_std, arousal_mean,
                                             arousal_std on the 1-9 scale
    <labels>/<name>/split/{train,validation,test}.txt   one song id per line
    <labels>/pmemo/dynamic_annotations.csv   2 Hz means: musicId, frameTime, Arousal(mean),
                                             Valence(mean) on PMEmo's [0, 1] scale
    AUDIO_DIR/**/<song_id>.{mp3,wav,flac,ogg}  e.g. DEAM's MEMD_audio/<id>.mp3, PMEmo's
                                             chorus/<id>.mp3, emoMusic's clips_45seconds/<id>.mp3

Centring. Ratings on the 1-9 scale become ``(x - 5) / 4``: 0 is the scale's midpoint (not the
corpus mean, so that labels keep their meaning across corpora) and the range is [-1, 1]. PMEmo's
original [0, 1] values were mapped to 1-9 as ``1 + 8 x`` by Music2Emotion, so for PMEmo this is
``2 x - 1``, the same map :func:`merkit.data.dynamic.pmemo_dynamic` applies with ``centred=True``.
"""
from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .manifest import Track, quadrant_from_va
from .paths import DatasetError, shared_data_root

log = logging.getLogger(__name__)

SCALE_MID = 5.0  # midpoint of the 1-9 rating scale (SAM scale of DEAM / emoMusic)
SCALE_HALF_RANGE = 4.0  # (9 - 1) / 2: maps 1..9 onto -1..1
DYNAMIC_MID = 0.5  # midpoint of PMEmo's [0, 1] dynamic ratings
DYNAMIC_HALF_RANGE = 0.5
AUDIO_EXTS = ("mp3", "wav", "flac", "ogg")  # preference order when a song has several files
SPLIT_FILES = {"train": "train", "validation": "val", "test": "test"}
AUDIO_ENV = "MERKIT_{}_AUDIO"  # e.g. MERKIT_DEAM_AUDIO: default audio folder of a corpus


@dataclass(frozen=True)
class CorpusInfo:
    name: str
    description: str
    licence: str


CORPORA = {
    "deam": CorpusInfo("deam", "DEAM (Aljanaki, Yang & Soleymani 2017): 1 802 songs/excerpts, static V/A",
                       "research use; audio under each track's Creative Commons licence"),
    "pmemo": CorpusInfo("pmemo", "PMEmo (Zhang et al. 2018): 767 pop-song choruses, static and 2 Hz dynamic V/A",
                        "research use only (commercial recordings)"),
    "emomusic": CorpusInfo("emomusic", "emoMusic / 1000 Songs (Soleymani et al. 2013): 744 45-s clips, static V/A",
                           "research use; audio under each track's Creative Commons licence"),
}


def _check_name(name: str) -> CorpusInfo:
    if name not in CORPORA:
        raise DatasetError(f"unknown static V/A corpus {name!r}; known: {', '.join(CORPORA)}")
    return CORPORA[name]


def labels_dir(name: str, labels_root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``static_annotations.csv`` of corpus ``name``.

    ``labels_root`` may be that folder itself or its parent (``shared/data/labels``); default the
    shared data.
    """
    _check_name(name)
    root = Path(labels_root) if labels_root is not None else shared_data_root() / "labels"
    if (root / "static_annotations.csv").is_file():
        return root
    return root / name


def audio_dir_from_env(name: str) -> Path | None:
    """``$MERKIT_<NAME>_AUDIO`` as a Path, or None."""
    v = os.environ.get(AUDIO_ENV.format(name.upper()))
    return Path(v).expanduser() if v else None


def centre_static(x):
    """1-9 rating -> centred label in [-1, 1]."""
    return (np.asarray(x, dtype=np.float64) - SCALE_MID) / SCALE_HALF_RANGE


def read_static_labels(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """song id -> {valence_mean, valence_std, arousal_mean, arousal_std} (1-9 scale, as stored)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: static annotations not found")
    cols = ("valence_mean", "valence_std", "arousal_mean", "arousal_std")
    out: dict[str, dict[str, float]] = {}
    bad = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        missing = [c for c in ("song_id", *cols) if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path}: missing columns {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            sid = (row["song_id"] or "").strip()
            try:
                vals = {c: float(row[c]) for c in cols}
                if not all(math.isfinite(vals[c]) for c in cols):
                    raise ValueError("non-finite rating")
            except (TypeError, ValueError) as e:
                bad.append(f"line {line}: {e}")
                continue
            if sid in out:
                raise DatasetError(f"{path}:{line}: song {sid} appears twice")
            out[sid] = vals
    if bad:
        log.warning("%s: skipped %d unreadable rows, e.g. %s", path, len(bad), bad[0])
    return out


def read_splits(folder: str | os.PathLike) -> dict[str, str]:
    """song id -> "train" | "val" | "test" from ``folder/{train,validation,test}.txt``."""
    folder = Path(folder)
    split: dict[str, str] = {}
    for fname, name in SPLIT_FILES.items():
        path = folder / f"{fname}.txt"
        if not path.is_file():
            raise DatasetError(f"{path}: official split file missing")
        for line, sid in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            sid = sid.strip()
            if not sid:
                continue
            if sid in split and split[sid] != name:
                raise DatasetError(f"{path}:{line}: song {sid} is also in the {split[sid]} split")
            split[sid] = name
    return split


def index_audio(audio_dir: str | os.PathLike, exts=AUDIO_EXTS) -> dict[str, Path]:
    """File stem -> audio file, searching ``audio_dir`` recursively. When a stem has several
    files, the first extension of ``exts`` wins, then the shortest path."""
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise DatasetError(f"{audio_dir}: audio folder not found")
    rank = {e: k for k, e in enumerate(exts)}
    best: dict[str, tuple[tuple[int, int, str], Path]] = {}
    for p in audio_dir.rglob("*"):
        ext = p.suffix[1:].lower()
        if ext not in rank or p.name.startswith(".") or not p.is_file():
            continue
        key = (rank[ext], len(p.parts), str(p))
        if p.stem not in best or key < best[p.stem][0]:
            best[p.stem] = (key, p)
    return {stem: p for stem, (_, p) in best.items()}


def static_va_manifest(name: str, audio_dir: str | os.PathLike | None = None, *,
                       labels_root: str | os.PathLike | None = None, require_audio: bool = True) -> list[Track]:
    """The manifest of DEAM / PMEmo / emoMusic (``name`` = "deam", "pmemo" or "emomusic").

    audio_dir: where ``<song_id>.<ext>`` files are (searched recursively); default
      ``$MERKIT_<NAME>_AUDIO``. Songs without audio are skipped with one warning (how many, and
      the first ids), or kept with ``path=""`` when ``require_audio`` is False (then
      ``audio_dir`` may be None).
    Labels are centred as ``(x - 5) / 4``; ``extra`` keeps the rating standard deviations in the
    same units (``valence_std``, ``arousal_std``). One clip per song, so ``group`` = song id.
    """
    info = _check_name(name)
    folder = labels_dir(name, labels_root)
    labels = read_static_labels(folder / "static_annotations.csv")
    split = read_splits(folder / "split")
    stray = sorted(set(split) - set(labels), key=_song_order)
    if stray:
        log.warning("%s: %d songs of the split have no labels, e.g. %s", name, len(stray), ", ".join(stray[:5]))
    if audio_dir is None:
        audio_dir = audio_dir_from_env(name)
    if audio_dir is None and require_audio:
        raise DatasetError(f"the {name} audio is not on this machine: pass its folder (audio_dir / --audio-dir) "
                           f"or set {AUDIO_ENV.format(name.upper())}")
    if audio_dir is not None:
        audio_dir = Path(os.path.abspath(audio_dir))  # absolute paths survive a move of the manifest
    audio = index_audio(audio_dir) if audio_dir is not None else {}
    tracks, missing = [], []
    for sid in sorted(labels, key=_song_order):
        lab = labels[sid]
        path, duration = audio.get(sid), math.nan
        if path is None:
            missing.append(sid)
            if require_audio:
                continue
        else:
            try:
                duration = sf.info(path).duration
            except (sf.LibsndfileError, RuntimeError) as e:
                log.warning("skipping %s: unreadable audio (%s)", path, e)
                continue
        v, a = float(centre_static(lab["valence_mean"])), float(centre_static(lab["arousal_mean"]))
        tracks.append(Track(track_id=sid, path=str(path) if path else "", source=name, split=split.get(sid, ""),
                            label_a=a, label_v=v, quadrant=quadrant_from_va(v, a), duration=duration, group=sid,
                            licence=info.licence,
                            extra={"valence_std": lab["valence_std"] / SCALE_HALF_RANGE,
                                   "arousal_std": lab["arousal_std"] / SCALE_HALF_RANGE}))
    if missing and audio_dir is not None:
        verb = "skipped" if require_audio else "kept without audio"
        log.warning("%d of %d %s songs have no audio file in %s (%s), e.g. %s", len(missing), len(labels), name,
                    audio_dir, verb, ", ".join(missing[:5]))
    return tracks


def _song_order(sid: str):
    """Numeric ids in numeric order, others after them alphabetically."""
    return (0, int(sid), "") if sid.isdigit() else (1, 0, sid)


__all__ = ["static_va_manifest", "read_static_labels", "read_splits", "index_audio",
           "centre_static", "labels_dir", "audio_dir_from_env", "CORPORA", "SCALE_MID", "SCALE_HALF_RANGE"]
