"""merkit predict PATH... [--timeline] [--format table|json|csv] [-o FILE]: emotion of music files.

Files or folders (searched recursively for wav, flac, ogg, opus, mp3, aiff, m4a/aac/mp4, wma, webm, mka and MIDI). Each file gets a
row; a file that cannot be read gets an error entry and the others go on; the exit status is 1
when any file failed. Input that holds no music (silence, a steady tone, noise:
:mod:`merkit.content`) gets a "not music" row (``status`` not_music) and no emotion; it is not
a failure.
"""
from __future__ import annotations

from . import COMMANDS

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

from ._args import add_cluster_args, add_old_spelling, worker_count
from ..outputs import OutputError, check_figure, check_file, check_folder, space_error, write_text
from ..stopping import describe
from ..cluster import check_shard_size
from ..config import DEFAULT_MODEL_FILE

FORMATS = ("table", "json", "csv")
CSV_FIELDS = ("path", "status", "window_start", "window_end", "quadrant", "quadrant_word", "arousal",
              "valence", "certainty", "q1", "q2", "q3", "q4", "arousal_score", "valence_score",
              "arousal_band", "valence_band", "view_agreement", "mood_cluster", "mood_words", "looped", "warning", "error", "note")


def register(sub) -> None:
    p = sub.add_parser("predict", help=COMMANDS['predict'],
                       description="Predict the emotion a piece of music conveys: P(high arousal), "
                                   "P(positive valence), the Russell quadrant (Q1 happy/excited, Q2 "
                                   "angry/tense, Q3 sad/depressed, Q4 calm/relaxed), continuous "
                                   "valence/arousal scores in [-1, 1] and mood words (the shipped "
                                   "unified model), and the certainty: the probability of that "
                                   "quadrant. Silence, steady tones and noise are reported as not "
                                   "music, with no emotion.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio/MIDI files or folders")
    p.add_argument("--model", action="append", metavar="FILE",
                   help="model file: a merkit model or a `merkit train` best.pt; repeat for one "
                        "file per task (--model a.pt --model v.pt); default: the shipped model")
    add_backend_args(p)
    p.add_argument("--timeline", action="store_true",
                   help="also predict emotion over time: a 2 Hz curve for the default model (steady within a "
                        "passage, moving where the music changes; see docs/timeline.md)")
    p.add_argument("--timeline-windows", action="store_true",
                   help="with --timeline: the model's sliding windows (10 s every 5 s), each judged on its own, "
                        "instead of the 2 Hz curve")
    p.add_argument("--plot", metavar="DIR", help="with --timeline: write DIR/<file>.png per track "
                                                 "(V and A over time, and the path on the V-A plane)")
    p.add_argument("--timeline-max-minutes", type=float, default=None, metavar="MIN",
                   help="the timeline covers at most the first MIN minutes of a file (default "
                        "10; memory and time grow with it, the track result does not)")
    p.add_argument("--no-content-check", dest="content_check", action="store_false",
                   help="give an emotion even for silence, steady tones and noise (see docs/reliability.md)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the output here (default: stdout); an existing file is replaced only when "
                        "merkit wrote it (a rerun), never one of the inputs or another program's file")
    p.add_argument("--force", action="store_true",
                   help="let -o replace another kind of merkit output (never anything merkit did not write)")
    p.add_argument("--threads", dest="workers", type=worker_count, default=None,
                   help="decoding threads (default: up to 4; 0 = in this thread)")
    add_old_spelling(p, "--workers", "workers", type=worker_count)
    add_cluster_args(p, "files", "; each worker loads the model once")
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="analyse every file again (default: results of files, model and settings unchanged "
                        "since a previous run come from merkit's result store, so a library rerun analyses "
                        "only new or changed files, and a killed run goes on where it stopped)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def add_backend_args(p) -> None:
    """``--backend`` and ``--device``: what runs a predictor's networks, and where (predict, serve)."""
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="what runs the networks. auto (default): onnxruntime for the shipped model on the CPU "
                        "when merkit[onnx] is installed (a folder of 30 s clips ~1.2x faster, bench/library.py; "
                        "outputs within 1e-4 of torch's), torch otherwise. onnx: onnxruntime runs the graphs of "
                        "`merkit export` (--model FILE.onnx), or of a torch model (default: the shipped "
                        "one) exported into <cache>/onnx/ on first use; the rest is the same code "
                        "(needs merkit[onnx])")
    p.add_argument("--device", default="cpu",
                   help="where the torch networks run: cpu (default), cuda or cuda:N (float32; decoding "
                        "and the front end stay on the CPU)")


