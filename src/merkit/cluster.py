"""Extraction and prediction on a ``dask.distributed`` cluster, in shards of tracks.

::

    client: to-do tracks ──shards of ≤ 32──> scheduler ──> worker: FrontEnd (built once) → views
            store (OUT/.partial) <──per track── results of a shard <──────────┘

``merkit extract ... --cluster ADDRESS`` and ``merkit predict ... --cluster ADDRESS`` send
contiguous shards of tracks to the workers of a cluster; ``--cluster local:N`` starts a
``LocalCluster`` of N single-threaded worker processes on this machine. Only the runner is new:
:func:`merkit.extract.extract` feeds what comes back into the same resumable store as its local
process pool, so its guarantees carry over unchanged:

* resumable at shard granularity: shards are cut from the tracks not yet done, and a shard's
  results reach the store only when the whole shard has finished, so an interrupted run leaves
  whole shards done and a rerun submits only the rest (a shard whose tracks are all done is
  never formed again);
* a track that fails is one row of ``failures.csv``; the shard and the run go on;
* a worker that dies mid-shard costs only the shards it held: the scheduler reruns them
  elsewhere; a shard on which workers died more than ``allowed-failures`` times (dask's
  ``distributed.scheduler.allowed-failures``, 3 by default) is rerun one track per task, one
  such task at a time, and a track whose worker still dies is reported failed;
* memory is bounded: at most :data:`SHARDS_PER_THREAD` shards per worker thread are in flight
  (results the client has not written yet included), so neither the client nor a worker holds
  more than a few shards of arrays whatever the corpus size;
* outputs appear by atomic renames only once every track is done or failed (``extract``).

Workers need merkit (the same version) and read the audio themselves: track paths are sent as
absolute paths, so the audio must be at the same place on every worker (a shared file system).
A worker process builds one FrontEnd (or model) per configuration on its first shard and keeps
it; its threads share it (:func:`cached`). dask is imported only here, and only when a cluster
is asked for, so merkit works without it.

This module is the generic machinery (connecting, shards, bounded in-flight work, worker-side
caching); what a shard does lives with its pipeline, above it: ``merkit.extract``'s
``extract_on_cluster`` and ``merkit.predict``'s ``analyse_files_on_cluster``.
"""
from __future__ import annotations

import ctypes
import logging
import math
import os
import sys
import threading
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


LOCAL_PREFIX = "local"  # "local:N": a LocalCluster of N processes ("local": one per core)
# Tracks per task. A track costs ~0.15 CPU-s (Mel + cochleagram) to ~1.5 CPU-s (with musicnn;
# bench/results/extract_scale.md), so a shard of 32 is 5-50 s of work: long next to the ~ms a
# task costs the scheduler, short enough that a worker's death loses little and that results
# (~74 kB per track of Mel + cochleagram at the paper's settings) stay small.
DEFAULT_SHARD_SIZE = 32
# Shards in flight per worker thread: one running and one queued, so a worker never waits for
# the client to write a result before it has the next shard.
SHARDS_PER_THREAD = 2
CONNECT_TIMEOUT_S = 30.0
# The environment dask's nannies start workers with (and set in their own process too).
WORKER_ENV = "distributed.nanny.pre-spawn-environ"
# Its MALLOC_TRIM_THRESHOLD_=65536 also pins glibc's mmap threshold at 128 kB: every large array
# of a track is then fresh pages from the kernel, and a track took 1.3-1.7x as long
# (bench/results/extract_scale.md). local:N starts its nannies without it; on any other cluster
# a worker undoes it in its own process before its first shard (_tune_malloc). And dask runs
# tasks in a thread of the worker, whose own malloc arena made a musicnn track 1.2x as long as
# in a main thread; with one arena it is not (MALLOC_ARENA_MAX=1: one task thread per worker,
# so no contention). That one must be in the environment when the process starts.
LOCAL_WORKER_ENV = {f"{WORKER_ENV}.MALLOC_TRIM_THRESHOLD_": None, f"{WORKER_ENV}.MALLOC_ARENA_MAX": 1}
# glibc's mallopt parameters (malloc.h) and the values its dynamic thresholds reach on 64-bit
# (mmap threshold: at most 4 MiB x sizeof(long); trim threshold: twice the mmap threshold)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 2 ** 20
_TRIM_THRESHOLD = 2 * _MMAP_THRESHOLD


