"""merkit medleys --from emopia,mirex_mood,emotify -o DIR: medleys of labelled clips with 2 Hz
targets (merkit.data.medley), the stand-in for DEAM / PMEmo's dynamic labels."""
from __future__ import annotations

from . import COMMANDS
from ._args import add_old_spelling
from ..data.registry import resolve_input
from ..outputs import check_folder


def register(sub) -> None:
    from ..data.medley import MedleyConfig

    d = MedleyConfig()
    p = sub.add_parser("medleys", help=COMMANDS['medleys'],
                       description="Concatenate 5-20 s segments of clips whose valence/arousal is known "
                                   "(crossfaded), with a 2 Hz target curve that steps between the "
                                   "segments' labels, lagged like a human rater. Clips are split "
                                   "train/val/test by song first; a medley uses clips of one split.")
    p.add_argument("--from", dest="sources", required=True, metavar="A,B,...",
                   help="dataset names or manifest CSVs / feature folders with labels and audio paths")
    p.add_argument("-o", "--output", required=True, help="output folder (audio/, tracks.csv, labels/dyn_[av].npy)")
    add_old_spelling(p, "--out", "output")
    p.add_argument("-n", "--n-medleys", type=int, default=d.n_medleys, help=f"(default {d.n_medleys})")
    p.add_argument("--seconds", type=float, default=d.seconds, help=f"medley length (default {d.seconds:g})")
    p.add_argument("--min-segment", type=float, default=d.min_segment)
    p.add_argument("--max-segment", type=float, default=d.max_segment)
    p.add_argument("--crossfade", type=float, default=d.crossfade)
    p.add_argument("--lag", dest="lag_seconds", type=float, default=d.lag_seconds,
                   help=f"annotation lag: time constant of the targets' response in s (default {d.lag_seconds:g})")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--test-ids", metavar="FILE",
                   help="clips (one 'source:track_id' per line) whose songs form the test split, e.g. "
                        "another model's test parts; the rest is split train / val")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..data.medley import INFO, MANIFEST, MedleyConfig, make_medleys
    from ..data.memo2496 import is_memo2496_dir, load_memo2496

    check_folder(args.output, flag="-o", inputs=[s.strip() for s in args.sources.split(",") if s.strip()],
                 writes=["audio", "labels", MANIFEST, INFO])

    tracks = []
    for spec in (s.strip() for s in args.sources.split(",") if s.strip()):
        if is_memo2496_dir(Path(spec)):
            tracks += load_memo2496(spec).tracks  # its tracks.csv holds paths and labels
        else:
            tracks += resolve_input(spec)
    cfg = MedleyConfig(n_medleys=args.n_medleys, seconds=args.seconds, min_segment=args.min_segment,
                       max_segment=args.max_segment, crossfade=args.crossfade, lag_seconds=args.lag_seconds,
                       seed=args.seed)
    test_ids = None
    if args.test_ids:
        test_ids = {ln.strip() for ln in Path(args.test_ids).read_text(encoding="utf-8").splitlines() if ln.strip()}
    rows = make_medleys(tracks, args.output, cfg, test_ids=test_ids)
    by = {s: sum(r.split == s for r in rows) for s in ("train", "val", "test")}
    print(f"{len(rows)} medleys of {cfg.seconds:g} s in {args.output} (train {by['train']}, val {by['val']}, "
          f"test {by['test']}) from {len(tracks)} clips")
    return 0
