"""merkit predict PATH... [--timeline] [--format table|json|csv] [-o FILE]: emotion of music files.

Files or folders (searched recursively for wav, flac, ogg, mp3, aiff and MIDI). Each file gets a
row; a file that cannot be read gets an error entry and the others go on; the exit status is 1
when any file failed.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

FORMATS = ("table", "json", "csv")
CSV_FIELDS = ("path", "window_start", "window_end", "quadrant", "quadrant_word", "arousal", "valence",
              "confidence", "q1", "q2", "q3", "q4", "arousal_score", "valence_score", "mood_cluster",
              "mood_words", "looped", "error")


def register(sub) -> None:
    p = sub.add_parser("predict", help="arousal, valence and quadrant of audio/MIDI files",
                       description="Predict the emotion a piece of music conveys: P(high arousal), "
                                   "P(positive valence), the Russell quadrant (Q1 happy/excited, Q2 "
                                   "angry/tense, Q3 sad/depressed, Q4 calm/relaxed), continuous "
                                   "valence/arousal scores in [-1, 1] and mood words (the shipped "
                                   "unified model), and a confidence: the quadrant's probability "
                                   "(unified model) or DAMER's cross-view reliability exp(-JS).")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio/MIDI files or folders")
    p.add_argument("--model", action="append", metavar="FILE",
                   help="model file: a merkit model or a `merkit train` best.pt; repeat for one "
                        "file per task (--model a.pt --model v.pt); default: the shipped model")
    p.add_argument("--timeline", action="store_true",
                   help="also predict sliding windows (10 s every 5 s for the default model)")
    p.add_argument("--plot", metavar="DIR", help="with --timeline: write DIR/<file>.png per track "
                                                 "(V and A over time, and the path on the V-A plane)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the output here (default: stdout)")
    p.add_argument("--workers", type=int, default=None, help="decoding threads (default: up to 4)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def _rows(res) -> list[dict]:
    """Flat CSV/table rows of one FileResult: the track, then its timeline windows."""
    if not res.ok:
        return [{"path": res.path, "error": res.error}]
    rows = []
    for kind, p in [("track", res.prediction)] + [("window", w) for w in (res.timeline or [])]:
        q = p.quadrant_probs or (None,) * 4
        rows.append({"path": res.path, "kind": kind, "window_start": round(p.start, 3),
                     "window_end": round(p.end, 3), "quadrant": p.quadrant, "quadrant_word": p.quadrant_word,
                     "arousal": p.arousal, "valence": p.valence, "confidence": p.confidence,
                     "q1": q[0], "q2": q[1], "q3": q[2], "q4": q[3], "arousal_score": p.arousal_score,
                     "valence_score": p.valence_score, "mood_cluster": p.mood_cluster,
                     "mood_words": p.mood_words, "looped": p.looped, "error": ""})
    return rows


def _fmt(x, nd=3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def format_table(results) -> str:
    """A readable table: one line per track (and per window with --timeline)."""
    moods = any(r.ok and r.prediction.mood_words for r in results)
    lines = [f"{'file':<40} {'time (s)':>13}  {'quadrant':<19} {'P(A high)':>9} {'P(V pos)':>8} {'conf':>5}"
             + ("  mood (MIREX cluster)" if moods else "")]
    for res in results:
        name = res.path if len(res.path) <= 40 else "…" + res.path[-39:]
        if not res.ok:
            lines.append(f"{name:<40} error: {res.error}")
            continue
        for kind, p in [("track", res.prediction)] + [("window", w) for w in (res.timeline or [])]:
            label = name if kind == "track" else ""
            span = f"{p.start:6.1f}-{p.end:<6.1f}"
            quad = f"Q{p.quadrant} {p.quadrant_word}" if p.quadrant else "-"
            mood = f"  {p.mood_words.split(',')[0]} (C{p.mood_cluster})" if p.mood_words else ""
            lines.append(f"{label:<40} {span:>13}  {quad:<19} {_fmt(p.arousal):>9} {_fmt(p.valence):>8} "
                         f"{_fmt(p.confidence, 2):>5}{mood}")
    return "\n".join(lines) + "\n"


def render(results, fmt: str, model_info: dict | None = None) -> str:
    if fmt == "json":
        return json.dumps({"model": model_info or {}, "results": [r.to_dict() for r in results]},
                          indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=("kind",) + CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in results:
            w.writerows(_rows(r))
        return buf.getvalue()
    return format_table(results)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..predict import find_inputs, load_model, plot_timeline

    if args.plot and not args.timeline:
        raise ValueError("--plot needs --timeline")
    model = load_model(args.model if args.model else None)
    files = find_inputs(args.paths)
    if not files:
        raise ValueError(f"no audio or MIDI files found in {' '.join(args.paths)}")
    results = []
    # disable=None: a bar on a terminal only; a single file needs none
    bar = tqdm(total=len(files), unit="file", disable=None if args.progress and len(files) > 1 else True,
               file=sys.stderr)
    for res in model.analyse_files(files, timeline=args.timeline, workers=args.workers):
        results.append(res)
        if res.ok and args.plot:
            plot_timeline(res, Path(args.plot) / (Path(res.path).name + ".png"))
        bar.update()
    bar.close()
    text = render(results, args.format, {"description": repr(model)})
    if args.output:
        _write_atomic(Path(args.output), text)
    else:
        sys.stdout.write(text)
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"merkit predict: {len(failed)} of {len(results)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0
