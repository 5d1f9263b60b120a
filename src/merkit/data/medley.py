"""Medleys of real clips with known labels: a stand-in for DEAM / PMEmo's time-varying labels.

The audio of the dynamic corpora is not on these machines. A medley is built from segments of
clips whose static valence/arousal is known (EMOPIA renders, the MIREX-like set, Emotify):
    clip A [5-20 s] ─crossfade─ clip B [5-20 s] ─crossfade─ clip C ...   (seconds long)
    target(t) = each segment's V/A, stepping at the crossfades' midpoints, then lagged

* **Segments**: clips drawn without replacement within a medley, each cut at a random offset,
  lengths uniform in [min_segment, max_segment] (the last one fills the medley), joined by
  equal-power crossfades of ``crossfade`` s; every medley is loudness-normalised later by the
  front end like any track.
* **Targets** at 2 Hz (t = 0, 0.5, 1, ... s): the step function of the segments' labels,
  passed through a first-order low-pass of time constant ``lag_seconds`` (default 3 s): human
  raters follow the music with a lag of about 2-4 s, and an exponential response has that mean
  delay. The first segment's label is the starting state.
* **Label scale**: each corpus's V/A map divided by its standard deviation over the clips
  offered, halved and clipped to [-1, 1] (DEAM's range), so that no corpus's scale dominates.
* **Splits**: clips are assigned to train / val / test first (seeded, by ``Track.group``, so a
  song never sits in two splits), and a medley only uses clips of its own split.

This is a proxy with known, piecewise-constant truth, not a substitute for DEAM or PMEmo: real
emotion moves within a piece, and real raters disagree.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..outputs import atomic_path, save_npy, write_json
from .manifest import Track, quadrant_from_va, write_manifest
from ..audio import as_audio, open_info, read_frames

HOP_SECONDS = 0.5
LABEL_FILES = {"a": "dyn_a.npy", "v": "dyn_v.npy"}
MANIFEST = "tracks.csv"
INFO = "medleys.json"


@dataclass(frozen=True)
class MedleyConfig:
    n_medleys: int = 300
    seconds: float = 60.0
    min_segment: float = 5.0
    max_segment: float = 20.0
    crossfade: float = 1.0
    lag_seconds: float = 3.0
    sample_rate: int = 44_100
    val_size: float = 0.15
    test_size: float = 0.15
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.min_segment <= self.max_segment:
            raise ValueError(f"need 0 < min_segment <= max_segment, got {self.min_segment}, {self.max_segment}")
        if self.seconds < self.min_segment:
            raise ValueError(f"a medley ({self.seconds} s) must hold at least one segment ({self.min_segment} s)")
        if not 0 <= self.crossfade < self.min_segment / 2:
            raise ValueError(f"crossfade must be in [0, min_segment / 2), got {self.crossfade}")
        if self.lag_seconds < 0:
            raise ValueError(f"lag_seconds must be >= 0, got {self.lag_seconds}")

    @property
    def n_frames(self) -> int:
        return int(round(self.seconds / HOP_SECONDS))


def scaled_labels(tracks: list[Track]) -> np.ndarray:
    """(N, 2) valence, arousal of each clip on the medley scale (see the module docstring)."""
    va = np.array([[t.label_v, t.label_a] for t in tracks], dtype=np.float64)
    out = np.full_like(va, np.nan)
    sources = np.array([t.source for t in tracks])
    for s in np.unique(sources):
        m = sources == s
        sd = np.nanstd(va[m], axis=0)
        sd[~(sd > 0)] = 1.0
        out[m] = np.clip(va[m] / sd / 2.0, -1.0, 1.0)
    return out


def split_clips(tracks: list[Track], cfg: MedleyConfig, test_ids: set[str] | None = None) -> dict[str, np.ndarray]:
    """Clip indices per split, whole groups at a time (a song's clips stay together).
    ``test_ids`` (``"source:track_id"``): these clips' groups are the test split (e.g. the test
    parts of another model, so that it can be scored on the test medleys without leakage); the
    other groups are split train / val."""
    groups = np.array([f"{t.source}:{t.group}" if t.group else f"{t.source}:{t.track_id}" for t in tracks])
    uniq = np.unique(groups)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(uniq))
    if test_ids is not None:
        test_groups = {g for t, g in zip(tracks, groups) if f"{t.source}:{t.track_id}" in test_ids}
        rest = [g for g in uniq[order] if g not in test_groups]
        n_val = int(round(cfg.val_size / max(1e-9, 1 - cfg.test_size) * len(rest)))
        part = {g: "test" for g in test_groups}
        part.update({g: "val" if k < n_val else "train" for k, g in enumerate(rest)})
    else:
        n_test = int(round(cfg.test_size * len(uniq)))
        n_val = int(round(cfg.val_size * len(uniq)))
        part = {g: "test" if k < n_test else "val" if k < n_test + n_val else "train"
                for k, g in zip(range(len(uniq)), uniq[order])}
    names = np.array([part[g] for g in groups])
    return {s: np.flatnonzero(names == s) for s in ("train", "val", "test")}


def plan(rng: np.random.Generator, pool: np.ndarray, durations: np.ndarray, cfg: MedleyConfig) -> list[dict]:
    """Segments of one medley: ``[{"clip", "offset", "seconds"}]``, whose lengths (crossfades
    overlapping) add up to ``cfg.seconds``."""
    segs, total = [], 0.0
    used: set[int] = set()
    while total < cfg.seconds - 1e-9:
        left = cfg.seconds - total + (cfg.crossfade if segs else 0.0)
        length = float(rng.uniform(cfg.min_segment, cfg.max_segment))
        if left - length < cfg.min_segment:  # too little would be left for another segment
            length = left
        candidates = [int(c) for c in pool if int(c) not in used and durations[c] >= min(length, cfg.min_segment)]
        if not candidates:
            candidates = [int(c) for c in pool if durations[c] >= cfg.min_segment]
        if not candidates:
            raise ValueError(f"no clip of at least {cfg.min_segment} s to build medleys from")
        clip = int(rng.choice(candidates))
        used.add(clip)
        length = min(length, float(durations[clip]))
        offset = float(rng.uniform(0.0, max(0.0, durations[clip] - length)))
        segs.append({"clip": clip, "offset": offset, "seconds": length})
        total += length - (cfg.crossfade if len(segs) > 1 else 0.0)
    return segs


def target_curves(segs: list[dict], labels: np.ndarray, cfg: MedleyConfig) -> tuple[np.ndarray, np.ndarray]:
    """(valence (T,), arousal (T,)) at 2 Hz: the segments' labels stepping at the crossfades'
    midpoints, low-passed with time constant ``cfg.lag_seconds``."""
    fine = 100.0  # Hz: the step and its response are computed finely, then sampled
    n = int(round(cfg.seconds * fine))
    step = np.empty((n, 2))
    step[:] = labels[segs[0]["clip"]]  # the segments tile [0, seconds): every sample is set below
    t0 = 0.0
    for k, s in enumerate(segs):
        start = t0 if k == 0 else t0 + cfg.crossfade / 2
        end = t0 + s["seconds"] - (cfg.crossfade / 2 if k < len(segs) - 1 else 0.0)
        step[int(round(start * fine)):int(round(end * fine))] = labels[s["clip"]]
        t0 += s["seconds"] - cfg.crossfade
    step[int(round(end * fine)):] = labels[segs[-1]["clip"]]
    if cfg.lag_seconds > 0:
        alpha = 1.0 - math.exp(-1.0 / (cfg.lag_seconds * fine))
        from scipy.signal import lfilter

        step = lfilter([alpha], [1.0, alpha - 1.0], step, axis=0, zi=np.array([[1 - alpha] * 2]) * step[0])[0]
    idx = np.round(np.arange(cfg.n_frames) * HOP_SECONDS * fine).astype(int)
    return step[idx, 0], step[idx, 1]


def render(segs: list[dict], tracks: list[Track], cfg: MedleyConfig) -> np.ndarray:
    """The medley's audio, mono float32 at ``cfg.sample_rate``."""

    sr = cfg.sample_rate
    n = int(round(cfg.seconds * sr))
    out = np.zeros(n, dtype=np.float32)
    fade = int(round(cfg.crossfade * sr))
    pos = 0
    for k, s in enumerate(segs):
        path = tracks[s["clip"]].path
        frames, src_sr = open_info(path)
        a = int(s["offset"] * src_sr)
        b = min(frames, a + int(math.ceil(s["seconds"] * src_sr)) + 1)
        y = as_audio(read_frames(path, a, b), src_sr, sample_rate=sr)
        y = y[:int(round(s["seconds"] * sr))]
        y = y / max(float(np.sqrt(np.mean(y ** 2))), 1e-6) * 0.1  # equal loudness-ish before mixing
        g = np.ones(len(y), dtype=np.float32)
        if k > 0 and fade:  # equal-power fades at the joins
            g[:fade] = np.sin(0.5 * np.pi * np.arange(fade) / fade)
        if k < len(segs) - 1 and fade:
            g[-fade:] *= np.cos(0.5 * np.pi * np.arange(fade) / fade)
        m = min(len(y), n - pos)
        out[pos:pos + m] += (y * g)[:m]
        pos += len(y) - fade
    peak = float(np.abs(out).max())
    return out / peak * 0.9 if peak > 0.9 else out


