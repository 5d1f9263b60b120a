"""Frame features at 2 Hz for time-varying emotion: ``merkit extract-dynamic``.

For each annotation time t (``start + k * 0.5`` s, the DEAM / PMEmo grid) the encoder's 3 s
patch centred on t gives one frame: musicnn's penultimate features (200) and its mid-end
features averaged over the patch (753), 953 values. The patches come from one pass of the
encoder over the track (:meth:`~merkit.encoders.musicnn.MusicnnEncoder.frame_sequence`), so a
frame costs only the network's back end. The whole analysed span also gets the pooled track
embedding (1906: its consecutive 3 s patches pooled as the static models' view pools them, from
the same encoder pass): the "global" scale of a dual-scale model.

Layout (beside the Memo2496 one; N tracks, T frames, NaN rows where a track is shorter)::
    OUT/frames.npy        (N, T, 953) float32
    OUT/global.npy        (N, 1906) float32
    OUT/times.npy         (T,) seconds into each track
    OUT/labels/dyn_a.npy  (N, T) arousal on [-1, 1], NaN where not annotated (dyn_v.npy: valence)
    OUT/tracks.csv, OUT/features.json, OUT/failures.csv

Loudness: the analysed span (from ``start - 1.5`` s to the last frame's patch end) is measured
as one (BS.1770) and brought to the encoder's level (musicnn: −14 LUFS), so level changes along
the track stay visible. Resumable: finished tracks are kept in ``OUT/.partial`` and skipped by a
rerun; the arrays are published atomically when every track is done or failed.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import AudioError
from .data.manifest import Track, write_manifest
from .outputs import save_npy, write_json
from .audio import normalize_loudness, read_mono, resample
from .config import AudioConfig
from .encoders import get_encoder
from .data.manifest import read_manifest
from .data.memo2496 import LayoutError, _load_npy

HOP_SECONDS = 0.5
WORK_DIR = ".partial"
FILES = {"frames": "frames.npy", "global": "global.npy"}


@dataclass(frozen=True)
class DynamicGrid:
    """Where the frames are: ``n_frames`` times ``start + k * hop`` seconds into each track."""

    start: float = 0.0
    n_frames: int = 120
    hop: float = HOP_SECONDS

    @property
    def times(self) -> np.ndarray:
        return self.start + self.hop * np.arange(self.n_frames)


def frame_dims(enc) -> tuple[int, int]:
    """(penultimate, mid-end) sizes: musicnn's pooled vector is [pen mean, pen std, mid mean, mid std]."""
    return enc.seq_dim, (enc.dim - 2 * enc.seq_dim) // 2


