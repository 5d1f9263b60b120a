"""Worker processes that never outlive the process that started them.

A ``merkit extract`` killed with SIGTERM or SIGKILL cannot clean up after itself, and its
``ProcessPoolExecutor`` workers (each holding a front end and an encoder, ~150 MB) used to keep
running for ever, with multiprocessing's resource tracker beside them. Each worker therefore
calls :func:`die_with_parent` when it starts:

* on Linux the kernel sends it SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``);
* everywhere a daemon thread checks once a second whether the parent is still its parent,
  and ends the process if not (this also covers a parent that died before the prctl call).

The resource tracker exits by itself once the last process holding its pipe is gone.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 1.0


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` (its parent) dies."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still works
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch():
        while True:
            time.sleep(POLL_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="merkit-parent-watch", daemon=True).start()


__all__ = ["die_with_parent"]
