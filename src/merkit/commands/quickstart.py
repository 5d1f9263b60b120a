"""merkit quickstart: the main job on built-in data, no download.

generate a synthetic corpus → extract Mel + cochleagram (paper preset) → train DAMER on arousal
and valence (model selection on the validation split) → evaluate on the test split → table.

The synthetic corpus is for demos and smoke tests: its labels follow musical cues by
construction, so a score on it says nothing about real music.
"""
from __future__ import annotations

from . import COMMANDS
from ._args import add_old_spelling, worker_count

import time
import shutil
from pathlib import Path
from ..config import ModelConfig, TrainConfig
from ..outputs import check_folder, write_json
from ..data.paths import cache_dir


def register(sub) -> None:
    p = sub.add_parser("quickstart", help=COMMANDS['quickstart'],
                       description=__doc__.split("\n\n")[0] + " " + __doc__.split("\n\n")[2])
    add_old_spelling(p, "--out", "output")
    p.add_argument("-o", "--output", default=None,
                   help="working folder, ~300 MB (default: <cache>/quickstart, i.e. $MERKIT_CACHE/quickstart "
                        "or ~/.cache/merkit/quickstart)")
    p.add_argument("--tracks", type=int, default=240, help="synthetic tracks (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=15, help="DAMER training epochs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=worker_count, default=None, help="processes for generation and extraction "
                                                                       "(default: all cores; 0 = in-process)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def quickstart(out: str | Path, *, n_tracks: int = 240, epochs: int = 15, seed: int = 0,
               workers: int | None = None, progress: bool = True, log=print) -> dict:
    from ..data.memo2496 import load_memo2496
    from ..data.synthetic import generate
    from ..extract import extract
    from ..training.runner import train

    out = Path(out)
    t0 = time.perf_counter()
    log(f"[1/4] generating {n_tracks} synthetic tracks in {out / 'corpus'}")
    tracks = generate(out / "corpus", n_tracks=n_tracks, seed=seed, workers=workers)
    log("[2/4] extracting features (paper preset: 60 s window at 44.1 kHz, 128 Mel + 84 gammatone, T = 87)")
    rep = extract(tracks, out / "features", workers=workers, progress=progress)
    log("      " + rep.summary())
    fs = load_memo2496(out / "features")
    results = {}
    for step, label in ((3, "a"), (4, "v")):
        name = {"a": "arousal", "v": "valence"}[label]
        log(f"[{step}/4] training DAMER on {name} ({epochs} epochs, split: synthetic train/val/test)")
        cfg = TrainConfig(label=label, epochs=epochs, split="official", seed=seed, batch_size=64)
        if (out / "runs" / name).exists():  # a rerun: corpus and features are reused, training is fresh
            shutil.rmtree(out / "runs" / name)
        res = train(fs, ModelConfig(), cfg, out / "runs" / name, seeds=[seed], progress=progress,
                    data_ref=str(out / "features"))
        results[name] = res
    table = format_results(results)
    log("")
    log(table)
    log(f"\ndone in {time.perf_counter() - t0:.0f} s. Runs, checkpoints and logs: {out / 'runs'}")
    log("(synthetic data: a smoke test of the pipeline, not a measure of accuracy on real music)")
    summary = {"seconds": time.perf_counter() - t0, "extract": rep.summary(),
               "test": {k: v["per_seed"][0]["test"] for k, v in results.items()}, "table": table}

    write_json(out / "quickstart.json", summary, default=float)
    return summary


def format_results(results: dict) -> str:
    rows = ["| task | head | test ACC | test F1 | test AUC | best epoch (by val) |", "|---|---|---|---|---|---|"]
    for name, res in results.items():
        r = res["per_seed"][0]
        for head, m in r["test"].items():
            rows.append(f"| {name} | {head} | {m['acc']:.3f} | {m['f1']:.3f} | {m['auc']:.3f} | {r['best_epoch']} |")
    return "\n".join(rows)


def run(args) -> int:
    out = args.output if args.output else cache_dir("quickstart")
    # it deletes and rewrites runs/ on a rerun: never in a folder that is not a quickstart's
    check_folder(out, flag="-o", writes=["corpus", "features", "runs", "quickstart.json"])
    print(f"merkit quickstart: working folder {out}", flush=True)
    quickstart(out, n_tracks=args.tracks, epochs=args.epochs, seed=args.seed, workers=args.workers,
               progress=not args.no_progress)
    return 0
