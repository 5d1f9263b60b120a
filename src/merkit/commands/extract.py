"""merkit extract INPUT -o OUT: audio → Memo2496-layout features."""
from __future__ import annotations

from . import COMMANDS

import sys

from ..config import PRESETS, AudioConfig, FeatureConfig
from ._args import add_cluster_args, add_config_args, add_old_spelling, config_from_args, worker_count
from ..data.registry import resolve_input
from ..outputs import check_folder


def register(sub) -> None:
    p = sub.add_parser("extract", help=COMMANDS['extract'],
                       description="INPUT is a dataset name (see `merkit datasets`), a manifest CSV "
                                   "or a folder of audio. Resumable: rerun the same command after an "
                                   "interruption. Failed tracks are listed in OUT/failures.csv.")
    p.add_argument("input", help="dataset name, manifest CSV, or folder of audio")
    p.add_argument("-o", "--output", required=True, help="output folder (Memo2496 layout)")
    add_old_spelling(p, "--out", "output")
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                   help="feature preset (default: paper = 60 s at 44.1 kHz, T = 87)")
    p.add_argument("--workers", type=worker_count, default=None, help="processes (default: all cores; 0 = in-process)")
    add_cluster_args(p, "tracks")
    p.add_argument("--audio-dir", default=None, help="audio folder for datasets whose audio is not shipped "
                                                    "(DEAM, PMEmo, emoMusic)")
    p.add_argument("--min-duration", type=float, default=None, help="curation: skip tracks shorter than this (s)")
    p.add_argument("--max-duration", type=float, default=None, help="curation: skip tracks longer than this (s)")
    p.add_argument("--views", default="mel,coch",
                   help="comma-separated views to store: mel and coch always, plus pretrained encoders "
                        "(musicnn = musicnn's Million Song Dataset model, musicnn_mtt = its MagnaTagATune "
                        "model, musicnn_vgg / musicnn_vgg_mtt = the VGG models of the same package), stored as OUT/<name>.npy (pooled) and OUT/<name>_seq.npy (3 s patches)")
    p.add_argument("--overwrite", action="store_true", help="discard an unfinished extraction in OUT")
    p.add_argument("--no-progress", action="store_true")
    add_config_args(p, AudioConfig, exclude=("mono",), group_title="audio front end")
    add_config_args(p, FeatureConfig, group_title="features")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..extract import extract
    from ..frontend import parse_views

    from ..data.memo2496 import FEATURES_FILE, LABEL_A_FILE, LABEL_V_FILE, MANIFEST_FILE, view_file
    from ..extract import FAILURES_FILE, WORK_DIR

    views = parse_views(args.views)  # an unknown name fails before any work
    if args.shard_size is not None and args.cluster is None:
        raise ValueError("--shard-size needs --cluster")
    names = [view_file(v) for v in views] + [view_file(f"{v}_seq") for v in views if v not in ("mel", "coch")]
    check_folder(args.output, flag="-o", inputs=[args.input], writes=[
        *names, LABEL_A_FILE, LABEL_V_FILE, MANIFEST_FILE, FEATURES_FILE, FAILURES_FILE, WORK_DIR])

    preset = PRESETS[args.preset]
    audio = config_from_args(preset.audio, args)
    feats = config_from_args(preset.features, args)
    # options a kind of input does not take are ignored by resolve_input
    tracks = resolve_input(args.input, audio_dir=args.audio_dir, workers=args.workers or None,
                           progress=not args.no_progress)
    report = extract(tracks, args.output, audio=audio, features=feats, workers=args.workers,
                     progress=not args.no_progress, min_duration=args.min_duration,
                     max_duration=args.max_duration, overwrite=args.overwrite, views=views,
                     cluster=args.cluster, shard_size=args.shard_size)
    for tid, path, reason in report.failures[:20]:
        print(f"failed: {reason}", file=sys.stderr)
    if len(report.failures) > 20:
        print(f"... and {len(report.failures) - 20} more", file=sys.stderr)
    print(report.summary())
    return 1 if report.failures else 0