class ClusterError(RuntimeError):
    """The cluster cannot be used: dask missing, a bad ``--cluster`` value, no scheduler there."""


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError("--cluster needs dask.distributed: pip install 'merkit[dask]'") from None
    return distributed


def local_workers(spec: str) -> int | None:
    """N of ``"local:N"`` (the cores of this machine for ``"local"``); None for anything else."""
    name, _, n = spec.partition(":")
    if name != LOCAL_PREFIX:
        return None
    if not n:
        return os.cpu_count() or 1
    if not n.isdigit() or int(n) < 1:
        raise ClusterError(f"--cluster {spec}: expected local:N with N >= 1 worker processes")
    return int(n)


@contextmanager
def connect(cluster, *, timeout: float = CONNECT_TIMEOUT_S):
    """A ``distributed.Client`` for ``cluster``: ``"local:N"`` (a LocalCluster of N one-thread
    worker processes, closed on exit), a scheduler address (``tcp://host:8786``), a scheduler
    file (the JSON that ``dask scheduler --scheduler-file`` or dask-jobqueue writes), or a
    ``Client`` (used as it is and left open)."""
    distributed = _distributed()
    if isinstance(cluster, distributed.Client):
        yield cluster
        return
    spec = os.fspath(cluster).strip()
    if not logging.getLogger("merkit").isEnabledFor(logging.DEBUG):  # dask's INFO lines: with -v only
        logging.getLogger("distributed").setLevel(logging.WARNING)
    n = local_workers(spec)
    if n is not None:
        import dask

        # processes: featurising holds the GIL part of the time. ":0": the scheduler's HTTP
        # server on a free port, so that two runs (or tests) never clash on dask's 8787.
        names = set(dask.config.get(WORKER_ENV)) | {k.rsplit(".", 1)[1] for k in LOCAL_WORKER_ENV}
        saved = {k: os.environ.get(k) for k in names}  # the nannies set
        try:  # these in this process too (before each spawn); put back what was there
            with dask.config.set(LOCAL_WORKER_ENV):  # read when the nannies are made
                local = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                 dashboard_address=":0")
            with local, distributed.Client(local) as client:
                yield client
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return
    is_file = spec.endswith(".json") and Path(spec).is_file()
    try:
        client = (distributed.Client(scheduler_file=spec, timeout=timeout) if is_file
                  else distributed.Client(spec, timeout=timeout))
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        raise ClusterError(f"cannot reach the Dask scheduler at {spec} within {timeout:g} s "
                           f"({type(e).__name__}: {e})") from None
    try:
        yield client
    finally:
        client.close()


def check_shard_size(shard_size: int) -> int:
    if shard_size < 1:
        raise ValueError(f"shard size must be >= 1, got {shard_size}")
    return shard_size


def shard_size_for(n_items: int, n_threads: int, shard_size: int | None = None) -> int:
    """``shard_size`` if given, else :data:`DEFAULT_SHARD_SIZE`, smaller for a small input so
    that every worker thread gets :data:`SHARDS_PER_THREAD` shards."""
    if shard_size is not None:
        return check_shard_size(shard_size)
    return max(1, min(DEFAULT_SHARD_SIZE, math.ceil(n_items / (SHARDS_PER_THREAD * max(1, n_threads)))))


