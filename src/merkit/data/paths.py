"""Where merkit finds shared data and keeps its cache, and the error type of the dataset readers.

shared data: ``$MERKIT_SHARED_DATA`` if set, else ``../shared/data`` next to the repository (the
layout of the development machines: ``/work/main`` beside ``/work/shared``), else
``../shared/data`` relative to the working directory.

cache: ``$MERKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/merkit``, else ``~/.cache/merkit``.
Renders and other derived files go there, never into the repository.
"""
from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_ENV = "MERKIT_SHARED_DATA"
CACHE_ENV = "MERKIT_CACHE"

# src/merkit/data/paths.py -> parents[3] is the repository root (editable install / checkout).
_REPO_ROOT = Path(__file__).resolve().parents[3]


class DatasetError(ValueError):
    """A dataset folder or label file is missing or malformed (one line naming the file)."""


def _shared_candidates() -> list[Path]:
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        return [Path(env).expanduser()]
    return [_REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]


def shared_data_root() -> Path:
    """The shared data folder (README.md, emopia/, emotify/, labels/).

    Raises DatasetError when none of the candidates exists; with ``$MERKIT_SHARED_DATA`` set,
    only that folder is considered, so a typo there is reported rather than silently ignored.
    """
    candidates = _shared_candidates()
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    where = " or ".join(str(c) for c in candidates)
    raise DatasetError(f"shared data folder not found ({where}); set {SHARED_DATA_ENV}")


def cache_dir(name: str | None = None) -> Path:
    """merkit's cache folder, or its sub-folder ``name`` (not created here)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        root = Path(env).expanduser()
    elif os.environ.get("XDG_CACHE_HOME"):
        root = Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "merkit"
    else:
        root = Path.home() / ".cache" / "merkit"
    return root / name if name else root


__all__ = ["DatasetError", "shared_data_root", "cache_dir", "SHARED_DATA_ENV", "CACHE_ENV"]
