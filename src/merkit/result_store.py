"""Finished results per file, so that a library run analyses only what is new or changed.

``merkit predict ~/Music -o library.csv`` a second time reads the results of unchanged files
from here and analyses only new or changed ones; a run that was killed goes on where it
stopped (each result is stored as soon as it is finished, in its own transaction); files that
are gone from the folder are simply not in the new output.

A stored result is used only when all of this is unchanged (the :func:`run_key`):
* the file: its resolved path, size and modification time (nanoseconds);
* the model: the SHA-256 of its file(s) (the shipped model's too, so a new release misses);
* the settings that change a result: backend, device, timeline or not, the timeline's cap, the
  content check, and merkit's version.

Failed files are never stored (a permission or a damaged file may be fixed without touching
the file's size or time); "not music" results are. The store is one SQLite file in merkit's
cache (``<cache>/results.sqlite``, WAL journal: readers never wait for a writer).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

from .data.paths import cache_dir
from .results import FileResult
from . import __version__

STORE_NAME = "results.sqlite"
_SCHEMA = ("""CREATE TABLE IF NOT EXISTS results (
    run_key TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    result TEXT NOT NULL, PRIMARY KEY (run_key, path))""",
           "CREATE TABLE IF NOT EXISTS runs (run_key TEXT PRIMARY KEY, description TEXT NOT NULL)")


def file_sha256(path: str | os.PathLike, *, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def run_key(model_files, **settings) -> str:
    """The identity of a model and the settings that change its results (module docstring)."""

    ident = {"merkit": __version__, "models": [file_sha256(p) for p in model_files],
             **{k: repr(v) for k, v in sorted(settings.items())}}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _stat(path: str | os.PathLike) -> tuple[str, int, int] | None:
    try:
        p = Path(path).resolve()
        st = p.stat()
    except OSError:
        return None
    return str(p), int(st.st_size), int(st.st_mtime_ns)


class ResultStore:
    """Results by ``(run_key, file)``; a file changed since its result was stored is a miss."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else cache_dir(STORE_NAME)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        for statement in _SCHEMA:
            self.db.execute(statement)
        self.db.commit()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def get(self, key: str, path: str | os.PathLike) -> FileResult | None:
        """The stored result of ``path`` (reported under ``path`` as given), or None."""
        st = _stat(path)
        if st is None:
            return None
        row = self.db.execute("SELECT size, mtime_ns, result FROM results WHERE run_key = ? AND path = ?",
                              (key, st[0])).fetchone()
        if row is None or (row[0], row[1]) != st[1:]:
            return None
        res = FileResult.from_dict(json.loads(row[2]))
        res.path = str(path)
        return res

    def stat(self, path: str | os.PathLike) -> tuple[str, int, int] | None:
        """What identifies a file's content here: ``(resolved path, size, mtime_ns)``; take it
        before analysing the file, and give it to :meth:`put`."""
        return _stat(path)

    def put(self, key: str, path: str | os.PathLike, result: FileResult,
            st: tuple[str, int, int] | None = None) -> bool:
        """Store a finished result (not a failure) of the file as it was when ``st`` was taken
        (default: now); False when it was not stored."""
        st = st or _stat(path)
        if st is None or result.status == "error":
            return False
        with self.db:  # one transaction: a killed run keeps every result stored before it
            self.db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
                            (key, st[0], st[1], st[2], json.dumps(result.to_dict())))
        return True

    def describe(self, key: str, description: str | None = None) -> str | None:
        """The model description of a run key: stored when given, read back otherwise."""
        if description is not None:
            with self.db:
                self.db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?)", (key, description))
            return description
        row = self.db.execute("SELECT description FROM runs WHERE run_key = ?", (key,)).fetchone()
        return row[0] if row else None


__all__ = ["ResultStore", "STORE_NAME", "file_sha256", "run_key"]
