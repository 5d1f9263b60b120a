"""Time-varying (dynamic) valence/arousal labels: DEAM, PMEmo and emoMusic at 2 Hz.

Every reader returns :class:`Curves`: per song, annotation times (seconds into the recording)
and arousal / valence on [-1, 1] (0 = the scale's midpoint), the convention of the static labels
(:mod:`merkit.data.static_va`):

* **PMEmo** (``dynamic_annotations.csv``, long format ``musicId, frameTime, Arousal(mean),
  Valence(mean)`` on [0, 1]): ``2 x - 1``. Ships with merkit's shared data.
* **DEAM** (``annotations averaged per song/dynamic (per second annotations)/{arousal,valence}.csv``)
  and **emoMusic** (``{arousal,valence}_cont_average.csv``): wide format, one row per song,
  ``song_id, sample_15000ms, sample_15500ms, ...`` on [-1, 1] already; blank cells where a song
  ended. Read from the user's copy of the dataset (not on these machines).
* **DEAM per rater** (:func:`read_deam_raters`): one file per song and dimension, one row per
  rater, for tasks per annotator.
* **PMEmo per annotator** (:func:`read_pmemo_raters`): PMEmo 2018's ``Annotations/Arousal/<id>-A.csv``
  and ``Annotations/Valence/<id>-V.csv``, one row per annotator: an id, the static rating, then
  the 2 Hz dynamic ratings on [0, 1]. That layout is taken from the dataset's published tree and
  from public analysis code that reads it (``np.loadtxt(..., skiprows=1)``, column 1 = static,
  columns 2: = dynamic); no copy of those files is on these machines, so the reader accepts
  the header's time cells in seconds, in ms or as ``sample_<ms>ms``, and otherwise assumes the
  2 Hz grid from 15 s (PMEmo removed the first 15 s of annotation).

:func:`on_grid` puts curves on one 2 Hz grid from 15 s (the MediaEval convention: the first
15 s of each song are not annotated), NaN-padded, for ``(N, T)`` training arrays.
"""
from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .manifest import check_utf8
from .paths import DatasetError
from .static_va import DYNAMIC_HALF_RANGE, DYNAMIC_MID, _song_order, labels_dir

HOP_SECONDS = 0.5  # 2 Hz, the DEAM / PMEmo / emoMusic annotation rate
START_SECONDS = 15.0  # annotations start 15 s into each song
_SAMPLE_COL = re.compile(r"^sample_(\d+)ms$")


@dataclass
class Curve:
    """One song's annotation: ``times`` (s), ``arousal`` and ``valence`` on [-1, 1], all (n,)."""

    times: np.ndarray
    arousal: np.ndarray
    valence: np.ndarray

    def __len__(self) -> int:
        return len(self.times)


Curves = dict[str, Curve]


def read_pmemo(path: str | os.PathLike, *, centred: bool = True) -> Curves:
    """PMEmo's long-format file (``musicId, frameTime, Arousal(mean), Valence(mean)``, [0, 1]),
    centred to ``2 x - 1`` (``centred=False``: PMEmo's own [0, 1] values)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: PMEmo dynamic annotations not found")
    check_utf8(path)
    rows: dict[str, list[tuple[float, float, float]]] = {}
    cols = ("musicId", "frameTime", "Arousal(mean)", "Valence(mean)")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        missing = [c for c in cols if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path}: missing columns {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                t, a, v = float(row["frameTime"]), float(row["Arousal(mean)"]), float(row["Valence(mean)"])
            except (TypeError, ValueError) as e:
                raise DatasetError(f"{path}:{line}: bad number ({e})") from None
            rows.setdefault(row["musicId"].strip(), []).append((t, a, v))
    out = {}
    for sid in sorted(rows, key=_song_order):
        arr = np.array(sorted(rows[sid]), dtype=np.float64)
        if centred:
            arr[:, 1:] = (arr[:, 1:] - DYNAMIC_MID) / DYNAMIC_HALF_RANGE
        out[sid] = Curve(arr[:, 0], arr[:, 1], arr[:, 2])
    return out


def _read_wide(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """song id -> (times, values) of a wide file (``song_id, sample_15000ms, ...``)."""
    if not path.is_file():
        raise DatasetError(f"{path}: not found")
    check_utf8(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, skipinitialspace=True)
        header = [c.strip() for c in next(reader, [])]
        if not header or header[0].lower() not in ("song_id", "musicid", "id", "workerid", "rater", "rater_id"):
            raise DatasetError(f"{path}: expected a first column song_id (or a rater id), got {header[:1]}")
        times, cols = [], []
        for j, name in enumerate(header[1:], start=1):
            m = _SAMPLE_COL.match(name)
            if m:
                times.append(int(m.group(1)) / 1000.0)
                cols.append(j)
        if not cols:
            raise DatasetError(f"{path}: no sample_<ms>ms columns")
        t = np.array(times)
        out = {}
        for line, row in enumerate(reader, start=2):
            if not row or not row[0].strip():
                continue
            out[row[0].strip()] = _samples(t, [row[j] if j < len(row) else "" for j in cols], f"{path}:{line}")
    return out


def _samples(times: np.ndarray, cells: list[str], where: str) -> tuple[np.ndarray, np.ndarray]:
    """(times, values) of one annotation row's cells, blank or NaN cells dropped."""
    vals = []
    for cell in cells:
        cell = cell.strip()
        try:
            vals.append(float(cell) if cell not in ("", "NaN", "nan") else math.nan)
        except ValueError:
            raise DatasetError(f"{where}: bad number {cell!r}") from None
    v = np.array(vals)
    keep = np.isfinite(v)
    return times[keep], v[keep]


