"""merkit tag PATH... [--dry-run] [--remove]: write arousal, valence, quadrant and mood words
into the music files' own tags (mutagen; keys and formats: :mod:`merkit.tags`).

The predictions are `merkit predict`'s: from merkit's result store where a file, the model and
the settings are unchanged (so tagging a tagged library analyses nothing), analysed otherwise.
Each file is written through a temporary copy that replaces it in one rename; a file that
cannot be tagged (read-only, damaged, a format without tags) is an error row and is left as
it was. Exit status 1 when any file failed.
"""
from __future__ import annotations

from . import COMMANDS

import sys
from pathlib import Path

from ._args import add_old_spelling, worker_count
from .predict import _model, _stored_results, results_in_order, track_options
from ..config import DEFAULT_MODEL_FILE
from ..stopping import describe
from ..tags import TAGGABLE, TagError, tag_values, write_tags


def register(sub) -> None:
    p = sub.add_parser("tag", help=COMMANDS["tag"],
                       description="Write merkit's predictions into the files' own tags: ID3 TXXX frames "
                                   "(MP3, AIFF, WAV), Vorbis comments (FLAC, Ogg, Opus), MP4 freeform atoms "
                                   "(M4A), ASF attributes (WMA); keys MERKIT_AROUSAL, MERKIT_VALENCE, "
                                   "MERKIT_QUADRANT, MERKIT_MOOD, ... (docs/library.md). Other tags and the "
                                   "audio are kept as they are.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    p.add_argument("--model", action="append", metavar="FILE",
                   help="model file (default: the shipped model); repeat for one file per task")
    p.add_argument("--dry-run", action="store_true", help="show what would be written; change nothing")
    p.add_argument("--remove", action="store_true", help="remove merkit's tags (nothing is analysed)")
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="analyse every file again instead of reusing merkit's result store")
    p.add_argument("--threads", dest="workers", type=worker_count, default=None,
                   help="decoding threads (default: up to 4; 0 = in this thread)")
    add_old_spelling(p, "--workers", "workers", type=worker_count)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def _model_name(model_files) -> str:
    from ..result_store import file_sha256

    files = list(model_files or [DEFAULT_MODEL_FILE])
    name = "merkit default" if not model_files else ",".join(Path(f).name for f in files)
    return f"{name} {file_sha256(files[0])[:12]}"


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..predict import scan_inputs

    scan = scan_inputs(args.paths)
    files = [f for f in scan.files if f.suffix.lower() in TAGGABLE]
    other = [f for f in scan.files if f.suffix.lower() not in TAGGABLE]
    if scan.skipped or other:
        print(f"merkit tag: {len(scan.skipped) + len(other)} file(s) skipped"
              + (f": {len(other)} in a format without tags (e.g. {other[0]})" if other else "")
              + (f"; {scan.summary()}" if scan.skipped else ""), file=sys.stderr)
    if not files:
        raise ValueError(f"no taggable audio files in {' '.join(args.paths)} ({', '.join(TAGGABLE)})")
    rows, failed = [], 0
    bar = tqdm(total=len(files), unit="file", disable=None if args.progress and len(files) > 1 else True,
               file=sys.stderr)
    try:
        if args.remove:
            for f in files:
                try:
                    if not args.dry_run:
                        write_tags(f, None, remove=True)
                    rows.append((str(f), "would remove" if args.dry_run else "removed", ""))
                except TagError as e:
                    rows.append((str(f), "error", str(e)))
                    failed += 1
                bar.update()
        else:
            failed = _tag(args, files, rows, bar)
    except KeyboardInterrupt as e:
        bar.close()
        _print(rows)
        print(f"merkit tag: stopped by {describe(e)[0]} after {len(rows)} of {len(files)} file(s); each file is "
              "either tagged or untouched", file=sys.stderr)
        e.reported = True
        raise
    bar.close()
    _print(rows)
    if failed:
        print(f"merkit tag: {failed} of {len(files)} file(s) failed (left as they were)", file=sys.stderr)
    return 1 if failed else 0


def _tag(args, files, rows, bar) -> int:
    """Predict (or read from the store) and tag each file; the number of failures."""
    opts = track_options(args.model, cache=args.cache, workers=args.workers)
    store, key, stored = _stored_results(opts, files)
    todo = [f for f in files if str(f) not in stored]
    model = _model(opts) if todo else None
    name = _model_name(args.model)
    failed = 0
    for f, res in zip(files, results_in_order(opts, files, model, store, key, stored)):
        if not res.ok:
            rows.append((str(f), "error" if res.status == "error" else "not tagged", res.error))
            failed += res.status == "error"
            bar.update()
            continue
        values = tag_values(res.prediction, name)
        try:
            if not args.dry_run:
                write_tags(f, values)
                if store is not None:  # same audio, new bytes: the stored result still holds
                    store.put(key, f, res)
            shown = f"Q{res.prediction.quadrant} {res.prediction.quadrant_word}" if res.prediction.quadrant else ""
            rows.append((str(f), "would tag" if args.dry_run else "tagged",
                         shown + (f" ({values})" if args.dry_run else "")))
        except TagError as e:
            rows.append((str(f), "error", str(e)))
            failed += 1
        bar.update()
    if store is not None:
        store.close()
    return failed


def _print(rows) -> None:
    for path, status, what in rows:
        print(f"{path}\t{status}\t{what}")
