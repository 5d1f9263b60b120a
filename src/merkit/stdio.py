"""Keep C libraries' own stderr lines out of merkit's output.

libsndfile decodes MP3 through libmpg123, which prints its resync notes ("Note: Illegal
Audio-MPEG-Header 0x... at offset ...", "Note: Trying to resync...") straight to file
descriptor 2, dozens per damaged file, between merkit's own lines. :func:`quiet_native_stderr`
gives Python's ``sys.stderr`` (merkit's messages, logging, progress bars) a duplicate of the
terminal's descriptor and points descriptor 2 itself, where C code writes, at /dev/null. The
file's problem still reaches the user as merkit's one-line error for that file.

``MERKIT_NATIVE_STDERR=1`` keeps the libraries' output (for debugging a decoder). Nothing is
done when ``sys.stderr`` is not the process's own (e.g. captured by a test runner).
"""
from __future__ import annotations

import os
import sys

ENV = "MERKIT_NATIVE_STDERR"
_done = False


def quiet_native_stderr() -> bool:
    """Route descriptor 2 to /dev/null and ``sys.stderr`` to a copy of it; True if done."""
    global _done
    if _done or os.environ.get(ENV) == "1" or sys.stderr is not sys.__stderr__:
        return _done
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    sys.stderr.flush()
    keep = os.dup(fd)
    stream = os.fdopen(keep, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                       errors=sys.stderr.errors or "backslashreplace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    sys.stderr = sys.__stderr__ = stream
    os.environ[ENV] = "0"  # worker processes inherit descriptor 2 (null) and need not redo it
    _done = True
    return True


__all__ = ["quiet_native_stderr"]
