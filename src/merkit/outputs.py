"""Where merkit writes: every output checked before any work, written atomically, and never over
a file merkit did not write.

People point merkit at their music collection; it must never damage it. Every command that
writes goes through this module (issue 20; docs/reliability.md):
* :func:`check_file` and :func:`check_folder` run before any work and refuse, in one message
  style (``FLAG PATH: reason``), an output that is one of the command's inputs, an existing file
  whose content is not one of merkit's own formats (audio, MIDI, a document, ...), a read-only
  file (root may ignore the mode bits; merkit does not), a folder where a file is wanted (a
  trailing slash names a folder), a file where a folder is wanted, a path below a regular file,
  and a place merkit may not write in.
* merkit's own file of the same kind (a rerun of the same command) is replaced, as it always
  was; merkit's own file of another kind only with ``--force``; anything else never.
* :func:`atomic_path` / :func:`write_text` write a hidden temporary file beside the target and
  rename it over the target, so the target holds either the old content or the new. On any
  failure the temporary file is removed and the old file stays; a full disk or a read-only file
  system becomes one :class:`OutputError` line naming the path.

merkit's files are recognised by their content, never by their name (:func:`own_kind`): the
predictions table / CSV / JSON by their header, model files by the ``merkit`` entry of the
versions they record, PNGs by the ``Software: merkit`` text chunk merkit writes into them
(:data:`PNG_METADATA`), ONNX graphs by the export's sidecar that names them. A folder is merkit's
when it holds the marker file of a merkit folder (``features.json``, ``run.json``, ...); in a
folder that is not, nothing that exists is overwritten.

This module is at the bottom of merkit's layers: it imports nothing from merkit but the version.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable, Iterator
from . import __version__

# What a full disk / quota / read-only file system looks like to the user: one line, no traceback.
_SPACE_ERRORS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EFBIG: "file too large for the file system"}
HEAD_BYTES = 64 * 1024  # how much of a file is read to recognise it (PNG text chunks come early)


class OutputError(ValueError):
    """An output merkit will not (or could not) write; the message names the flag and the path."""


def png_metadata() -> dict[str, str]:
    """The PNG text chunk that marks a figure as merkit's (matplotlib ``savefig(metadata=...)``)."""

    return {"Software": f"merkit {__version__}"}


# --- what is merkit's --------------------------------------------------------------------------
PREDICTIONS_CSV = "kind,path,status,"
MANIFEST_CSV = "track_id,path,source,split,"
FAILURES_CSV = "track_id,path,reason"
PLAYLIST_MARK = "# merkit playlist"  # the second line (an M3U comment) of every playlist merkit writes
# Marker files of merkit's output folders (extract, extract-dynamic, medleys, train / compare /
# ablate runs, quickstart), each with keys one of which it always holds. Each is written when
# the folder's work starts (or, for the finished folder, at its end), so a killed run resumes.
FOLDER_MARKERS = {"features.json": ("views", "grid"), ".partial/state.json": ("fingerprint", "grid"),
                  "medleys.json": ("hop_seconds",), "run.json": ("seeds",), "compare.json": ("models", "seeds"),
                  "ablation.json": ("combos", "seeds"), "quickstart.json": ("table",),
                  "corpus/synthetic.json": ("n_tracks",)}


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(HEAD_BYTES)
    except OSError:
        return b""


def _json_dict(path: Path, head: bytes) -> dict | None:
    if not head.lstrip().startswith(b"{"):
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _torch_archive_is_merkits(path: Path) -> bool:
    """A ``torch.save`` zip whose pickle records merkit's version (every merkit checkpoint and
    model file does: :func:`merkit.checkpoint.versions`)."""
    try:
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
            return pkl is not None and b"merkit" in z.read(pkl)
    except (OSError, zipfile.BadZipFile, KeyError):
        return False


def _named_by_sidecar(path: Path) -> bool:
    """An ONNX graph that a `merkit export` sidecar (``*.onnx.json``) in its folder lists."""
    for side in path.parent.glob("*.onnx.json"):
        try:
            d = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and path.name in (d.get("graphs") or {}).values():
            return True
    return False