def resolve_backend(backend: str, model_files, device: str = "cpu") -> str:
    """``--backend auto`` made concrete without loading the model (the result store keys on
    it): ``onnx`` for the shipped model (no ``--model``) on the CPU when onnxruntime and onnx
    are installed, ``torch`` otherwise; another value as it is."""
    if backend != "auto":
        return backend
    import importlib.util

    if model_files or device != "cpu":
        return "torch"
    have = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
    return "onnx" if have else "torch"


def load_predictor(model_files, backend: str = "auto", device: str = "cpu"):
    """The predictor of ``--model`` files (None: the shipped model) on ``--backend`` / ``--device``."""
    from ..predict import load_model, load_onnx_model

    backend = resolve_backend(backend, model_files, device)
    if backend == "onnx":
        model = load_onnx_model(model_files)
    else:
        model = load_model(model_files or None)
    if device != "cpu":
        model.to_device(device)
    return model


def _rows(res) -> list[dict]:
    """Flat CSV/table rows of one FileResult: the track, then its timeline windows."""
    if not res.ok:
        return [{"path": res.path, "kind": "track", "status": res.status, "error": res.error}]
    rows = []
    for kind, p in [("track", res.prediction)] + [("window", w) for w in (res.timeline or [])]:
        q = p.quadrant_probs or (None,) * 4
        rows.append({"path": res.path, "kind": kind, "status": "ok" if p.warning is None else "not_music",
                     "window_start": round(p.start, 3),
                     "window_end": round(p.end, 3), "quadrant": p.quadrant, "quadrant_word": p.quadrant_word,
                     "arousal": p.arousal, "valence": p.valence, "certainty": p.certainty,
                     "q1": q[0], "q2": q[1], "q3": q[2], "q4": q[3], "arousal_score": p.arousal_score,
                     "valence_score": p.valence_score, "arousal_band": p.arousal_band,
                     "valence_band": p.valence_band, "view_agreement": p.view_agreement,
                     "mood_cluster": p.mood_cluster, "mood_words": p.mood_words, "looped": p.looped,
                     "warning": p.warning or "", "error": "",
                     "note": (res.note or "") if kind == "track" else ""})  # e.g. the timeline's 10-minute cap
    return rows


