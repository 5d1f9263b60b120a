"""The Memo2496 array layout, as the dataset ships it (figshare) and as ``merkit extract`` writes it.

::
    ROOT/mel_spec.npy        (N, 128, T) float32   log-Mel energies
    ROOT/cochlegram.npy      (N, 84, T)  float32   log10 cochleagram   (sic: the dataset's spelling)
    ROOT/labels/label_a.npy  (N,)        float     arousal, continuous, centred at 0
    ROOT/labels/label_v.npy  (N,)        float     valence, continuous, centred at 0
    ROOT/tracks.csv          manifest (merkit's addition; optional when reading)
    ROOT/features.json       the AudioConfig / FeatureConfig that made the arrays (optional)
    ROOT/<encoder>.npy       (N, dim)    float32   pooled encoder embedding (merkit's addition,
    ROOT/<encoder>_seq.npy   (N, P, d)   float32   and its patch sequence;  ``extract --views``)

Arrays are opened as memory maps, so a corpus never has to fit in RAM.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .manifest import Track, read_manifest, write_manifest
from ..outputs import save_npy, write_json

MEL_FILE = "mel_spec.npy"
COCH_FILE = "cochlegram.npy"
LABEL_A_FILE = "labels/label_a.npy"
LABEL_V_FILE = "labels/label_v.npy"
MANIFEST_FILE = "tracks.csv"
FEATURES_FILE = "features.json"
# views stored under the dataset's own names; any other view ``x`` is stored as ``x.npy``
_VIEW_FILES = {"mel": MEL_FILE, "coch": COCH_FILE}


def view_file(view: str) -> str:
    """File name of a stored view (``"mel"`` → ``mel_spec.npy``, ``"musicnn"`` → ``musicnn.npy``)."""
    return _VIEW_FILES.get(view, f"{view}.npy")


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
    # encoder views, e.g. {"musicnn": (N, 1906), "musicnn_seq": (N, 20, 200)}
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)

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
        for name, a in self.embeddings.items():
            if a.shape[0] != n:
                raise LayoutError(f"view {name} has {a.shape[0]} rows but there are {n} tracks"
                                  + (f" ({self.root})" if self.root else ""))

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
                       label_v=self.label_v[idx], tracks=[self.tracks[i] for i in idx],
                       embeddings={k: v[idx] for k, v in self.embeddings.items()})

    def view(self, name: str) -> np.ndarray:
        """A stored view by name (``"mel"``, ``"coch"`` or an encoder view)."""
        if name == "mel":
            return self.mel
        if name == "coch":
            return self.coch
        if name not in self.embeddings:
            where = f" in {self.root}" if self.root else ""
            raise LayoutError(f"no {name!r} view{where}; extract it with merkit extract --views mel,coch,"
                              f"{name.removesuffix('_seq')}")
        return self.embeddings[name]

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
    mel = _load_npy(root / MEL_FILE, mode)
    coch = _load_npy(root / COCH_FILE, mode)
    la = _check_labels(_load_npy(root / LABEL_A_FILE), LABEL_A_FILE, root)
    lv = _check_labels(_load_npy(root / LABEL_V_FILE), LABEL_V_FILE, root)
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
        try:
            info = json.loads((root / FEATURES_FILE).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise LayoutError(f"{root / FEATURES_FILE}: not valid JSON ({e})") from None
        _check_shapes(root, info, mel, coch)
    embeddings = {}
    for view in (info or {}).get("views", []):
        if view in _VIEW_FILES:
            continue
        for name in (view, view + "_seq"):
            if not (root / view_file(name)).is_file():
                raise LayoutError(f"{root / FEATURES_FILE} lists the view {view!r} but "
                                  f"{root / view_file(name)} is missing")
            embeddings[name] = _load_npy(root / view_file(name), mode)
            dims = ((info.get("encoders") or {}).get(view) or {})
            want = dims.get("dim") if name == view else dims.get("seq_dim")
            if want is not None and embeddings[name].shape[-1] != want:
                raise LayoutError(f"{root / view_file(name)}: last axis {embeddings[name].shape[-1]}, but "
                                  f"{FEATURES_FILE} says {want}")
            if embeddings[name].shape[0] != n:
                raise LayoutError(f"{root / view_file(name)}: {embeddings[name].shape[0]} rows, but {MEL_FILE} has {n}")
    return FeatureSet(mel=mel, coch=coch, label_a=la, label_v=lv, tracks=tracks, root=root, feature_info=info,
                      embeddings=embeddings)


def _load_npy(path: Path, mmap_mode=None) -> np.ndarray:
    """np.load with the file's name in every error (a truncated file otherwise says only "mmap
    length is greater than file size")."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise LayoutError(f"{path}: not a readable .npy array (truncated or corrupt?): {e}") from None


def _check_shapes(root: Path, info: dict, mel: np.ndarray, coch: np.ndarray) -> None:
    """The arrays have the bands and frames ``features.json`` says they were made with."""
    f, g = info.get("features") or {}, info.get("geometry") or {}
    frames = g.get("n_frames", f.get("n_frames"))
    for file, arr, bands in ((MEL_FILE, mel, f.get("n_mels")), (COCH_FILE, coch, f.get("n_gammatone"))):
        if arr.ndim != 3:
            raise LayoutError(f"{root / file}: expected (tracks, bands, frames), got shape {arr.shape}")
        want = (bands, frames)
        got = arr.shape[1:]
        if any(w is not None and w != x for w, x in zip(want, got)):
            raise LayoutError(f"{root / file}: {got[0]} bands x {got[1]} frames, but {FEATURES_FILE} says "
                              f"{bands} x {frames}")


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    save_npy(path, arr)


def save_memo2496(fs: FeatureSet, root: str | os.PathLike) -> Path:
    """Write a FeatureSet in the Memo2496 layout (each file atomically)."""
    root = Path(root)
    _save_npy_atomic(root / MEL_FILE, np.ascontiguousarray(fs.mel, dtype=np.float32))
    _save_npy_atomic(root / COCH_FILE, np.ascontiguousarray(fs.coch, dtype=np.float32))
    _save_npy_atomic(root / LABEL_A_FILE, np.asarray(fs.label_a, dtype=np.float32))
    _save_npy_atomic(root / LABEL_V_FILE, np.asarray(fs.label_v, dtype=np.float32))
    for name, a in fs.embeddings.items():
        _save_npy_atomic(root / view_file(name), np.ascontiguousarray(a, dtype=np.float32))
    write_manifest(fs.tracks, root / MANIFEST_FILE)
    info = fs.feature_info
    if fs.embeddings:  # the reader finds encoder views through features.json
        info = dict(info or {})
        listed = list(info.get("views", ["mel", "coch"]))
        info["views"] = listed + [k for k in fs.embeddings if not k.endswith("_seq") and k not in listed]
    if info is not None:
        write_json(root / FEATURES_FILE, info)
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
