"""Extraction at corpus scale: wall time, tracks per second and peak memory for N tracks.

The corpus is N manifest entries over 32 distinct generated 30-90 s WAV files (decoding,
resampling, loudness and features all run for every entry; only the disk cache is shared).
Peak RSS is reported for the main process and for the largest worker; the whole job's peak is
at most main + workers x worker.

    python bench/extract_scale.py --tracks 10000 --workers 2
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from features import music_like  # noqa: E402
from merkit.data.manifest import Track  # noqa: E402
from merkit.extract import extract  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = []
        for k in range(32):
            p = tmp / f"src{k}.wav"
            sf.write(p, music_like(30 + 2 * k, 44_100, seed=k), 44_100)
            files.append(p)
        tracks = [Track(track_id=f"t{i:05d}", path=str(files[i % 32]), label_a=float(i % 2) - 0.5,
                        label_v=0.5 - float(i % 3 == 0)) for i in range(args.tracks)]
        t0 = time.perf_counter()
        rep = extract(tracks, tmp / "out", workers=args.workers, progress=sys.stderr.isatty())
        wall = time.perf_counter() - t0
        main_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size_mb = sum(f.stat().st_size for f in (tmp / "out").rglob("*") if f.is_file()) / 2 ** 20
    res = {"tracks": args.tracks, "workers": args.workers, "done": rep.n_done, "failed": len(rep.failures),
           "wall_s": wall, "tracks_per_s": args.tracks / wall, "peak_rss_main_mb": main_mb,
           "peak_rss_largest_worker_mb": child_mb,
           "peak_rss_job_upper_bound_mb": main_mb + args.workers * child_mb, "output_mb": size_mb,
           "cpu_count": os.cpu_count()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "extract_scale.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