def frame_features(enc, y: np.ndarray, times: np.ndarray, *, frames: np.ndarray | None = None) -> np.ndarray:
    """(len(times), 953) features of the 3 s patches centred on ``times`` (seconds into ``y``,
    16 kHz at the encoder's level); patches that would start before 0 or end after the signal
    are moved inside it."""
    frames = enc.frame_sequence(y) if frames is None else frames
    fhop = enc.front_end.hop_length / enc.sample_rate
    p = enc.patch_frames
    last = max(0, frames.shape[1] - p)
    starts = [int(min(max(0, round(t / fhop) - p // 2), last)) for t in times]
    embs = enc.embed_segments(frames, starts, p)
    pen, mid = frame_dims(enc)
    return np.stack([np.concatenate([e.pooled[:pen], e.pooled[2 * pen:2 * pen + mid]]) for e in embs]).astype(np.float32)


def track_features(path: str, grid: DynamicGrid, enc, *, sample_rate: int = 44_100,
                   target_lufs: float = -23.0, silence_lufs: float = -70.0) -> tuple[np.ndarray, np.ndarray, int]:
    """(frames (T, 953) NaN past the track's end, global (1906,), frames that exist) of one file."""
    from .frontend import encoder_level_gain

    end = grid.start + grid.hop * (grid.n_frames - 1) + 1.5
    y = read_mono(path, sample_rate, seconds=end)
    duration = len(y) / sample_rate
    times = grid.times
    n_ok = int(np.sum(times <= duration + 1e-9))
    if n_ok == 0:
        raise AudioError(f"{path}: {duration:.1f} s long, but the first frame is at {grid.start:g} s")
    lo = int(max(0.0, grid.start - 1.5) * sample_rate)
    span = y[lo:]
    span, lufs, _ = normalize_loudness(span, sample_rate, target_lufs=target_lufs, silence_lufs=silence_lufs)
    gain = encoder_level_gain(enc, AudioConfig(sample_rate=sample_rate, target_lufs=target_lufs,
                                               silence_lufs=silence_lufs), lufs)
    y_enc = (resample(span, sample_rate, enc.sample_rate) * np.float32(gain)).astype(np.float32)
    frames = enc.frame_sequence(y_enc)  # one encoder pass serves the frames and the global embedding
    feats = frame_features(enc, y_enc, times[:n_ok] - lo / sample_rate, frames=frames)
    out = np.full((grid.n_frames, feats.shape[1]), np.nan, dtype=np.float32)
    out[:n_ok] = feats
    glob = enc.embed_segments(frames, [0], frames.shape[1])[0].pooled  # the span's 3 s patches, pooled
    return out, glob.astype(np.float32), n_ok


def extract_dynamic(tracks: list[Track], out_dir: str | os.PathLike, grid: DynamicGrid, *,
                    labels: tuple[np.ndarray, np.ndarray] | None = None, encoder: str = "musicnn",
                    progress: bool = True) -> dict:
    """Frames, global embeddings and 2 Hz labels of ``tracks`` into ``out_dir`` (layout above).
    ``labels``: (arousal, valence) arrays (N, T) on ``grid`` (NaN where not annotated)."""
    from tqdm import tqdm

    from .extract import _write_failures

    out = Path(out_dir)
    work = out / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    enc = get_encoder(encoder)
    n, T = len(tracks), grid.n_frames
    state = {"n": n, "grid": [grid.start, grid.n_frames, grid.hop], "encoder": enc.info(),
             "ids": [t.track_id for t in tracks]}
    state_file = work / "state.json"
    if state_file.exists() and json.loads(state_file.read_text()) != json.loads(json.dumps(state)):
        raise ValueError(f"{out}: an unfinished extraction with other tracks or settings; remove {work}")
    write_json(state_file, state)
    dim_f = sum(frame_dims(enc))
    paths = {"frames": work / "frames.npy", "global": work / "global.npy", "done": work / "done.npy"}
    fresh = not paths["done"].exists()
    open_ = np.lib.format.open_memmap
    frames = open_(paths["frames"], mode="w+" if fresh else "r+", dtype=np.float32, shape=(n, T, dim_f))
    glob = open_(paths["global"], mode="w+" if fresh else "r+", dtype=np.float32, shape=(n, enc.dim))
    done = open_(paths["done"], mode="w+" if fresh else "r+", dtype=np.int8, shape=(n,))
    failures: dict[int, str] = {}
    todo = [i for i in range(n) if not done[i]]
    for i in tqdm(todo, disable=not progress, unit="track", desc="extract-dynamic"):
        try:
            f, g, _ = track_features(tracks[i].path, grid, enc)
        except (AudioError, ValueError, OSError, RuntimeError) as e:
            failures[i] = str(e).splitlines()[0] if str(e) else type(e).__name__
            continue
        frames[i], glob[i] = f, g
        frames.flush()
        glob.flush()
        done[i] = 1
        done.flush()
    ok = np.flatnonzero(np.asarray(done) == 1)
    _write_failures(out / "failures.csv", [(tracks[i].track_id, tracks[i].path, r) for i, r in sorted(failures.items())])
    keep = [tracks[i] for i in ok]
    for name, src in (("frames", frames), ("global", glob)):
        save_npy(out / FILES[name], np.asarray(src)[ok])
    save_npy(out / "times.npy", grid.times)
    la, lv = labels if labels is not None else (np.full((n, T), np.nan), np.full((n, T), np.nan))
    for key, arr in (("dyn_a", la), ("dyn_v", lv)):
        save_npy(out / "labels" / f"{key}.npy", np.asarray(arr, dtype=np.float32)[ok])
    write_manifest(keep, out / "tracks.csv")
    info = {"kind": "dynamic", "grid": {"start": grid.start, "n_frames": grid.n_frames, "hop": grid.hop},
            "frame_features": "musicnn penultimate (200) + mid-end mean (753) of the 3 s patch centred on each time",
            "global": f"{encoder} pooled embedding of the analysed span", "encoder": enc.info()}
    write_json(out / "features.json", info)
    del frames, glob, done
    shutil.rmtree(work)
    return {"n": n, "done": int(len(ok)), "failed": len(failures)}


@dataclass
class DynamicSet:
    """A ``merkit extract-dynamic`` folder in memory."""

    frames: np.ndarray  # (N, T, D)
    global_: np.ndarray  # (N, G)
    times: np.ndarray  # (T,)
    dyn_a: np.ndarray  # (N, T)
    dyn_v: np.ndarray
    tracks: list[Track]
    info: dict


def load_dynamic(root: str | os.PathLike) -> DynamicSet:
    root = Path(root)
    need = [FILES["frames"], FILES["global"], "times.npy", "labels/dyn_a.npy", "labels/dyn_v.npy", "tracks.csv"]
    missing = [f for f in need if not (root / f).is_file()]
    if missing:
        raise LayoutError(f"{root}: not a merkit extract-dynamic folder, missing {', '.join(missing)}")
    ds = DynamicSet(frames=_load_npy(root / FILES["frames"], "r"), global_=_load_npy(root / FILES["global"]),
                    times=_load_npy(root / "times.npy"), dyn_a=_load_npy(root / "labels/dyn_a.npy"),
                    dyn_v=_load_npy(root / "labels/dyn_v.npy"), tracks=read_manifest(root / "tracks.csv"),
                    info=json.loads((root / "features.json").read_text()) if (root / "features.json").is_file() else {})
    n, T = ds.frames.shape[:2]
    for name, arr, shape in (("global.npy", ds.global_, (n,)), ("labels/dyn_a.npy", ds.dyn_a, (n, T)),
                             ("labels/dyn_v.npy", ds.dyn_v, (n, T)), ("times.npy", ds.times, (T,))):
        if arr.shape[:len(shape)] != shape:
            raise LayoutError(f"{root / name}: shape {arr.shape}, expected {shape} from frames.npy {ds.frames.shape}")
    if len(ds.tracks) != n:
        raise LayoutError(f"{root / 'tracks.csv'}: {len(ds.tracks)} tracks, frames.npy has {n}")
    return ds


__all__ = ["DynamicGrid", "frame_features", "track_features", "extract_dynamic", "load_dynamic", "DynamicSet"]