def make_medleys(tracks: list[Track], out_dir: str | os.PathLike, cfg: MedleyConfig = MedleyConfig(), *,
                 durations: np.ndarray | None = None, progress: bool = False,
                 test_ids: set[str] | None = None) -> list[Track]:
    """Write ``cfg.n_medleys`` medleys (FLAC), their manifest and their 2 Hz targets into
    ``out_dir``; resumable (medleys already written are kept). Returns the medley tracks."""
    import soundfile as sf

    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    if not (out / INFO).is_file():  # marks the folder as merkit's from the start (a rerun resumes it)
        write_json(out / INFO, {"config": asdict(cfg), "hop_seconds": HOP_SECONDS, "complete": False})
    tracks = [t for t in tracks if t.path and np.isfinite(t.label_a) and np.isfinite(t.label_v)]
    if len(tracks) < 3:
        raise ValueError(f"medleys need at least 3 labelled clips with audio, got {len(tracks)}")
    if durations is None:
        durations = np.array([(lambda fs: fs[0] / fs[1])(open_info(t.path)) for t in tracks])
    labels = scaled_labels(tracks)
    splits = split_clips(tracks, cfg, test_ids)
    sizes = {s: len(v) for s, v in splits.items()}
    total = sum(sizes.values())
    counts = {s: int(round(cfg.n_medleys * sizes[s] / total)) for s in ("val", "test")}
    counts["train"] = cfg.n_medleys - counts["val"] - counts["test"]
    rng = np.random.default_rng(cfg.seed + 1)
    rows, dyn_v, dyn_a = [], [], []
    k = 0
    for split in ("train", "val", "test"):
        if counts[split] and not len(splits[split]):
            raise ValueError(f"no clips for the {split} split; use more clips or smaller split sizes")
        for _ in range(counts[split]):
            segs = plan(rng, splits[split], durations, cfg)
            v, a = target_curves(segs, labels, cfg)
            name = f"medley_{k:05d}"
            path = out / "audio" / f"{name}.flac"
            if not path.exists():
                with atomic_path(path, suffix=".flac") as tmp:
                    sf.write(tmp, render(segs, tracks, cfg), cfg.sample_rate, subtype="PCM_16", format="FLAC")
            sources = [{"track": tracks[s["clip"]].track_id, "source": tracks[s["clip"]].source,
                        "offset": round(s["offset"], 3), "seconds": round(s["seconds"], 3)} for s in segs]
            rows.append(Track(track_id=name, path=str(path.resolve()), source="medley", split=split,
                              label_a=float(np.mean(a)), label_v=float(np.mean(v)),
                              quadrant=quadrant_from_va(float(np.mean(v)), float(np.mean(a))),
                              duration=cfg.seconds, group=name, licence="derived from the source clips",
                              extra={"segments": sources}))
            dyn_v.append(v)
            dyn_a.append(a)
            k += 1
    for key, arr in (("a", dyn_a), ("v", dyn_v)):
        save_npy(out / "labels" / LABEL_FILES[key], np.asarray(arr, dtype=np.float32))
    write_manifest(rows, out / MANIFEST)
    info = {"config": asdict(cfg), "hop_seconds": HOP_SECONDS, "n_source_clips": len(tracks),
            "source_clips_per_split": sizes, "test_ids_given": test_ids is not None,
            "sources": sorted({t.source for t in tracks})}
    write_json(out / INFO, info)
    return rows


__all__ = ["MedleyConfig", "make_medleys", "plan", "target_curves", "render", "split_clips", "scaled_labels"]
