"""merkit datasets [manifest NAME -o tracks.csv]: list the datasets, or write one's manifest."""
from __future__ import annotations

from . import COMMANDS
from ._args import add_old_spelling, worker_count

from collections import Counter
from ..data.registry import DATASETS, get_manifest, resolve_input
from ..data.manifest import write_manifest
from ..outputs import check_file

# CLI flag -> builder option; only flags the user set are passed, and a dataset that does not
# take one says so (registry.get_manifest is strict).
_FLAG_OPTIONS = ("root", "audio_dir", "labels_csv", "id_column", "centre", "cache_dir", "workers", "render")


def register(sub) -> None:
    p = sub.add_parser("datasets", help=COMMANDS['datasets'],
                       description="Without a sub-command: list the datasets, their licences and "
                                   "whether their audio is available on this machine.")
    p.set_defaults(func=run_list)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    m = actions.add_parser("manifest", help="write a dataset's manifest (tracks.csv)",
                           description="NAME is a dataset name (see `merkit datasets`), a folder of audio "
                                       "or a CSV (manifest or labels).")
    m.add_argument("name", metavar="NAME", help="dataset name, folder or CSV")
    m.add_argument("-o", "--output", required=True, help="manifest to write (CSV)")
    add_old_spelling(m, "--out", "output")
    m.add_argument("--force", action="store_true",
                   help="let -o replace another kind of merkit output (never anything merkit did not write)")
    m.add_argument("--root", default=None,
                   help="the dataset's folder if not the shared data (emopia, emotify); required for "
                        "memo2496; output folder of synthetic")
    m.add_argument("--audio-dir", default=None, help="audio folder (deam, pmemo, emomusic, generic)")
    m.add_argument("--labels", dest="labels_csv", default=None, help="labels CSV for a folder of audio (generic)")
    m.add_argument("--id-column", default=None, help="generic: the labels CSV's id column "
                                                     "(default: track_id, file or filename)")
    m.add_argument("--centre", type=float, default=None,
                   help="generic: subtract this from arousal and valence (e.g. 5 for a 1-9 scale)")
    m.add_argument("--cache-dir", default=None,
                   help="where EMOPIA renders are cached (default $MERKIT_CACHE/emopia)")
    m.add_argument("--no-render", dest="render", action="store_const", const=False, default=None,
                   help="EMOPIA: keep the MIDI paths instead of rendering audio")
    m.add_argument("--workers", type=worker_count, default=None, help="parallel renders (default: all cores; 0 = in-process)")
    m.set_defaults(func=run_manifest)


def run_list(args) -> int:
    here = {True: "yes", False: "no", None: "(yours)"}
    rows = [(d.name, here[d.has_audio_here()], d.licence, d.description) for d in DATASETS.values()]
    widths = [max(len(r[k]) for r in rows + [("name", "audio here", "licence", "")]) for k in range(3)]
    print(f"{'name':<{widths[0]}}  {'audio here':<{widths[1]}}  {'licence':<{widths[2]}}  description")
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    return 0


def summarize(tracks) -> list[str]:
    """Counts per split, per quadrant and per label sign, one line each."""
    def line(title, counter, order):
        return f"{title}: " + ", ".join(f"{k} {counter[k]}" for k in order if counter.get(k))

    split = Counter(t.split or "(none)" for t in tracks)
    quadrant = Counter(f"Q{t.quadrant}" if t.quadrant else "(none)" for t in tracks)

    def sign(x):
        return "(none)" if x != x else "+" if x >= 0 else "-"

    arousal = Counter(sign(t.label_a) for t in tracks)
    valence = Counter(sign(t.label_v) for t in tracks)
    return [line("split", split, ("train", "val", "test", "(none)")),
            line("quadrant", quadrant, ("Q1", "Q2", "Q3", "Q4", "(none)")),
            line("arousal", arousal, ("+", "-", "(none)")),
            line("valence", valence, ("+", "-", "(none)"))]


def run_manifest(args) -> int:
    check_file(args.output, flag="-o", kind="manifest", inputs=[args.name, *(p for p in (args.labels_csv,) if p)],
               force=args.force)
    options = {k: getattr(args, k) for k in _FLAG_OPTIONS}
    if args.name in DATASETS:
        tracks = get_manifest(args.name, **options)
    else:
        tracks = resolve_input(args.name, strict=True, **options)
    if not tracks:
        raise ValueError(f"{args.name}: no tracks")
    out = write_manifest(tracks, args.output)
    print(f"wrote {len(tracks)} tracks to {out}")
    for line in summarize(tracks):
        print("  " + line)
    return 0
