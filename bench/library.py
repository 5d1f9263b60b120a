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


# The means of issue 22, added one at a time (in-process, the model loaded once per variant).
MEANS = (("before: the looped window, torch, decoding in line", dict(once=False, workers=1, backend="torch")),
         ("+ a short clip heard once by the encoder", dict(once=True, workers=1, backend="torch")),
         ("+ decoding ahead in 2 threads", dict(once=True, workers=2, backend="torch")),
         ("+ onnxruntime", dict(once=True, workers=2, backend="onnx")))


def _model(backend: str, once: bool):
    """The shipped model on ``backend``, its encoders hearing a short clip once or looped."""
    from merkit.predict import load_model, load_onnx_model

    return (load_onnx_model() if backend == "onnx" else load_model()).set_encoder_once(once)


def means(folder: Path, n: int, repeats: int) -> dict:
    """Seconds per file of each of :data:`MEANS` on the first ``n`` files of ``folder``
    (medians of ``repeats``, the variants alternating within each repeat), and the largest
    change of a probability against the first variant."""
    files = sorted(folder.iterdir())[:n]
    models = {name: _model(kw["backend"], kw["once"]) for name, kw in MEANS}
    times = {name: [] for name, _ in MEANS}
    probs = {}
    for rep in range(repeats):
        for name, kw in (MEANS if rep % 2 == 0 else MEANS[::-1]):
            t = time.perf_counter()
            res = list(models[name].analyse_files(files, workers=kw["workers"]))
            times[name].append((time.perf_counter() - t) / len(files))
            probs[name] = [(r.prediction.valence, r.prediction.arousal) for r in res if r.ok]
    first = MEANS[0][0]
    out = {}
    for name, _ in MEANS:
        a, b = (probs[first], probs[name])
        change = max((abs(x - y) for pa, pb in zip(a, b) for x, y in zip(pa, pb)), default=0.0)
        out[name] = {"s_per_file": statistics.median(times[name]), "runs": times[name], "max_prob_change": change}
    return out


VIBENET_NETWORK = """
import sys, time, json, numpy as np, vibenet
from vibenet.core import load_audio, extract_mel
net = vibenet.load_model()
mels = [extract_mel(load_audio(p, 16000), 16000) for p in sys.argv[1:]]
net.ort_sess.run(None, {"x": mels[0][None]})
ts = []
for _ in range(3):
    t = time.perf_counter()
    for m in mels:
        net.ort_sess.run(None, {"x": m[None]})
    ts.append((time.perf_counter() - t) / len(mels))
print(json.dumps(min(ts)))
"""


def network_costs(folder: Path, n: int, vib_python: Path) -> dict:
    """Seconds per file of the networks alone (decoding and front ends excluded), on the first
    ``n`` files: musicnn on the clip's own 3 s patches (torch, onnxruntime) and vibenet's
    EfficientNet on its Mel spectrogram of the whole clip (onnxruntime, its default threads)."""
    from merkit.audio import load_window
    from merkit.predict import load_model, load_onnx_model

    files = sorted(folder.iterdir())[:n]
    out = {}
    for backend, model in (("torch", load_model()), ("onnx", load_onnx_model())):
        front = model.front_end()
        enc = front.encoders["musicnn"]
        ys = []
        for f in files:
            win, info = load_window(f, model.config.audio)
            ys.append(front.encoder_input(front.heard_once(win, info), info, enc))
        enc.embed(ys[0])
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for y in ys:
                enc.embed(y)
            best = min(best, (time.perf_counter() - t) / len(ys))
        out[f"musicnn_{backend}_s"] = best
        out["musicnn_patches"] = float(sum(enc.n_patches(len(y)) for y in ys) / len(ys))
    r = subprocess.run([str(vib_python), "-c", VIBENET_NETWORK, *map(str, files)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"vibenet's network timing failed: {r.stderr[-1500:]}")
    out["vibenet_s"] = float(r.stdout.strip().splitlines()[-1])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="files per folder (default 100)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--means", type=int, default=30, metavar="N",
                    help="files per folder for the table of means, in-process (default 30; 0: skip)")
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
        # the shipped model's ONNX export is made once per cache on first use (~3 s, like a
        # download): made here, untimed, so that no timed run pays it
        one = next(p for p in sorted((SHARED / "emotify" / "audio").rglob("*.mp3")))
        timed([*merkit, "predict", str(one), "--no-cache", "--no-progress"], env)
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
            if args.means:
                rows[name]["networks"] = network_costs(d, args.means, vib)
                print(f"  networks alone: {rows[name]['networks']}", flush=True)
                rows[name]["means"] = means(d, args.means, args.repeats + 1)
                for k, r in rows[name]["means"].items():
                    print(f"  {k}: {r['s_per_file']:.3f} s per file", flush=True)
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
    if any("means" in r for r in rows.values()):
        lines += ["", f"## The means, one at a time ({args.means} files per folder, in one process, the model loaded "
                  f"once per variant; medians of {args.repeats + 1} runs, the variants alternating)", "",
                  "| folder | means | s per file | × before | largest probability change |", "|---|---|--:|--:|--:|"]
        for name, r in rows.items():
            base = None
            for k, m in r.get("means", {}).items():
                base = base or m["s_per_file"]
                lines.append(f"| {name} | {k} | {m['s_per_file']:.3f} | {m['s_per_file'] / base:.2f} | "
                             f"{m['max_prob_change']:.3f} |")
        lines += ["", "## The networks alone (s per file; decoding and front ends excluded, the same files)", "",
                  "| folder | musicnn patches per file | musicnn, torch | musicnn, onnxruntime | vibenet's EfficientNet "
                  "(onnxruntime) | musicnn (onnx) / vibenet |", "|---|--:|--:|--:|--:|--:|"]
        for name, r in rows.items():
            c = r.get("networks")
            if c:
                lines.append(f"| {name} | {c['musicnn_patches']:.1f} | {c['musicnn_torch_s']:.3f} | "
                             f"{c['musicnn_onnx_s']:.3f} | {c['vibenet_s']:.3f} | "
                             f"**{c['musicnn_onnx_s'] / c['vibenet_s']:.1f}** |")
    (RESULTS / "library.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
