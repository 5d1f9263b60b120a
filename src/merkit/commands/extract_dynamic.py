"""merkit extract-dynamic INPUT -o DIR: 2 Hz frame features and labels for dynamic models.

INPUT is a `merkit medleys` folder (its targets become the labels; frames from 0 s), or a
corpus with time-varying labels: ``pmemo`` (labels ship with merkit) or ``deam`` / ``emomusic``
(``--labels DIR``: the dataset's annotation folder), with ``--audio-dir`` (frames from 15 s,
the annotation start).
"""
from __future__ import annotations

from . import COMMANDS
from ._args import add_old_spelling
from ..data.manifest import read_manifest
from ..outputs import check_folder


def register(sub) -> None:
    p = sub.add_parser("extract-dynamic", help=COMMANDS['extract-dynamic'],
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("input", help="a `merkit medleys` folder, or pmemo | deam | emomusic")
    p.add_argument("-o", "--output", required=True, help="output folder")
    add_old_spelling(p, "--out", "output")
    p.add_argument("--audio-dir", help="the corpus's audio (pmemo, deam, emomusic)")
    p.add_argument("--labels", metavar="DIR", help="deam / emomusic: the dataset's annotation folder")
    p.add_argument("--frames", type=int, default=None, help="frames per track (default: the longest curve)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from ..dynamic_features import FILES, WORK_DIR, DynamicGrid, extract_dynamic

    check_folder(args.output, flag="-o", inputs=[args.input], writes=[
        *FILES.values(), "times.npy", "labels", "tracks.csv", "features.json", "failures.csv", WORK_DIR])

    src = Path(args.input)
    if (src / "medleys.json").is_file():
        info = json.loads((src / "medleys.json").read_text())
        tracks = read_manifest(src / "tracks.csv")
        la, lv = np.load(src / "labels" / "dyn_a.npy"), np.load(src / "labels" / "dyn_v.npy")
        grid = DynamicGrid(start=0.0, n_frames=args.frames or la.shape[1], hop=float(info["hop_seconds"]))
        la, lv = la[:, :grid.n_frames], lv[:, :grid.n_frames]
    elif args.input in ("pmemo", "deam", "emomusic"):
        from ..data.dynamic import START_SECONDS, on_grid, read_corpus
        from ..data.static_va import static_va_manifest

        if not args.audio_dir:
            raise ValueError(f"{args.input}: --audio-dir is needed (its audio is not shipped)")
        tracks = static_va_manifest(args.input, args.audio_dir)
        curves = read_corpus(args.input, args.labels)
        tracks = [t for t in tracks if t.track_id in curves]
        if not tracks:
            raise ValueError(f"no {args.input} song in {args.audio_dir} has dynamic labels")
        _, la, lv = on_grid(curves, [t.track_id for t in tracks], start=START_SECONDS, n_frames=args.frames)
        grid = DynamicGrid(start=START_SECONDS, n_frames=la.shape[1])
    else:
        raise ValueError(f"{args.input}: not a `merkit medleys` folder, nor pmemo | deam | emomusic")
    rep = extract_dynamic(tracks, args.output, grid, labels=(la, lv), progress=args.progress)
    print(f"{rep['done']} of {rep['n']} tracks in {args.output} ({grid.n_frames} frames at {1 / grid.hop:g} Hz from "
          f"{grid.start:g} s); {rep['failed']} failed" + (f" (see {args.output}/failures.csv)" if rep["failed"] else ""))
    return 1 if rep["failed"] else 0
