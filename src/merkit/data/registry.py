"""Every dataset merkit reads, by name, and the one entry point that turns an input into tracks.

``get_manifest(name, **options)`` builds a registered dataset's manifest; ``resolve_input(spec)``
also accepts a manifest CSV, a labels CSV or a folder, so that ``merkit extract INPUT`` takes
any of them. Dataset modules are imported only when used.
"""
from __future__ import annotations

import csv
import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .manifest import Track, check_utf8, read_manifest
from .paths import DatasetError, cache_dir, shared_data_root

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset. ``has_audio_here()`` is True when its audio can be read on this
    machine without further input, False when it cannot, None when the user supplies the data
    (generic folders, Memo2496 feature folders)."""

    name: str
    description: str
    licence: str
    has_audio_here: Callable[[], bool | None]
    builder: Callable[..., list[Track]]


def _shared_dir(*parts: str) -> bool:
    try:
        return shared_data_root().joinpath(*parts).is_dir()
    except DatasetError:
        return False


def _emopia_audio() -> bool:
    from ..midi import RenderError, find_fluidsynth, find_soundfont
    try:
        find_fluidsynth()
        find_soundfont()
    except RenderError:
        return False
    return _shared_dir("emopia", "midis")


def _emopia(root=None, *, cache_dir=None, render=True, workers=None, sample_rate=None, soundfont=None,
            progress=True) -> list[Track]:
    from .emopia import emopia_manifest
    from ..midi import DEFAULT_SAMPLE_RATE
    return emopia_manifest(root, cache_dir=cache_dir, render=render, workers=workers,
                           sample_rate=sample_rate or DEFAULT_SAMPLE_RATE, soundfont=soundfont, progress=progress)


def _emotify(root=None, *, require_audio=True) -> list[Track]:
    from .emotify import emotify_manifest
    return emotify_manifest(root, require_audio=require_audio)


def _mirex_mood(root=None, *, require_audio=True) -> list[Track]:
    from .mirex_mood import mirex_mood_manifest
    return mirex_mood_manifest(root, require_audio=require_audio)


def _static(name: str):
    def build(audio_dir=None, *, labels_root=None, require_audio=True) -> list[Track]:
        from .static_va import static_va_manifest
        return static_va_manifest(name, audio_dir, labels_root=labels_root, require_audio=require_audio)

    def audio_here() -> bool:
        from .static_va import audio_dir_from_env
        d = audio_dir_from_env(name)
        return d is not None and d.is_dir()

    return build, audio_here


def _generic(audio_dir, labels_csv=None, *, id_column=None, centre=0.0, keep_unlabelled=False,
             licence="") -> list[Track]:
    from .generic import generic_manifest
    return generic_manifest(audio_dir, labels_csv, id_column=id_column, centre=centre,
                            keep_unlabelled=keep_unlabelled, licence=licence)


def _synthetic(root=None, *, n_tracks=None, seed=None, duration=None, sample_rate=None, workers=None,
               progress=None) -> list[Track]:
    from .synthetic import generate  # written alongside; imported only when asked for
    out_dir = Path(root) if root is not None else cache_dir("synthetic")
    given = {"n_tracks": n_tracks, "seed": seed, "duration": duration, "sample_rate": sample_rate,
             "workers": workers, "progress": progress}
    return generate(out_dir, **{k: v for k, v in given.items() if v is not None})


def _q4(root=None, *, require_audio=True) -> list[Track]:
    from .q4 import q4_manifest
    return q4_manifest(root, require_audio=require_audio)


def _q4_here() -> bool:
    from .q4 import METADATA_FILE, default_root
    return (default_root() / METADATA_FILE).is_file()


def _memo2496(root) -> list[Track]:
    from .memo2496 import load_memo2496
    return load_memo2496(root).tracks


_deam, _deam_audio = _static("deam")
_pmemo, _pmemo_audio = _static("pmemo")
_emomusic, _emomusic_audio = _static("emomusic")

DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("emopia", "EMOPIA: 1 078 pop-piano MIDI clips, 4 quadrants, official song-level split; "
                "rendered with FluidSynth", "CC BY-NC-SA 4.0", _emopia_audio, _emopia),
    DatasetInfo("emotify", "Emotify: 400 one-minute excerpts, 4 genres, GEMS induced-emotion votes "
                "(V/A by a heuristic mapping)", "Magnatune, Creative Commons non-commercial",
                lambda: _shared_dir("emotify", "audio"), _emotify),
    DatasetInfo("mirex_mood", "MIREX-like mood set: 891 real 30 s song previews, 5 MIREX mood clusters "
                "(V/A by cluster position); group splits by artist", "AllMusic previews, research use only",
                lambda: _shared_dir("mirex_mood", "audio"), _mirex_mood),
    DatasetInfo("q4", "4Q audio emotion dataset (Panda et al. 2018): 900 real 30 s AllMusic clips, 225 per "
                "quadrant, exact V/A signs, moods and genres; group splits by artist ($MERKIT_Q4_DIR)",
                "AllMusic previews, research use only", _q4_here, _q4),
    DatasetInfo("deam", "DEAM: 1 802 songs, static V/A (1-9), official split; audio via --audio-dir",
                "research use; audio under each track's Creative Commons licence", _deam_audio, _deam),
    DatasetInfo("pmemo", "PMEmo: 767 pop choruses, static V/A, official split; audio via --audio-dir",
                "research use only (commercial recordings)", _pmemo_audio, _pmemo),
    DatasetInfo("emomusic", "emoMusic: 744 45-s clips, static V/A, official split; audio via --audio-dir",
                "research use; audio under each track's Creative Commons licence", _emomusic_audio, _emomusic),
    DatasetInfo("generic", "any folder of audio/MIDI, optionally labelled by a CSV", "yours",
                lambda: None, _generic),
    DatasetInfo("synthetic", "generated cue-controlled pieces with labels true by construction (demo, tests)",
                "CC0 (generated)", lambda: True, _synthetic),
    DatasetInfo("memo2496", "a Memo2496-layout feature folder (the official download or merkit extract output)",
                "as the source", lambda: None, _memo2496),
)}


def _options_for(builder, options: dict, *, strict: bool, what: str) -> dict:
    """The options ``builder`` takes (None values dropped). Unknown ones are an error when
    ``strict``, else left out with a debug message."""
    params = inspect.signature(builder).parameters
    names = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    given = {k: v for k, v in options.items() if v is not None}
    required = [n for n in names if params[n].default is inspect.Parameter.empty]
    lacking = [n for n in required if n not in given]
    if lacking:
        raise DatasetError(f"{what} needs option {', '.join(lacking)}")
    unknown = sorted(set(given) - set(names))
    if unknown and strict:
        raise DatasetError(f"{what} takes no option {', '.join(unknown)} (it takes: {', '.join(names)})")
    if unknown:
        log.debug("%s: ignoring options %s", what, ", ".join(unknown))
    return {k: v for k, v in given.items() if k in names}


def get_manifest(name: str, **options) -> list[Track]:
    """The manifest of registered dataset ``name`` (see :data:`DATASETS`); options go to its
    builder, None values are dropped and any other option it does not take is an error."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    builder = DATASETS[name].builder
    return builder(**_options_for(builder, options, strict=True, what=f"dataset {name!r}"))


