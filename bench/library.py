"""A music library's speed: `merkit predict FOLDER` against the outside peer vibenet on the same
files, in the same run, plus the decode-only floor and an unchanged rerun.

    python3 -m venv /tmp/vib && /tmp/vib/bin/pip install vibenet==0.1.0     # GPL: benchmark only
    python bench/library.py [--n 100] [--repeats 2] [--vibenet-python /tmp/vib/bin/python]

Folders (symbolic links into a temporary folder, so both tools see the same files): the first N
previews of the MIREX-like mood set (real ~30 s clips, Opus) and the first N Emotify clips (real
60 s MP3s; the shared data has no full-length songs). Per folder and repeat, one after the other
with the order alternating between repeats:

* ``merkit predict FOLDER --format csv -o OUT --no-cache`` (the shipped model, default threads);
* ``vibenet predict FOLDER -f csv -q`` (its CLI, default threads), in its own venv;
* the decode floor: every file decoded by merkit's decoder in one process (no analysis);
* ``merkit predict`` again without ``--no-cache``: an unchanged library's rerun.

Each CLI run is a fresh process timed by GNU time (wall seconds, peak RSS), so model loading is
included, as a user sees it. Results: bench/results/library.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED = Path(os.environ.get("MERKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))


def folders(n: int, tmp: Path) -> dict[str, Path]:
    sets = {"30 s clips (MIREX-like previews, Opus)": sorted((SHARED / "mirex_mood" / "audio").glob("*.opus"))[:n],
            "60 s clips (Emotify, MP3)": sorted((SHARED / "emotify" / "audio").rglob("*.mp3"))[:n]}
    out = {}
    for k, (name, files) in enumerate(sets.items()):
        d = tmp / f"set{k}"
        d.mkdir()
        for i, f in enumerate(files):
            os.symlink(f, d / f"{i:04d}{f.suffix}")
        out[name] = d
    return out


def timed(cmd: list[str], env=None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a fresh process."""
    r = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True, env=env)
    if r.returncode not in (0, 1):  # merkit: 1 when a file failed (reported in its output)
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {r.stderr[-1500:]}")
    wall, rss = r.stderr.strip().splitlines()[-1].split()
    return float(wall), float(rss) / 1024


def decode_floor(folder: Path) -> float:
    code = ("import sys, time, glob\nfrom merkit.audio import decode\nt=time.perf_counter()\n"
            "for p in sorted(glob.glob(sys.argv[1] + '/*')): decode(p)\nprint(time.perf_counter() - t)")
    r = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="files per folder (default 100)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--vibenet-python", default=os.environ.get("VIBENET_PYTHON", "/tmp/vib/bin/python"))
    args = ap.parse_args(argv)
    vib = Path(args.vibenet_python)
    if not vib.is_file():
        raise SystemExit(f"{vib}: no vibenet venv; see this script's docstring")
    vib_cli = [str(vib), "-c", "import sys; from vibenet.cli import app; sys.argv[0] = 'vibenet'; app()"]
    merkit = [sys.executable, "-m", "merkit"]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="merkit-bench-library-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "MERKIT_CACHE": str(tmp / "cache")}  # a fresh result store
        for name, d in folders(args.n, tmp).items():
            n = len(list(d.iterdir()))
            m, v, floor, rerun = [], [], [], []
            for rep in range(args.repeats):
                order = ("merkit", "vibenet") if rep % 2 == 0 else ("vibenet", "merkit")
                for who in order:
                    if who == "merkit":
                        m.append(timed([*merkit, "predict", str(d), "--format", "csv", "-o", str(tmp / "out.csv"),
                                        "--no-cache", "--no-progress"], env))
                    else:
                        v.append(timed([*vib_cli, "predict", str(d), "-f", "csv", "-q"]))
                floor.append(decode_floor(d))
            timed([*merkit, "predict", str(d), "--format", "csv", "-o", str(tmp / "out.csv"), "--no-progress"], env)
            rerun.append(timed([*merkit, "predict", str(d), "--format", "csv", "-o", str(tmp / "out.csv"),
                                "--no-progress"], env))
            med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
            rows[name] = {"files": n, "merkit_s": med(m, 0), "vibenet_s": med(v, 0),
                          "decode_floor_s": statistics.median(floor), "rerun_unchanged_s": rerun[0][0],
                          "merkit_peak_mb": max(x[1] for x in m), "vibenet_peak_mb": max(x[1] for x in v),
                          "runs": {"merkit": m, "vibenet": v, "decode_floor": floor}}
            r = rows[name]
            print(f"{name}: merkit {n / r['merkit_s']:.2f} clips/s, vibenet {n / r['vibenet_s']:.2f} clips/s, "
                  f"decode floor {n / r['decode_floor_s']:.1f} clips/s, rerun {r['rerun_unchanged_s']:.1f} s", flush=True)
    load = os.getloadavg()[0]
    record = {"date": time.strftime("%Y-%m-%d"), "n": args.n, "repeats": args.repeats, "load_1min_end": load,
              "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "library.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# A music library: merkit against vibenet (bench/library.py)", "",
             f"{os.cpu_count()} CPUs; {args.n} files per folder; medians of {args.repeats} runs per tool, one after "
             f"the other (order alternating); each run a fresh process (model loading included); 1-min load "
             f"average {load:.1f} at the end.", "",
             "| folder | merkit clips/s | vibenet clips/s | merkit / vibenet | decode floor clips/s | unchanged rerun (s) "
             "| peak RSS merkit / vibenet (MB) |", "|---|--:|--:|--:|--:|--:|--:|"]
    for name, r in rows.items():
        n = r["files"]
        lines.append(f"| {name} | {n / r['merkit_s']:.2f} | {n / r['vibenet_s']:.2f} | "
                     f"**{r['vibenet_s'] / r['merkit_s']:.2f}** | {n / r['decode_floor_s']:.1f} | "
                     f"{r['rerun_unchanged_s']:.1f} | {r['merkit_peak_mb']:.0f} / {r['vibenet_peak_mb']:.0f} |")
    lines += ["", "Target (issue 22): merkit ≥ 1.5× vibenet's clips/s on the same files."]
    (RESULTS / "library.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
