"""merkit playlist LIBRARY -o FILE.m3u8: a playlist from a `merkit predict` CSV/JSON by mood
(``--mood calm``), by region (``--valence 0.6: --arousal :0.4``), along a mood arc
(``--from energetic --to calm``) or near a song (``--near song.mp3``); see
:mod:`merkit.playlists`."""
from __future__ import annotations

from . import COMMANDS

import sys

from ..outputs import check_file, write_text
from ..playlists import MOODS, arc, find_track, in_region, load_library, m3u8, mood_point, nearest, parse_range


def register(sub) -> None:
    p = sub.add_parser("playlist", help=COMMANDS["playlist"],
                       description="Make an M3U8 playlist (paths relative to it) from the predictions of "
                                   "`merkit predict LIBRARY -o library.csv`. Moods: " + ", ".join(sorted(MOODS)) + ".")
    p.add_argument("library", metavar="LIBRARY", help="a `merkit predict` output, CSV or JSON")
    p.add_argument("-o", "--output", required=True, metavar="FILE.m3u8", help="the playlist to write")
    p.add_argument("--force", action="store_true", help="replace another kind of merkit output")
    p.add_argument("-n", type=int, default=30, help="number of tracks (default 30)")
    p.add_argument("--mood", help="the tracks nearest to this mood on the valence-arousal plane")
    p.add_argument("--from", dest="start", metavar="MOOD", help="a mood arc: from this mood ...")
    p.add_argument("--to", dest="end", metavar="MOOD", help="... to this one, in steady steps")
    p.add_argument("--near", metavar="SONG", help="the tracks nearest in emotion to this one (in the library)")
    p.add_argument("--valence", metavar="LO:HI", help="only tracks with P(positive valence) in this range, e.g. 0.6:")
    p.add_argument("--arousal", metavar="LO:HI", help="only tracks with P(high arousal) in this range, e.g. :0.4")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.n < 1:
        raise ValueError(f"-n must be at least 1, got {args.n}")
    modes = [m for m, on in (("--mood", args.mood), ("--from/--to", args.start or args.end), ("--near", args.near))
             if on]
    if len(modes) > 1:
        raise ValueError(f"choose one of --mood, --from/--to, --near (got {' and '.join(modes)})")
    if bool(args.start) != bool(args.end):
        raise ValueError("a mood arc needs both --from and --to")
    valence, arousal = parse_range(args.valence, "--valence"), parse_range(args.arousal, "--arousal")
    start = end = point = None
    if args.start:
        start, end = mood_point(args.start), mood_point(args.end)
    elif args.mood:
        point = mood_point(args.mood)
    check_file(args.output, flag="-o", kind="playlist", inputs=[args.library], force=args.force)
    tracks = in_region(load_library(args.library), valence, arousal)
    title = " ".join(x for x in (args.mood, args.start and f"{args.start} to {args.end}",
                                 args.near and f"near {args.near}", args.valence and f"valence {args.valence}",
                                 args.arousal and f"arousal {args.arousal}") if x) or "merkit"
    if args.near:
        seed = find_track(load_library(args.library), args.near)
        chosen = nearest(tracks, (seed.v, seed.a), args.n, exclude=seed.path)
    elif start is not None:
        chosen = arc(tracks, start, end, args.n)
    elif point is not None:
        chosen = nearest(tracks, point, args.n)
    else:  # a region only: its tracks, in the library's order
        chosen = tracks[:args.n]
    if not chosen:
        raise ValueError(f"{args.library}: no track matches ({len(tracks)} in the region asked for)")
    write_text(args.output, m3u8(chosen, args.output, title))
    print(f"{args.output}: {len(chosen)} track(s) ({title})")
    if len(chosen) < args.n:
        print(f"merkit playlist: only {len(chosen)} of the {args.n} tracks asked for match", file=sys.stderr)
    return 0