def _fmt(x, nd=3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def format_table(results) -> str:
    """A readable table: one line per track (and per window with --timeline)."""
    moods = any(r.ok and r.prediction.mood_words for r in results)
    lines = [f"{'file':<40} {'time (s)':>14}  {'quadrant':<19} {'P(A high)':>9} {'P(V pos)':>8} {'cert.':>5}"
             + ("  mood (MIREX cluster)" if moods else "")]
    for res in results:
        name = res.path if len(res.path) <= 40 else "…" + res.path[-39:]
        if not res.ok:
            lines.append(f"{name:<40} {res.error}" if res.not_music else f"{name:<40} error: {res.error}")
            continue
        for kind, p in [("track", res.prediction)] + [("window", w) for w in (res.timeline or [])]:
            label = name if kind == "track" else ""
            span = f"{p.start:6.1f}-" + f"{p.end:.1f}{'*' if p.looped else ''}".ljust(7)
            if p.warning:
                lines.append(f"{label:<40} {span:>14}  {p.warning}")
                continue
            quad = f"Q{p.quadrant} {p.quadrant_word}" if p.quadrant else "-"
            mood = f"  {p.mood_words.split(',')[0]} (C{p.mood_cluster})" if p.mood_words else ""
            lines.append(f"{label:<40} {span:>14}  {quad:<19} {_fmt(p.arousal):>9} {_fmt(p.valence):>8} "
                         f"{_fmt(p.certainty, 2):>5}{mood}")
        if res.note:
            lines.append(f"{'':<40} note: {res.note}")
    if any(r.ok and (r.prediction.looped or any(w.looped for w in r.timeline or [])) for r in results):
        lines.append("* looped: the clip is shorter than the window; its spectral views repeat it to fill the "
                     "window, musicnn hears it once (AudioConfig.encoder_once)")
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


def check_outputs(args, inputs) -> None:
    """Refuse unusable output paths before any work (not after an hour of predictions): ``-o``
    must not be an input or a file merkit did not write (:mod:`merkit.outputs`), ``--plot`` a
    folder where no PNG of the run would replace an image merkit did not make."""

    if args.output:
        check_file(args.output, flag="-o", kind="predictions", inputs=inputs, force=args.force)
    if args.plot:
        check_folder(args.plot, flag="--plot", inputs=inputs)
        for png in plot_paths(inputs, Path(args.plot)).values():
            check_figure(png, flag="--plot")


def plot_paths(files: list[Path], folder: Path) -> dict[str, Path]:
    """One PNG per input, unique even when names repeat: the inputs' paths below their common
    folder are mirrored under ``folder`` (``a/1.mp3`` → ``folder/a/1.mp3.png``)."""
    resolved = [Path(f).resolve() for f in files]
    if len(resolved) == 1:
        return {str(files[0]): folder / (resolved[0].name + ".png")}
    common = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    return {str(f): folder / r.relative_to(common).with_name(r.name + ".png") for f, r in zip(files, resolved)}


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..predict import scan_inputs

    if args.plot and not args.timeline:
        raise ValueError("--plot needs --timeline")
    if getattr(args, "timeline_windows", False) and not args.timeline:
        raise ValueError("--timeline-windows needs --timeline")
    if args.timeline_max_minutes is not None and not 0 < args.timeline_max_minutes < float("inf"):
        raise ValueError(f"--timeline-max-minutes must be a number of minutes > 0, got {args.timeline_max_minutes:g}")
    if args.cluster and args.backend == "onnx":
        raise ValueError("--backend onnx does not run on --cluster yet; use one or the other")
    if args.cluster and args.device != "cpu":
        raise ValueError("--device with --cluster: cluster workers predict on their CPUs")
    scan = scan_inputs(args.paths)
    files = scan.files
    if not files:
        raise ValueError(f"no audio or MIDI files found in {' '.join(args.paths)}"
                         + (f" ({scan.summary()})" if scan.skipped else ""))
    if scan.skipped:  # nothing is left out in silence
        print(f"merkit predict: {scan.summary()}", file=sys.stderr)
    check_outputs(args, files)
    pngs = plot_paths(files, Path(args.plot)) if args.plot else {}
    store, key, stored = _stored_results(args, files)
    todo = [f for f in files if str(f) not in stored]
    model = _model(args) if todo or store is None or store.describe(key) is None else None
    description = repr(model) if model is not None else store.describe(key)
    if store is not None:
        store.describe(key, description)
    results = []
    # disable=None: a bar on a terminal only; a single file needs none
    bar = tqdm(total=len(files), unit="file", disable=None if args.progress and len(files) > 1 else True,
               file=sys.stderr)
    try:
        for res in results_in_order(args, files, model, store, key, stored):
            results.append(res)
            if res.ok and args.plot:
                from ..plots import plot_timeline  # matplotlib (~25 MB) only when plots are asked for

                try:
                    plot_timeline(res, pngs[res.path])
                except (OSError, ValueError) as e:  # a plot that cannot be written costs only itself
                    print(f"merkit predict: {res.path}: plot not written: {e}", file=sys.stderr)
            bar.update()
    except BaseException as e:
        # Ctrl-C, SIGTERM, SIGHUP or a crash: what was computed is written all the same
        bar.close()
        if results:
            try:
                where = _emit(results, args, description)
            except (OSError, ValueError) as err:  # the disk is full as well: the rows went to stdout
                where = str(err)
        if isinstance(e, KeyboardInterrupt):
            kept = f"; the finished rows are {where}" if results else ""
            print(f"merkit predict: stopped by {describe(e)[0]} after {len(results)} of {len(files)} "
                  f"file(s){kept}", file=sys.stderr)
            e.reported = True
        raise
    bar.close()
    if store is not None:
        store.close()
    _emit(results, args, description)
    failed = [r for r in results if r.status == "error"]
    not_music = [r for r in results if r.status == "not_music"]
    if not_music:
        print(f"merkit predict: {len(not_music)} of {len(results)} file(s) hold no music (no emotion given)",
              file=sys.stderr)
    if failed:
        print(f"merkit predict: {len(failed)} of {len(results)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


def track_options(model=None, *, cache: bool = True, workers: int | None = None) -> argparse.Namespace:
    """The options of a plain track-level `merkit predict` run (shipped settings, no timeline,
    local): what `merkit tag` and the beets plugin pass to the helpers below."""
    return argparse.Namespace(model=model, backend="auto", device="cpu", timeline=False, plot=None, cluster=None,
                              timeline_max_minutes=None, timeline_windows=False, content_check=True, cache=cache, workers=workers)


def results_in_order(args, files, model, store, key, stored):
    """Each file's result in the order of ``files``: from the store where it has one, else
    analysed (and then stored)."""
    todo = [f for f in files if str(f) not in stored]
    analysed = iter(()) if not todo else (
        _on_cluster(model, todo, args) if args.cluster else
        model.analyse_files(todo, timeline=args.timeline, workers=args.workers))
    stats = {str(f): store.stat(f) for f in todo} if store is not None else {}
    for f in files:
        res = stored.get(str(f))
        if res is None:
            res = next(analysed)
            if store is not None:
                store.put(key, f, res, stats.get(str(f)))
        yield res


def _model(args):
    """The predictor of ``--model`` / ``--backend`` / ``--device`` with the command's settings."""
    model = load_predictor(args.model, args.backend, args.device)
    if getattr(args, "timeline_windows", False) and hasattr(model, "timeline_mode"):
        model.timeline_mode = "windows"
    if args.timeline_max_minutes is not None:
        model.timeline_max_seconds = 60.0 * args.timeline_max_minutes
    if not args.content_check:
        from ..content import ContentCheck

        model.content_check = ContentCheck(enabled=False)
    return model


def _stored_results(args, files):
    """``(store, run key, {file: stored result})`` for a local run (merkit.result_store); no
    store with ``--no-cache``, ``--cluster`` or ``--plot`` (a plot needs the run's own pass)."""
    if not args.cache or args.cluster or args.plot:
        return None, None, {}
    from ..result_store import ResultStore, run_key

    model_files = list(args.model or [DEFAULT_MODEL_FILE])
    key = run_key(model_files, backend=resolve_backend(args.backend, args.model, args.device), device=args.device,
                  timeline=args.timeline,
                  timeline_max_minutes=args.timeline_max_minutes, content_check=args.content_check,
                  **({"timeline_windows": True} if getattr(args, "timeline_windows", False) else {}))
    store = ResultStore()
    stored = {}
    for f in files:
        res = store.get(key, f)
        if res is not None:
            stored[str(f)] = res
    return store, key, stored


def _on_cluster(model, files, args):
    """``model.analyse_files`` on the cluster of ``--cluster``: each worker rebuilds ``model`` from
    the same file(s) and settings (:class:`merkit.predict.ModelSpec`)."""
    from ..predict import ModelSpec, analyse_files_on_cluster

    if args.shard_size is not None:
        check_shard_size(args.shard_size)  # before any cluster is started
    spec = ModelSpec(paths=tuple(os.path.abspath(m) for m in args.model) if args.model else None,
                     timeline_max_seconds=model.timeline_max_seconds, content_check=model.content_check,
                     timeline_mode=getattr(model, "timeline_mode", None))
    return analyse_files_on_cluster(spec, files, timeline=args.timeline, cluster=args.cluster,
                                    shard_size=args.shard_size)


def _emit(results, args, description: str) -> str:
    """Write the results to ``-o`` (atomically) or stdout; where they went, in words. When ``-o``
    cannot be written (a full disk), the previous file stays, the results go to stdout and an
    :class:`~merkit.outputs.OutputError` says so."""

    text = render(results, args.format, {"description": description})
    if not args.output:
        sys.stdout.write(text)
        sys.stdout.flush()
        return "printed above"
    try:
        write_text(args.output, text)
    except (OSError, OutputError) as e:  # a full disk (OutputError) or any other reason the write failed
        sys.stdout.write(text)
        sys.stdout.flush()
        why = str(e) if isinstance(e, OutputError) else str(space_error(e, args.output) or e)
        raise OutputError(f"-o {why}; the previous file (if any) is untouched; the {len(results)} result(s) "
                          "were printed to stdout instead") from None
    return f"in {args.output}"