def own_kind(path: str | os.PathLike) -> str | None:
    """The kind of merkit output ``path`` holds (``predictions``, ``metrics``, ``manifest``,
    ``failures``, ``model``, ``figure``, ``onnx``, ``export``, ``json``, ``playlist``), or None when its content
    is not merkit's (or it cannot be read)."""
    path = Path(path)
    head = _head(path)
    if head.startswith(b"\x89PNG"):
        return "figure" if b"Software\x00merkit" in head else None
    if head.startswith(b"PK"):
        return "model" if _torch_archive_is_merkits(path) else None
    if path.suffix == ".onnx":
        return "onnx" if _named_by_sidecar(path) else None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # a cut multi-byte character at the end of the head is fine
        if e.start < len(head) - 4:
            return None
        text = head[:e.start].decode("utf-8")
    first = text.split("\n", 1)[0].strip("\r\ufeff")
    if first == "#EXTM3U" and PLAYLIST_MARK in text:
        return "playlist"
    if first.startswith(PREDICTIONS_CSV) or (first.startswith("file") and "P(A high)" in first):
        return "predictions"
    if first.startswith(MANIFEST_CSV):
        return "manifest"
    if first == FAILURES_CSV:
        return "failures"
    if re.match(r'\{\s*"model"\s*:', text) and '"results"' in text:  # a big JSON's head is enough
        return "predictions"
    d = _json_dict(path, head)
    if d is None:
        return None
    if {"checkpoint", "task", "metrics"} <= d.keys():
        return "metrics"
    if "graphs" in d and "merkit" in (d.get("versions") or {}):
        return "export"
    if "merkit" in (d.get("versions") or {}):
        return "json"
    return None


def folder_is_merkits(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds the marker file of one of merkit's output folders."""
    folder = Path(folder)
    for name, keys in FOLDER_MARKERS.items():
        p = folder / name
        if p.is_file():
            d = _json_dict(p, _head(p))
            if d is not None and any(k in d for k in keys):
                return True
    return False


# --- checks before any work --------------------------------------------------------------------
def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.absolute() == b.absolute()


def _writable_place(path: Path, flag: str, shown: str) -> None:
    """The nearest existing folder at or above ``path``'s parent is a folder merkit may write in
    (and no regular file stands where a folder is needed)."""
    for p in [path.parent, *path.parent.parents] if str(path.parent) else [Path(".")]:
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise OutputError(f"{flag} {shown}: {p} is a file, not a folder, so nothing can be written below it")
            if not os.access(p, os.W_OK | os.X_OK):
                ro = _read_only_fs(p)
                raise OutputError(f"{flag} {shown}: cannot write in {p}" + (" (read-only file system)" if ro else
                                                                          " (permission denied)"))
            return
    # nothing above exists: the current folder decides (relative paths)
    if not os.access(".", os.W_OK):
        raise OutputError(f"{flag} {shown}: cannot write in the current folder")


def _read_only_fs(p: Path) -> bool:
    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _refuse_existing(path: Path, flag: str, shown: str, kind: str, force: bool,
                     also: Iterable[str] = ()) -> None:
    """``path`` exists as a file: allow only merkit's own file of ``kind`` (or ``also``), or
    any merkit file with ``force``."""
    if path.is_symlink() and not path.exists():
        raise OutputError(f"{flag} {shown}: is a dangling symbolic link; choose another name")
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{flag} {shown}: exists and is not a regular file")
    found = own_kind(path)
    if found is None:
        raise OutputError(f"{flag} {shown}: exists and was not written by merkit; merkit never overwrites "
                          "such a file: choose another name")
    if not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK):
        raise OutputError(f"{flag} {shown}: is read-only (mode {stat.filemode(st.st_mode)}); merkit does not "
                          "overwrite read-only files")
    if found != kind and found not in also and not force:
        raise OutputError(f"{flag} {shown}: holds merkit's {found}, not its {kind}; pass --force to replace it")


