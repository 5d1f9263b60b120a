"""SIGTERM and SIGHUP stop merkit the way Ctrl-C does: finished work is kept.

``timeout``, ``kill``, job schedulers (SLURM, systemd) and a closed terminal end a process with
SIGTERM or SIGHUP, whose default action kills Python at once: no ``finally``, so an hour of
predictions never reached the output file. :func:`stop_on_signals` makes both raise
:class:`Stopped`, a ``KeyboardInterrupt``, so every path that already keeps its work on Ctrl-C
(``merkit predict`` writes the finished rows, ``extract`` keeps its resumable state, training
keeps ``last.pt``) does the same for them. A second signal while that is being written is
ignored, so it cannot cut the write short; SIGKILL still ends everything (atomic writes leave
the previous file then).
"""
from __future__ import annotations

import signal

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM / SIGHUP (see the module docstring)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _handler(signum, frame):
    for s in SIGNALS:  # one stop is enough: what follows is the write of the finished work
        signal.signal(s, signal.SIG_IGN)
    raise Stopped(signum)


def stop_on_signals() -> None:
    """Route SIGTERM and SIGHUP to :class:`Stopped` (call from the main thread)."""
    for s in SIGNALS:
        signal.signal(s, _handler)


def describe(e: BaseException) -> tuple[str, int]:
    """``(what stopped the run, exit status)`` of a KeyboardInterrupt: ``("SIGTERM", 143)``,
    ``("Ctrl-C", 130)`` (the shell's 128 + signal number convention)."""
    if isinstance(e, Stopped):
        return signal.Signals(e.signum).name, 128 + int(e.signum)
    return "Ctrl-C", 128 + int(signal.SIGINT)


__all__ = ["SIGNALS", "Stopped", "describe", "stop_on_signals"]
