"""Mood tags in the music files themselves, with mutagen: what `merkit predict` found, where
players and library tools read it.

Keys (namespaced, one value each; probabilities and scores with three decimals):

=========================  ===============================================================
``MERKIT_AROUSAL``         P(high arousal), 0..1
``MERKIT_VALENCE``         P(positive valence), 0..1
``MERKIT_AROUSAL_SCORE``   arousal score in [-1, 1]
``MERKIT_VALENCE_SCORE``   valence score in [-1, 1]
``MERKIT_QUADRANT``        ``Q1`` .. ``Q4`` (Russell quadrant)
``MERKIT_QUADRANT_WORD``   e.g. ``happy/excited``
``MERKIT_CERTAINTY``       probability of that quadrant
``MERKIT_MOOD``            mood words (the MIREX cluster's adjectives)
``MERKIT_MODEL``           the model that wrote them: name and the first 12 hex digits of its SHA-256
=========================  ===============================================================

Where they go: ID3v2 ``TXXX`` frames (description = key) in MP3 and AIFF (and WAV's ID3
chunk); Vorbis comments in FLAC, Ogg Vorbis and Opus; MP4 freeform atoms
``----:org.merkit:KEY`` in M4A/MP4; ASF attributes in WMA. A file is never damaged:
tags are written into a temporary copy beside it, which then replaces the file in one rename
(a killed process leaves the original or the tagged file, never half of one); its other tags
are kept, its audio bytes are not touched (mutagen rewrites only the tag blocks), and a
read-only or unreadable file is an error row, left as it was.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

KEYS = ("MERKIT_AROUSAL", "MERKIT_VALENCE", "MERKIT_AROUSAL_SCORE", "MERKIT_VALENCE_SCORE", "MERKIT_QUADRANT",
        "MERKIT_QUADRANT_WORD", "MERKIT_CERTAINTY", "MERKIT_MOOD", "MERKIT_MODEL")
MP4_PREFIX = "----:org.merkit:"
TAGGABLE = (".mp3", ".aiff", ".aif", ".wav", ".flac", ".ogg", ".opus", ".m4a", ".m4b", ".mp4", ".wma")


class TagError(ValueError):
    """A file whose tags cannot be read or written; the message says which and why."""


def tag_values(prediction, model_name: str) -> dict[str, str]:
    """The tag values of a track :class:`~merkit.results.Prediction` (absent fields are left out)."""
    def num(x):
        return None if x is None else f"{x:.3f}"

    p = prediction
    values = {"MERKIT_AROUSAL": num(p.arousal), "MERKIT_VALENCE": num(p.valence),
              "MERKIT_AROUSAL_SCORE": num(p.arousal_score), "MERKIT_VALENCE_SCORE": num(p.valence_score),
              "MERKIT_QUADRANT": f"Q{p.quadrant}" if p.quadrant else None, "MERKIT_QUADRANT_WORD": p.quadrant_word,
              "MERKIT_CERTAINTY": num(p.certainty), "MERKIT_MOOD": p.mood_words, "MERKIT_MODEL": model_name}
    return {k: v for k, v in values.items() if v}


def _open(path: Path):
    """The mutagen file object of ``path`` with a tag block (created when it has none)."""
    import mutagen

    try:
        f = mutagen.File(str(path))
    except mutagen.MutagenError as e:
        raise TagError(f"{path}: cannot read its tags ({e})") from None
    if f is None:
        raise TagError(f"{path}: not a format merkit can tag ({', '.join(TAGGABLE)})")
    if f.tags is None:
        try:
            f.add_tags()
        except mutagen.MutagenError as e:
            raise TagError(f"{path}: cannot add tags ({e})") from None
    return f


def _kind(f) -> str:
    from mutagen.asf import ASFTags
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    if isinstance(f.tags, ID3):
        return "id3"
    if isinstance(f.tags, MP4Tags):
        return "mp4"
    if isinstance(f.tags, ASFTags):
        return "asf"
    return "vorbis"


def read_tags(path: str | os.PathLike) -> dict[str, str]:
    """merkit's tags in ``path`` (``{key: value}``; {} when it has none)."""
    f = _open(Path(path))
    kind, out = _kind(f), {}
    for key in KEYS:
        if kind == "id3":
            frame = f.tags.get(f"TXXX:{key}")
            value = str(frame.text[0]) if frame else None
        elif kind == "mp4":
            raw = f.tags.get(MP4_PREFIX + key)
            value = bytes(raw[0]).decode("utf-8") if raw else None
        elif kind == "asf":
            raw = f.tags.get(key)
            value = str(raw[0]) if raw else None
        else:
            raw = f.tags.get(key)
            value = raw[0] if raw else None
        if value is not None:
            out[key] = value
    return out


def _set(f, values: dict[str, str], remove: bool) -> None:
    from mutagen.id3 import TXXX
    from mutagen.mp4 import MP4FreeForm

    kind = _kind(f)
    for key in KEYS:  # merkit's keys are replaced (or removed) as a set: no stale value stays
        name = {"id3": f"TXXX:{key}", "mp4": MP4_PREFIX + key}.get(kind, key)
        if name in f.tags:
            del f.tags[name]
    if remove:
        return
    for key, value in values.items():
        if kind == "id3":
            f.tags.add(TXXX(encoding=3, desc=key, text=[value]))
        elif kind == "mp4":
            f.tags[MP4_PREFIX + key] = [MP4FreeForm(value.encode("utf-8"))]
        else:
            f.tags[key] = [value]


def write_tags(path: str | os.PathLike, values: dict[str, str] | None, *, remove: bool = False) -> None:
    """Set merkit's tags of ``path`` to ``values`` (``remove``: delete them), through a temporary
    copy that replaces the file in one rename; the file's mode is kept."""
    import mutagen

    path = Path(path)
    if not path.is_file():
        raise TagError(f"{path}: no such file")
    if not os.access(path, os.W_OK) or not (path.stat().st_mode & 0o222):
        raise TagError(f"{path}: read-only; left as it is")
    _open(path)  # an unreadable file fails here, before any copy
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".merkit-tag", dir=path.parent)
    os.close(fd)
    try:
        shutil.copy2(path, tmp)
        f = _open(Path(tmp))
        _set(f, values or {}, remove)
        try:
            f.save()
        except mutagen.MutagenError as e:
            raise TagError(f"{path}: cannot write its tags ({e}); left as it is") from None
        os.replace(tmp, path)
    except OSError as e:
        raise TagError(f"{path}: cannot write its tags ({e.strerror or e}); left as it is") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


__all__ = ["KEYS", "MP4_PREFIX", "TAGGABLE", "TagError", "read_tags", "tag_values", "write_tags"]
