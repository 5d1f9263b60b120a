"""Keep freed memory in the process on glibc, so that training on a CPU does not page-fault.

glibc's ``malloc`` serves every block larger than its mmap threshold (at most 32 MB) with a
fresh ``mmap`` and gives it back with ``munmap`` when freed. A DAMER training step at batch
256 allocates and frees tens of such tensors (a 256 x 128 x 512 FFN activation is 67 MB), so
each one is page-faulted in again on every step: an element-wise add over it took 30 ms
instead of 5 ms. With mmap off and trimming postponed, freed blocks stay in the heap and are
reused (the usual advice is an LD_PRELOADed jemalloc or tcmalloc; ``mallopt`` gives most of
the gain from inside the process, with no extra package). The price: the resident size stays
at its peak instead of shrinking between steps. ``bench/cpu_kernels.py`` measures both.

Set ``MERKIT_REUSE_FREED_MEMORY=0`` to keep glibc's defaults.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_TRIM_THRESHOLD = 2 ** 31 - 1  # bytes of free heap top before glibc returns memory to the OS
_TOP_PAD = 256 << 20  # extra bytes per heap extension: fewer brk calls

_done = False


def release_freed_memory() -> bool:
    """Give the heap's free memory back to the system now (glibc ``malloc_trim``): a server
    calls it after each request, so that its resident size falls back after a burst instead of
    staying at the peak that :func:`reuse_freed_memory` keeps. False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


def reuse_freed_memory() -> bool:
    """Tell glibc to keep freed memory for reuse (once per process). Returns True when the
    setting is active; False on other C libraries, other systems, or when disabled by
    ``MERKIT_REUSE_FREED_MEMORY=0``."""
    global _done
    if _done:
        return True
    if os.environ.get("MERKIT_REUSE_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD)))
    if not ok:
        log.debug("mallopt refused a setting; glibc keeps some of its defaults")
    _done = ok
    return ok