def _csv_columns(path: Path) -> list[str]:
    check_utf8(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh, skipinitialspace=True), [])
    return [c.strip() for c in header]


def read_manifest_csv(path: str | os.PathLike) -> list[Track]:
    """A manifest CSV whose relative ``path`` entries are taken relative to the CSV's folder
    (where such a file exists), so that a corpus folder can be moved with its manifest."""
    path = Path(path)
    tracks = read_manifest(path)
    for t in tracks:
        if t.path and not os.path.isabs(t.path) and (path.parent / t.path).exists():
            t.path = str(path.parent / t.path)
    return tracks


def _no_options(options: dict, *, strict: bool, what: str) -> None:
    given = sorted(k for k, v in options.items() if v is not None)
    if given and strict:
        raise DatasetError(f"{what} takes no options (got {', '.join(given)})")
    if given:
        log.debug("%s: ignoring options %s", what, ", ".join(given))


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or os.sep in spec or spec.startswith((".", "~")) or spec.lower().endswith(".csv")


def resolve_input(spec: str | os.PathLike, *, strict: bool = False, **options) -> list[Track]:
    """Tracks from any input a command accepts:

    - a dataset name of :data:`DATASETS` (``"emopia"``; write ``./emopia`` for a folder of that name);
    - a manifest CSV (columns ``track_id`` and ``path`` at least; e.g. a ``tracks.csv``);
    - a labels CSV for a folder of audio (:mod:`merkit.data.generic`): the audio is in option
      ``audio_dir``, default the CSV's folder;
    - a Memo2496-layout folder (its tracks), a folder with a ``tracks.csv`` (that manifest), or
      any other folder (every audio file in it, unlabelled unless option ``labels_csv``).

    Options a kind of input does not take are ignored (one command line serves every kind),
    unless ``strict``.
    """
    s = os.fspath(spec)
    if s in DATASETS and not _looks_like_path(s):
        builder = DATASETS[s].builder
        return builder(**_options_for(builder, options, strict=strict, what=f"dataset {s!r}"))
    p = Path(s).expanduser()
    if p.is_file():
        if p.suffix.lower() != ".csv":
            raise DatasetError(f"{p}: expected a CSV manifest or labels file, a folder or a dataset name")
        columns = _csv_columns(p)
        if "track_id" in columns and "path" in columns:
            _no_options(options, strict=strict, what=f"manifest {p}")
            return read_manifest_csv(p)
        from .generic import ID_COLUMNS
        if any(c in columns for c in ID_COLUMNS):
            opts = {**options, "labels_csv": p, "audio_dir": options.get("audio_dir") or p.parent}
            return _generic(**_options_for(_generic, opts, strict=strict, what=f"labels {p}"))
        raise DatasetError(f"{p}: neither a manifest (needs columns track_id, path) nor a labels CSV "
                           f"(needs one of {', '.join(ID_COLUMNS)}); columns: {', '.join(columns)}")
    if p.is_dir():
        from .memo2496 import MANIFEST_FILE, is_memo2496_dir
        if is_memo2496_dir(p):
            _no_options(options, strict=strict, what=f"Memo2496 folder {p}")
            return _memo2496(p)
        if (p / MANIFEST_FILE).is_file() and options.get("labels_csv") is None:
            _no_options(options, strict=strict, what=f"manifest {p / MANIFEST_FILE}")
            return read_manifest_csv(p / MANIFEST_FILE)
        if strict and options.get("audio_dir") is not None:
            raise DatasetError(f"{p} is the audio folder; audio_dir ({options['audio_dir']}) is not used")
        return _generic(**_options_for(_generic, {**options, "audio_dir": p}, strict=strict, what=f"folder {p}"))
    raise DatasetError(f"{s}: neither a dataset name ({', '.join(DATASETS)}) nor an existing CSV file or folder")


__all__ = ["DATASETS", "DatasetInfo", "get_manifest", "resolve_input", "read_manifest_csv"]
