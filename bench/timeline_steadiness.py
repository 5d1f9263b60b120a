"""Does the timeline hold still where the music does? The shipped model's `--timeline` on single
real clips it never trained on (issue 23, section 3): its 2 Hz curve, and the 10 s sliding
windows (`--timeline-windows`) beside it.

    python bench/timeline_steadiness.py --mirex feats/mirex_mood --emotify feats/emotify --q4 feats/q4 \
        [--mode curve|windows]   # one timeline only; the other's rows stay as they were

Clips: the test parts of seed 0 (the splits the shipped model was trained and calibrated with,
so no clip here was seen), each a single song excerpt (30 s previews, Emotify's one-minute
excerpts) that listeners labelled with one emotion. For P(high arousal) and P(positive valence):

* **steadiness**: the mean over clips of the timeline's within-clip standard deviation, divided
  by the standard deviation of the track results across clips (target ≤ 0.25: a curve that
  moves inside one labelled excerpt a quarter as much as songs differ from each other);
* **agreement**: the mean absolute gap between the timeline's mean and the track result, and the
  share of clips where it is ≤ 0.1 (target: within 0.1).

Windows (or half seconds) flagged as holding no music are left out. Writes
bench/results/timeline_steadiness.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
NAMES = {"mirex_mood": "MIREX-like", "emotify": "Emotify", "q4": "4Q"}


def test_paths(folder: str, name: str, seed: int) -> list[str]:
    from merkit.data.memo2496 import load_memo2496
    from merkit.data.multi_corpus import corpus_from_features, corpus_splits

    c = corpus_from_features(load_memo2496(folder), ("musicnn",), name=name)
    return [c.tracks[i].path for i in corpus_splits(c, seed).test]


def measure(model, paths: list[str]) -> dict:
    """Per clip: the track result and the timeline's mean and std, for arousal and valence."""
    rows = []
    for res in model.analyse_files(paths, timeline=True, workers=0):
        if not res.ok or not res.timeline:
            continue
        ok = [w for w in res.timeline if w.warning is None]
        if not ok:
            continue
        row = {"path": res.path, "windows": len(ok)}
        for dim in ("arousal", "valence"):
            curve = np.array([getattr(w, dim) for w in ok], float)
            row[dim] = {"track": float(getattr(res.prediction, dim)), "mean": float(curve.mean()),
                        "std": float(curve.std())}
        rows.append(row)
    return summarise(rows)


def summarise(rows: list[dict]) -> dict:
    out = {"clips": len(rows), "rows": rows}
    for dim in ("arousal", "valence"):
        track = np.array([r[dim]["track"] for r in rows])
        within = np.array([r[dim]["std"] for r in rows])
        gap = np.abs(np.array([r[dim]["mean"] for r in rows]) - track)
        out[dim] = {"within_std": float(within.mean()), "across_std": float(track.std()),
                    "steadiness": float(within.mean() / track.std()) if track.std() > 0 else float("nan"),
                    "mean_gap": float(gap.mean()), "within_0.1": float((gap <= 0.1).mean())}
    return out


MODES = {"curve": "2 Hz curve (shipped)", "windows": "10 s windows every 5 s"}


def markdown(res: dict) -> str:
    lines = ["# The shipped model's timeline on single real clips (`python bench/timeline_steadiness.py`)", "",
             f"{res['date']}; {res['model']}. Test parts of seed {res['seed']} (never trained on). Steadiness: "
             "mean within-clip std of the curve / std of the track results across clips (target ≤ 0.25). "
             "Agreement: mean |curve mean − track result| and the share of clips within 0.1 (target: within "
             "0.1). Probabilities (0–1).", "",
             "| timeline | corpus | clips | A steadiness | V steadiness | A within-clip std | V within-clip std | "
             "A gap (share ≤ 0.1) | V gap (share ≤ 0.1) |", "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for mode, label in MODES.items():
        for name, r in res.get("timelines", {}).get(mode, {}).get("corpora", {}).items():
            a, v = r["arousal"], r["valence"]
            lines.append(f"| {label} | {NAMES.get(name, name)} | {r['clips']} | {a['steadiness']:.2f} | "
                         f"{v['steadiness']:.2f} | {a['within_std']:.3f} | {v['within_std']:.3f} | "
                         f"{a['mean_gap']:.3f} ({a['within_0.1']:.0%}) | {v['mean_gap']:.3f} ({v['within_0.1']:.0%}) |")
    return "\n".join(lines) + "\n"


def _previous() -> dict:
    path = RESULTS / "timeline_steadiness.json"
    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    if "timelines" not in old and "corpora" in old:  # the file of the sliding windows alone
        return {"windows": {"date": old["date"], "corpora": old["corpora"]}}
    return old.get("timelines", {})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirex")
    ap.add_argument("--emotify")
    ap.add_argument("--q4")
    ap.add_argument("--limit", type=int, default=None, help="at most this many clips per corpus")
    ap.add_argument("--mode", choices=tuple(MODES), action="append", help="timeline(s) to measure (default: both)")
    args = ap.parse_args(argv)
    import torch

    import merkit

    torch.set_num_threads(1)
    model = merkit.load_model()
    seed = int(model.info.get("seed", 0))
    res = {"date": time.strftime("%Y-%m-%d"), "model": model.info.get("model", repr(model)), "seed": seed,
           "timelines": _previous()}
    for mode in args.mode or list(MODES):
        model.timeline_mode = mode
        res["timelines"][mode] = {"date": res["date"], "corpora": {}}
        for name, folder in (("mirex_mood", args.mirex), ("emotify", args.emotify), ("q4", args.q4)):
            if folder:
                paths = test_paths(folder, name, seed)[: args.limit]
                t0 = time.perf_counter()
                res["timelines"][mode]["corpora"][name] = measure(model, paths)
                print(f"{mode} {name}: {len(paths)} clips in {time.perf_counter() - t0:.0f} s", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / "timeline_steadiness.json.tmp"
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    os.replace(tmp, RESULTS / "timeline_steadiness.json")
    (RESULTS / "timeline_steadiness.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