def check_file(path: str | os.PathLike, *, flag: str, kind: str, inputs: Iterable[str | os.PathLike] = (),
               force: bool = False, also: Iterable[str] = ()) -> Path:
    """Refuse, before any work, an output file ``path`` (given as ``flag``) that merkit must not
    write: see the module docstring. ``kind``: what merkit will write there (``own_kind``'s
    names); ``also``: other kinds that a rerun may replace; ``inputs``: the command's input
    files. Returns ``path`` as a Path."""
    shown = str(path)
    text = os.fspath(path)
    p = Path(path)
    if text.endswith(("/", os.sep)) or p.is_dir():
        raise OutputError(f"{flag} {shown}: is a folder; give a file name (e.g. {p / default_name(kind)})")
    for i in inputs:
        if _same(p, Path(i)):
            raise OutputError(f"{flag} {shown}: is one of the inputs; merkit never writes over its input")
    _writable_place(p, flag, shown)
    if p.exists() or p.is_symlink():
        _refuse_existing(p, flag, shown, kind, force, also)
    return p


def default_name(kind: str) -> str:
    return {"predictions": "predictions.csv", "metrics": "metrics.json", "manifest": "tracks.csv",
            "model": "model.pt", "onnx": "model.onnx", "figure": "figure.png",
            "playlist": "playlist.m3u8"}.get(kind, "output")


def check_folder(path: str | os.PathLike, *, flag: str, writes: Iterable[str] = (),
                 inputs: Iterable[str | os.PathLike] = (), empty: bool = False) -> Path:
    """Refuse, before any work, an output folder ``path`` that merkit must not write in.

    ``writes``: the names (relative paths) the command will write inside it. In a folder that is
    not merkit's (:func:`folder_is_merkits`) none of them may exist. ``empty``: the command needs
    a new or empty folder (a new training run). Returns ``path`` as a Path."""
    shown = str(path)
    p = Path(path)
    for i in inputs:
        if _same(p, Path(i)):
            raise OutputError(f"{flag} {shown}: is one of the inputs; give a new folder")
    if p.exists() or p.is_symlink():
        if not p.is_dir():
            raise OutputError(f"{flag} {shown}: exists and is not a folder; {flag} takes a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise OutputError(f"{flag} {shown}: cannot write in it" + (" (read-only file system)" if _read_only_fs(p)
                                                                         else " (permission denied)"))
        if empty and any(p.iterdir()):
            raise OutputError(f"{flag} {shown}: exists and is not empty; give a new or empty folder")
        if not folder_is_merkits(p):
            for name in writes:
                q = p / name
                if q.exists() or q.is_symlink():
                    raise OutputError(f"{flag} {shown}: {q} exists and was not written by merkit (the folder holds "
                                      "no merkit output); merkit never overwrites it: give a new or empty folder")
    else:
        _writable_place(p / "x", flag, shown)
    return p


def check_figure(path: str | os.PathLike, *, flag: str = "figure") -> Path:
    """A PNG merkit is about to write: absent, or a figure merkit wrote (never a user's image),
    by the rules of :func:`check_file`."""
    p = Path(path)
    if p.exists() or p.is_symlink():
        _refuse_existing(p, flag, str(p), "figure", force=False)
    return p


# --- atomic writes -----------------------------------------------------------------------------
def space_error(e: OSError, path: str | os.PathLike) -> OutputError | None:
    """The one-line error for a full disk, a quota or a read-only file system; None otherwise."""
    why = _SPACE_ERRORS.get(e.errno)
    if not why:
        return None
    err = OutputError(f"{path}: {why}")
    err.errno = e.errno  # callers that keep resumable work add how to resume
    return err


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block ends
    without an exception, removed otherwise. ``suffix``: an extension a writer insists on
    (``.npy`` for ``np.save``, ``.png`` for matplotlib)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as e:
        err = space_error(e, path)
        if err is not None:
            raise err from None
        raise
    tmp = Path(name)
    try:
        # mkstemp makes the file private (0600): give it the mode a plain open() would, or the
        # mode of the file it replaces
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        err = space_error(e, path)
        if err is not None:
            raise err from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (the old file stays whole on any failure)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # a full disk shows here, not after the rename
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj, **kw) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=2, **kw))


def save_npy(path: str | os.PathLike, arr) -> Path:
    """``np.save`` atomically."""
    import numpy as np

    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, arr)
    return Path(path)


__all__ = ["OutputError", "atomic_path", "check_figure", "check_file", "check_folder", "folder_is_merkits",
           "own_kind", "png_metadata", "save_npy", "space_error", "write_bytes", "write_json", "write_text"]