def run_shards(client, fn: Callable, items: list, *args, shard_size: int | None = None,
               ordered: bool = False) -> Iterator[tuple[list, list | None]]:
    """Run ``fn(shard, *args) -> [result per item]`` on the cluster over contiguous shards of
    ``items``; yields ``(shard, results)`` as shards finish (in ``items`` order if ``ordered``).

    At most :data:`SHARDS_PER_THREAD` shards per worker thread are held at any time: running,
    queued, or finished and not yet handed to the caller (the one being handed over included).

    A shard whose workers kept dying (``KilledWorker``: the scheduler ran it on
    ``allowed-failures`` + 1 workers that died) goes to quarantine: its items are rerun one per
    task, one such task at a time, so that an item that kills workers does not take the others
    down with it (dask fails every task a dying worker held). An item whose worker still dies
    is yielded as ``([item], None)``. Any other exception of ``fn`` ends the run (per-item
    failures are ``fn``'s to report in its results).
    """
    distributed = _distributed()
    size = shard_size_for(len(items), _threads(client), shard_size)
    queue = deque((k, items[k:k + size]) for k in range(0, len(items), size))
    quarantine: deque = deque()  # (position, [item]) of shards whose workers died
    pending: dict = {}  # future -> (position of its first item, shard, from quarantine)
    waiting: dict[int, tuple[list, list]] = {}  # ordered: finished, waiting for an earlier shard
    next_pos = 0
    finished = distributed.as_completed()

    def submit(pos: int, shard: list, quarantined: bool):
        fut = client.submit(fn, shard, *args, pure=False)  # pure=False: a rerun is a new task
        pending[fut] = (pos, shard, quarantined)
        finished.add(fut)

    def fill(held: int = 0):
        """Submit shards while fewer than the limit are held: running, queued, finished but not
        yet handed to the caller (``held`` of them are about to be); quarantine first."""
        limit = SHARDS_PER_THREAD * _threads(client)  # read each time: a cluster may scale

        def room() -> bool:  # with nothing running, one shard always goes (a cluster that shrank
            # while shards waited for an earlier one must still get that one)
            return not pending or len(pending) + len(waiting) + held < limit

        if quarantine and not any(q for _, _, q in pending.values()) and room():
            submit(*quarantine.popleft(), True)
        while queue and room():
            submit(*queue.popleft(), False)

    try:
        fill()
        for fut in finished:
            pos, shard, quarantined = pending.pop(fut)
            try:
                out = fut.result()
            except distributed.KilledWorker:
                out = None
            fut.release()  # the worker can drop the result now
            if out is None and not quarantined:
                quarantine.extend((pos + j, [x]) for j, x in enumerate(shard))
                fill()
                continue
            if ordered:
                waiting[pos] = (shard, out)
                ready = deque()
                while next_pos in waiting:
                    s, o = waiting.pop(next_pos)
                    next_pos += len(s)
                    ready.append((s, o))
            else:
                ready = deque([(shard, out)])
            while ready:
                fill(held=len(ready))  # the cluster works on while the caller writes these
                yield ready.popleft()
            fill()
        assert not queue and not quarantine and not waiting, "run_shards ended with shards left"
    finally:
        if pending:
            try:
                client.cancel(list(pending))
            except Exception:  # the client may already be gone; nothing is left to save
                pass


def _threads(client) -> int:
    return max(1, sum(client.nthreads().values()))


def abspath(path: str) -> str:
    return os.path.abspath(path) if path else path  # "" stays "": the track has no audio


# --- worker side ---------------------------------------------------------------------------------
# Built once per worker process and configuration, shared by the worker's threads.
_cache: dict = {}
_cache_lock = threading.Lock()


def cached(key, build: Callable):
    """``build()``, made once per worker process and ``key`` and shared by its threads."""
    with _cache_lock:
        if key not in _cache:
            if not _cache:  # this process's first shard
                _tune_malloc()
            _cache[key] = build()
        return _cache[key]


def _tune_malloc() -> bool:
    """In a worker started with ``MALLOC_TRIM_THRESHOLD_`` (dask's nanny sets it), give glibc
    back the thresholds its dynamic rule would reach, so that a track's large arrays reuse
    freed memory instead of mapping fresh pages; the process then keeps up to
    ``_TRIM_THRESHOLD`` of freed memory per arena instead of returning it at once. True if done."""
    if not sys.platform.startswith("linux") or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


__all__ = ["ClusterError", "DEFAULT_SHARD_SIZE", "abspath", "cached", "check_shard_size", "connect", "local_workers",
           "run_shards", "shard_size_for"]
