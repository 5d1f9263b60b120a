"""The Memo2496 array layout, as the dataset ships it (figshare) and as ``merkit extract`` writes it.

::

    ROOT/mel_spec.npy        (N, 128, T) float32   log-Mel energies
    ROOT/cochlegram.npy      (N, 84, T)  float32   log10 cochleagram   (sic: the dataset's spelling)
    ROOT/labels/label_a.npy  (N,)        float     arousal, continuous, centred at 0
    ROOT/labels/label_v.npy  (N,)        float     valence, continuous, centred at 0
    ROOT/tracks.csv          manifest (merkit's addition; optional when reading)
    ROOT/features.json       the AudioConfig / FeatureConfig that made the arrays (optional)

Arrays are opened as memory maps, so a corpus never has to fit in RAM.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .manifest import Track, read_manifest, write_manifest

MEL_FILE = "mel_spec.npy"
COCH_FILE = "cochlegram.npy"
LABEL_A_FILE = "labels/label_a.npy"
LABEL_V_FILE = "labels/label_v.npy"
MANIFEST_FILE = "tracks.csv"
FEATURES_FILE = "features.json"


class LayoutError(ValueError):
    """A Memo2496-layout folder is missing files or its arrays disagree."""


@dataclass
class FeatureSet:
    """Features and labels of N tracks; rows of every array belong to ``tracks[i]``."""

    mel: np.ndarray  # (N, n_mels, T) float32
    coch: np.ndarray  # (N, n_gammatone, T) float32
    label_a: np.ndarray  # (N,) float
    label_v: np.ndarray  # (N,) float
    tracks: list[Track]
    root: Path | None = None
    feature_info: dict | None = None

    def __post_init__(self):
        n = len(self.tracks)
        for name in ("mel", "coch", "label_a", "label_v"):
            a = getattr(self, name)
            if a.shape[0] != n:
                raise LayoutError(f"{name} has {a.shape[0]} rows but there are {n} tracks"
                                  + (f" ({self.root})" if self.root else ""))
        if self.mel.ndim != 3 or self.coch.ndim != 3:
            raise LayoutError(f"mel and coch must be (N, bands, T), got {self.mel.shape} and {self.coch.shape}")
        if self.mel.shape[2] != self.coch.shape[2]:
            raise LayoutError(f"mel has T={self.mel.shape[2]} frames but coch has T={self.coch.shape[2]}")

    def __len__(self) -> int:
        return len(self.tracks)

    def labels(self, dim: str) -> np.ndarray:
        """Continuous labels of one dimension: ``"a"`` (arousal) or ``"v"`` (valence)."""
        if dim not in ("a", "v"):
            raise ValueError(f"label dimension must be 'a' or 'v', got {dim!r}")
        return np.asarray(self.label_a if dim == "a" else self.label_v, dtype=np.float64)

    def subset(self, idx) -> "FeatureSet":
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return replace(self, mel=self.mel[idx], coch=self.coch[idx], label_a=self.label_a[idx],
                       label_v=self.label_v[idx], tracks=[self.tracks[i] for i in idx])

    @property
    def splits(self) -> np.ndarray:
        return np.array([t.split for t in self.tracks])


def _check_labels(a: np.ndarray, name: str, root: Path) -> np.ndarray:
    if a.ndim != 1:
        raise LayoutError(f"{root / name}: labels must be 1-D (N,), got shape {a.shape}")
    return a


def load_memo2496(root: str | os.PathLike, *, mmap: bool = True) -> FeatureSet:
    """Read a Memo2496-layout folder (the official download or ``merkit extract`` output)."""
    root = Path(root)
    missing = [f for f in (MEL_FILE, COCH_FILE, LABEL_A_FILE, LABEL_V_FILE) if not (root / f).is_file()]
    if missing:
        raise LayoutError(f"{root}: not a Memo2496-layout folder, missing {', '.join(missing)}")
    mode = "r" if mmap else None
    mel = np.load(root / MEL_FILE, mmap_mode=mode)
    coch = np.load(root / COCH_FILE, mmap_mode=mode)
    la = _check_labels(np.load(root / LABEL_A_FILE), LABEL_A_FILE, root)
    lv = _check_labels(np.load(root / LABEL_V_FILE), LABEL_V_FILE, root)
    n = mel.shape[0]
    for name, arr in ((COCH_FILE, coch), (LABEL_A_FILE, la), (LABEL_V_FILE, lv)):
        if arr.shape[0] != n:
            raise LayoutError(f"{root / name}: {arr.shape[0]} rows, but {MEL_FILE} has {n}")
    if (root / MANIFEST_FILE).is_file():
        tracks = read_manifest(root / MANIFEST_FILE)
        if len(tracks) != n:
            raise LayoutError(f"{root / MANIFEST_FILE}: {len(tracks)} tracks, but the arrays have {n} rows")
    else:  # the official download has no manifest: index-named tracks, no split
        tracks = [Track(track_id=str(i), source="memo2496", label_a=float(la[i]), label_v=float(lv[i]),
                        group=str(i)) for i in range(n)]
    info = None
    if (root / FEATURES_FILE).is_file():
        info = json.loads((root / FEATURES_FILE).read_text())
    return FeatureSet(mel=mel, coch=coch, label_a=la, label_v=lv, tracks=tracks, root=root, feature_info=info)


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def save_memo2496(fs: FeatureSet, root: str | os.PathLike) -> Path:
    """Write a FeatureSet in the Memo2496 layout (each file atomically)."""
    root = Path(root)
    _save_npy_atomic(root / MEL_FILE, np.ascontiguousarray(fs.mel, dtype=np.float32))
    _save_npy_atomic(root / COCH_FILE, np.ascontiguousarray(fs.coch, dtype=np.float32))
    _save_npy_atomic(root / LABEL_A_FILE, np.asarray(fs.label_a, dtype=np.float32))
    _save_npy_atomic(root / LABEL_V_FILE, np.asarray(fs.label_v, dtype=np.float32))
    write_manifest(fs.tracks, root / MANIFEST_FILE)
    if fs.feature_info is not None:
        tmp = root / (FEATURES_FILE + ".tmp")
        tmp.write_text(json.dumps(fs.feature_info, indent=2))
        os.replace(tmp, root / FEATURES_FILE)
    return root


def labels_from_tracks(tracks: list[Track]) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([t.label_a for t in tracks], dtype=np.float32)
    v = np.array([t.label_v for t in tracks], dtype=np.float32)
    return a, v


def is_memo2496_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / MEL_FILE).is_file() and (p / COCH_FILE).is_file()


__all__ = ["FeatureSet", "LayoutError", "load_memo2496", "save_memo2496", "labels_from_tracks",
           "is_memo2496_dir"]