def pmemo_dynamic(labels_root: str | os.PathLike | None = None, *,
                  centred: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """PMEmo's 2 Hz dynamic annotations: song id -> ``(times, arousal, valence)``, each ``(n,)``.

    times are seconds from the start of the song's full recording (PMEmo annotates the chorus, so
    they start at its offset, e.g. 15.5 s), sorted. arousal/valence are the mean ratings on
    PMEmo's [0, 1] scale, or with ``centred=True`` ``2 x - 1`` in [-1, 1], the same centring as
    the static labels of :func:`static_va_manifest`.
    """
    curves = read_pmemo(labels_dir("pmemo", labels_root) / "dynamic_annotations.csv", centred=centred)
    return {sid: (c.times, c.arousal, c.valence) for sid, c in curves.items()}


def read_wide_pair(arousal_csv: str | os.PathLike, valence_csv: str | os.PathLike) -> Curves:
    """DEAM's / emoMusic's per-song dynamic means: one wide file per dimension, on [-1, 1]."""
    a, v = _read_wide(Path(arousal_csv)), _read_wide(Path(valence_csv))
    out = {}
    for sid in sorted(set(a) & set(v), key=_song_order):
        ta, xa = a[sid]
        tv, xv = v[sid]
        common, ia, iv = np.intersect1d(ta, tv, return_indices=True)
        if len(common):
            out[sid] = Curve(common, xa[ia].astype(np.float64), xv[iv].astype(np.float64))
    return out


DEAM_DYNAMIC = ("annotations averaged per song", "dynamic (per second annotations)")
EMOMUSIC_DYNAMIC = ("arousal_cont_average.csv", "valence_cont_average.csv")


def read_corpus(name: str, root: str | os.PathLike | None = None) -> Curves:
    """The dynamic curves of ``name``: ``pmemo`` from merkit's shared labels (or ``root``, a
    folder with ``dynamic_annotations.csv``); ``deam`` / ``emomusic`` from the dataset's own
    annotation folder ``root`` (searched for the files named above)."""
    if name == "pmemo":
        folder = Path(root) if root else labels_dir("pmemo")
        return read_pmemo(folder / "dynamic_annotations.csv")
    if root is None:
        raise DatasetError(f"the {name} dynamic annotations are not on this machine: give the folder of "
                           "the dataset's annotations")
    root = Path(root)
    names = ("arousal.csv", "valence.csv") if name == "deam" else EMOMUSIC_DYNAMIC if name == "emomusic" else None
    if names is None:
        raise DatasetError(f"no dynamic labels for {name!r}; known: deam, pmemo, emomusic")
    found = {}
    for n in names:
        # DEAM keeps static and dynamic files in sibling folders: take the dynamic one
        hits = sorted(p for p in root.rglob(n) if name != "deam" or "dynamic" in str(p.parent).lower())
        if not hits:
            raise DatasetError(f"{root}: no {n} found (the {name} dynamic annotations)")
        found[n] = hits[0]
    return read_wide_pair(found[names[0]], found[names[1]])


def read_deam_raters(root: str | os.PathLike) -> dict[str, dict[str, Curve]]:
    """DEAM's per-rater dynamic annotations: song id -> {rater id: Curve}, for personalised
    models (tasks per annotator). Layout of DEAM's ``annotations per each rater/dynamic (per
    second annotations)/{arousal,valence}/<song_id>.csv``: one row per rater, its id in the first
    column, then ``sample_<ms>ms`` columns on [-1, 1]. ``root``: that ``dynamic ...`` folder or a
    folder above it."""
    root = Path(root)
    dims = {}
    for dim in ("arousal", "valence"):
        hits = sorted(p for p in root.rglob(dim) if p.is_dir() and "rater" in str(p).lower() or
                      (p.is_dir() and p.parent == root))
        if not hits:
            raise DatasetError(f"{root}: no per-rater {dim}/ folder (DEAM's 'annotations per each rater')")
        dims[dim] = hits[0]
    out: dict[str, dict[str, Curve]] = {}
    for f in sorted(dims["arousal"].glob("*.csv")):
        g = dims["valence"] / f.name
        if not g.is_file():
            continue
        a, v = _read_wide(f), _read_wide(g)
        song = f.stem
        for rater in sorted(set(a) & set(v)):
            ta, xa = a[rater]
            tv, xv = v[rater]
            common, ia, iv = np.intersect1d(ta, tv, return_indices=True)
            if len(common):
                out.setdefault(song, {})[rater] = Curve(common, xa[ia].astype(np.float64), xv[iv].astype(np.float64))
    return out


def _read_pmemo_rows(path: Path, start: float, hop: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """annotator id -> (times, dynamic values on [0, 1]) of one PMEmo per-song file."""
    check_utf8(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, skipinitialspace=True)
        header = [c.strip() for c in next(reader, [])]
        rows = [r for r in reader if r and r[0].strip()]
    width = max([len(header)] + [len(r) for r in rows])
    if width < 3:
        raise DatasetError(f"{path}: expected columns annotator, static, then dynamic ratings; "
                           f"found {width} column(s)")
    times = []
    for k, name in enumerate(header[2:] + [""] * (width - len(header))):
        m = _SAMPLE_COL.match(name)
        try:
            t = int(m.group(1)) / 1000.0 if m else float(name)
            t = t / 1000.0 if t > 1000 else t  # ms
        except ValueError:
            t = start + hop * k
        times.append(t)
    t = np.array(times)
    out = {}
    for line, row in enumerate(rows, start=2):
        out[row[0].strip()] = _samples(t, row[2:] + [""] * (width - len(row)), f"{path}:{line}")
    return out


def read_pmemo_raters(root: str | os.PathLike, *, centred: bool = True, start: float = START_SECONDS,
                      hop: float = HOP_SECONDS) -> dict[str, dict[str, Curve]]:
    """PMEmo's individual dynamic annotations: song id -> {annotator id: Curve}, for tasks per
    annotator. ``root``: PMEmo's folder, its ``Annotations`` folder, or a folder holding
    ``Arousal/`` and ``Valence/``. Values [0, 1] become ``2 x - 1`` (``centred=False`` keeps them)."""
    root = Path(root)
    base = None
    for cand in (root, root / "Annotations", *sorted(root.glob("*/Annotations"))):
        if (cand / "Arousal").is_dir() and (cand / "Valence").is_dir():
            base = cand
            break
    if base is None:
        raise DatasetError(f"{root}: no Arousal/ and Valence/ folders (PMEmo's Annotations/)")
    out: dict[str, dict[str, Curve]] = {}
    files = {f.stem.rsplit("-", 1)[0]: f for f in (base / "Arousal").glob("*-A.csv")}
    for song in sorted(files, key=_song_order):
        g = base / "Valence" / f"{song}-V.csv"
        if not g.is_file():
            continue
        a, v = _read_pmemo_rows(files[song], start, hop), _read_pmemo_rows(g, start, hop)
        for rater in sorted(set(a) & set(v)):
            (ta, xa), (tv, xv) = a[rater], v[rater]
            common, ia, iv = np.intersect1d(ta, tv, return_indices=True)
            if not len(common):
                continue
            xa, xv = xa[ia].astype(np.float64), xv[iv].astype(np.float64)
            if centred:
                xa, xv = (xa - DYNAMIC_MID) / DYNAMIC_HALF_RANGE, (xv - DYNAMIC_MID) / DYNAMIC_HALF_RANGE
            out.setdefault(song, {})[rater] = Curve(common, xa, xv)
    if not out:
        raise DatasetError(f"{base}: no song has both <id>-A.csv and <id>-V.csv with common frames")
    return out


def on_grid(curves: Curves, ids: list[str], *, hop: float = HOP_SECONDS, start: float = START_SECONDS,
            n_frames: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(times (T,), arousal (N, T), valence (N, T))`` on the grid ``start + k hop``: each song's
    value at the grid time nearest its annotation (within hop / 2), NaN elsewhere (before its
    first and after its last annotation). ``n_frames``: T (default: the longest song)."""
    if n_frames is None:
        ends = [curves[i].times.max() for i in ids if i in curves and len(curves[i])]
        n_frames = int(round((max(ends) - start) / hop)) + 1 if ends else 0
    times = start + hop * np.arange(n_frames)
    a = np.full((len(ids), n_frames), np.nan)
    v = np.full((len(ids), n_frames), np.nan)
    for r, sid in enumerate(ids):
        c = curves.get(sid)
        if c is None:
            continue
        k = np.rint((c.times - start) / hop).astype(np.int64)
        ok = (k >= 0) & (k < n_frames) & (np.abs(c.times - (start + hop * k)) <= hop / 2 + 1e-9)
        a[r, k[ok]] = c.arousal[ok]
        v[r, k[ok]] = c.valence[ok]
    return times, a, v


__all__ = ["pmemo_dynamic", "Curve", "Curves", "read_pmemo", "read_wide_pair", "read_corpus", "read_deam_raters", "read_pmemo_raters", "on_grid", "HOP_SECONDS",
           "START_SECONDS"]
