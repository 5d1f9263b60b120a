"""EMOPIA (Hung et al., ISMIR 2021): 1 078 piano clips as MIDI, one Russell quadrant per clip.

Layout (``shared/data/emopia``)::

    midis/Q{1..4}_<youtube-id>_<n>.mid    the quadrant annotated by the authors, the source
                                          recording's YouTube id (may contain "_" and "-"), clip n
    split/{train,val,test}.csv            the official song-level split (fname,label);
                                          767 / 198 / 86 clips, 27 clips are in no split

Labels are the quadrant's signs: arousal +1 for Q1/Q2 and -1 for Q3/Q4, valence +1 for Q1/Q4 and
-1 for Q2/Q3 (EMOPIA has no continuous ratings). The audio is a FluidSynth render of the MIDI
(:mod:`merkit.midi`), not the recording the EMOPIA paper classified.
"""
from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path

import soundfile as sf

from .manifest import Track
from .paths import DatasetError, cache_dir as default_cache_dir, shared_data_root
from ..midi import DEFAULT_SAMPLE_RATE, RenderError, midi_duration, render_many

log = logging.getLogger(__name__)

SOURCE = "emopia"
LICENCE = "CC BY-NC-SA 4.0"
SPLITS = ("train", "val", "test")
# Q{quadrant}_{youtube id}_{clip}: the id is matched greedily so that underscores inside it stay.
CLIP_NAME = re.compile(r"^Q([1-4])_(.+)_(\d+)$")
# Russell quadrant -> (arousal sign, valence sign), EMOPIA README / paper §3.
QUADRANT_SIGNS = {1: (1.0, 1.0), 2: (1.0, -1.0), 3: (-1.0, -1.0), 4: (-1.0, 1.0)}


def parse_clip_name(stem: str) -> tuple[int, str, int]:
    """``"Q2_L3_TadjSQQ0_0"`` -> ``(2, "L3_TadjSQQ0", 0)``: quadrant, song id, clip number."""
    m = CLIP_NAME.match(stem)
    if m is None:
        raise DatasetError(f"{stem}: not an EMOPIA clip name (expected Q<1-4>_<youtube-id>_<n>)")
    return int(m.group(1)), m.group(2), int(m.group(3))


def read_official_split(root: Path) -> dict[str, str]:
    """Clip name -> "train" | "val" | "test" from ``split/{train,val,test}.csv``."""
    split: dict[str, str] = {}
    for name in SPLITS:
        path = root / "split" / f"{name}.csv"
        if not path.is_file():
            raise DatasetError(f"{path}: official split file missing")
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if "fname" not in (reader.fieldnames or []):
                raise DatasetError(f"{path}: no 'fname' column (columns: {reader.fieldnames})")
            for row in reader:
                clip = row["fname"].strip()
                if clip in split and split[clip] != name:
                    raise DatasetError(f"{path}: {clip} is also in the {split[clip]} split")
                split[clip] = name
    return split


def default_root() -> Path:
    return shared_data_root() / "emopia"


def emopia_manifest(root: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None,
                    render: bool = True, workers: int | None = None, sample_rate: int = DEFAULT_SAMPLE_RATE,
                    soundfont: str | os.PathLike | None = None, progress: bool = True) -> list[Track]:
    """The EMOPIA manifest, one track per MIDI clip, sorted by clip name.

    render: True renders every clip to WAV (cached in ``cache_dir``, default
      ``$MERKIT_CACHE/emopia``) and points ``path`` at the render; clips that fail to render are
      skipped with a warning. False keeps ``path`` = the MIDI file and ``duration`` = the MIDI's
      length. Either way ``extra["midi"]`` is the MIDI path.
    group is the YouTube id of the source recording, so all clips of a song share it (the
    official split is song-level). Clips in none of the official split files get split "".
    """
    root = Path(root) if root is not None else default_root()
    midi_dir = root / "midis"
    if not midi_dir.is_dir():
        raise DatasetError(f"{midi_dir}: EMOPIA MIDI folder not found")
    split = read_official_split(root)
    clips: list[tuple[Path, int, str]] = []
    for p in sorted(midi_dir.glob("*.mid")):
        try:
            q, song, _ = parse_clip_name(p.stem)
        except DatasetError as e:
            log.warning("skipping %s: %s", p, e)
            continue
        clips.append((p, q, song))
    if not clips:
        raise DatasetError(f"{midi_dir}: no EMOPIA clips (Q<1-4>_<id>_<n>.mid)")
    unknown = sorted(set(split) - {p.stem for p, _, _ in clips})
    if unknown:
        log.warning("%d clips of the official split have no MIDI file in %s, e.g. %s",
                    len(unknown), midi_dir, ", ".join(unknown[:3]))

    audio: dict[Path, Path] = {}
    if render:
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir("emopia")
        audio, failures = render_many([p for p, _, _ in clips], cache, workers=workers, sample_rate=sample_rate,
                                      soundfont=soundfont, progress=progress)
        for p, reason in failures:
            log.warning("skipping %s: %s", p.name, reason)

    tracks = []
    for p, q, song in clips:
        try:
            if render:
                if p not in audio:
                    continue
                path, duration = audio[p], sf.info(audio[p]).duration
            else:
                path, duration = p, midi_duration(p)
        except (RenderError, sf.LibsndfileError, RuntimeError) as e:
            log.warning("skipping %s: %s", p.name, e)
            continue
        a, v = QUADRANT_SIGNS[q]
        tracks.append(Track(track_id=p.stem, path=str(path), source=SOURCE, split=split.get(p.stem, ""),
                            label_a=a, label_v=v, quadrant=q, duration=float(duration), group=song,
                            licence=LICENCE, extra={"midi": str(p)}))
    return tracks


__all__ = ["emopia_manifest", "parse_clip_name", "read_official_split", "QUADRANT_SIGNS", "LICENCE"]
