"""Feature extraction at corpus scale: tracks → the Memo2496 layout.

Parallel over processes, resumable, memory-bounded and atomic:
* results are written into memory-mapped arrays in ``OUT/.partial/`` as they arrive, with a
  ``done`` mask flushed after each track, so a killed run resumes where it stopped;
* at most ``4 x workers`` tracks are in flight, so memory does not grow with the corpus;
* a track that fails (unreadable, silent-and-empty, too short, ...) is recorded in
  ``failures.csv`` with the reason and the batch goes on; a crashed worker process is replaced
  and its tracks retried once;
* the final ``mel_spec.npy`` / ``cochlegram.npy`` / ``labels/*`` / ``tracks.csv`` appear only
  when every track is either done or failed, each by an atomic rename.

The same holds on a ``dask.distributed`` cluster (``cluster=``, :mod:`merkit.cluster`): only the
runner differs, shards of tracks go to the cluster's workers and their results come back into
the same store.

Size: just over ~400 lines: the store, the worker and the local and cluster runners share the
resumable-state contract described above.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .audio import AudioError, load_window
from .config import AudioConfig, FeatureConfig
from .data.manifest import Track, write_manifest
from .data.memo2496 import FEATURES_FILE, LABEL_A_FILE, LABEL_V_FILE, MANIFEST_FILE, labels_from_tracks, view_file
from .frontend import FrontEnd
from .outputs import OutputError, atomic_path, save_npy, space_error, write_json
from .workers import die_with_parent
from .cluster import abspath, cached, check_shard_size, connect, run_shards

log = logging.getLogger(__name__)

WORK_DIR = ".partial"
FAILURES_FILE = "failures.csv"
_MAX_CRASHES = 2  # a track in flight during this many worker crashes is declared failed


@dataclass
class ExtractReport:
    out_dir: Path
    n_tracks: int
    n_done: int
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (track_id, path, reason)
    seconds: float = 0.0
    n_skipped_resumed: int = 0

    def summary(self) -> str:
        s = (f"{self.n_done}/{self.n_tracks} tracks extracted to {self.out_dir} in {self.seconds:.1f} s"
             + (f" ({self.n_skipped_resumed} already done)" if self.n_skipped_resumed else ""))
        s += f"; {len(self.failures)} failed (see {self.out_dir / FAILURES_FILE})" if self.failures else "; none failed"
        return s


# --- worker side ---------------------------------------------------------------------------------
_fe: FrontEnd | None = None


def _init_worker(audio: AudioConfig, feats: FeatureConfig, views: tuple[str, ...], threads: int | None,
                 parent_pid: int | None = None):
    global _fe
    if parent_pid is not None:  # a pool worker: end with the main process, however it dies

        die_with_parent(parent_pid)
    _fe = worker_frontend(audio, feats, views, threads)


def worker_frontend(audio: AudioConfig, feats: FeatureConfig, views: tuple[str, ...],
                    threads: int | None) -> FrontEnd:
    """The front end of an extraction worker (a pool process, a cluster worker); ``threads``
    caps torch's threads when an encoder runs (None: torch's choice)."""
    if threads is not None and len(views) > 2:  # an encoder runs torch: one thread per worker
        import torch

        torch.set_num_threads(threads)
    return FrontEnd(audio, feats, views)


def _work(i: int, path: str, min_dur: float | None, max_dur: float | None):
    """:func:`process_track` with this pool worker's front end."""
    return process_track(_fe, i, path, min_dur, max_dur)


def process_track(fe: FrontEnd, i: int, path: str, min_dur: float | None, max_dur: float | None):
    """The views of track ``i``: ``(i, {view: array}, info_dict)``, or ``(i, None, reason)`` when
    it fails (what every runner, in-process, pool or cluster, sends back for a track)."""
    try:
        if not path:
            raise AudioError("track has no audio path")
        win, info = load_window(path, fe.audio)
        if (min_dur is not None and info.duration < min_dur) or (max_dur is not None and info.duration > max_dur):
            raise AudioError(f"{path}: duration {info.duration:.1f} s outside the curation range "
                             f"[{min_dur or 0:g}, {max_dur or float('inf'):g}] s")
        try:
            views = fe.window(win, info)
        except AudioError as e:
            raise AudioError(f"{path}: {e}") from None
        return i, views.arrays, {"duration": info.duration, "lufs": info.loudness_lufs,
                                 "gain_db": info.gain_db, "window_start": info.window_start,
                                 "repeated": info.repeated, "source_sample_rate": info.source_sample_rate}
    except AudioError as e:
        return i, None, str(e)
    except Exception as e:  # anything else is still one track's problem, not the batch's
        return i, None, f"{path}: {type(e).__name__}: {e}"


# --- main side -----------------------------------------------------------------------------------
def _fingerprint(tracks: list[Track], info: dict) -> str:
    h = hashlib.sha256(json.dumps(info, sort_keys=True).encode())
    for t in tracks:
        h.update(f"{t.track_id}\0{t.path}\n".encode())
    return h.hexdigest()


class _RowFile:
    """A ``.npy`` file of shape ``(n, *row)`` written and read one row at a time with
    ``pwrite``/``pread``: unlike a memory map, nothing of the file stays mapped into this
    process, so its resident memory does not grow with the corpus."""

    def __init__(self, path: Path, n: int, row: tuple[int, ...], *, create: bool):
        if create:
            m = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, *row))
            self.offset = m.offset  # header length; the data is left sparse on disk
            del m
        else:
            m = np.load(path, mmap_mode="r")
            if m.shape != (n, *row) or m.dtype != np.float32:
                raise ValueError(f"{path}: expected float32 {(n, *row)}, found {m.dtype} {m.shape}")
            self.offset = m.offset
            del m
        self.path, self.n, self.row = path, n, row
        self.row_bytes = int(np.prod(row)) * 4
        self.fd = os.open(path, os.O_RDWR)

    def write(self, i: int, a: np.ndarray) -> None:
        os.pwrite(self.fd, np.ascontiguousarray(a, dtype=np.float32).tobytes(), self.offset + i * self.row_bytes)

    def read(self, i: int) -> np.ndarray:
        b = os.pread(self.fd, self.row_bytes, self.offset + i * self.row_bytes)
        return np.frombuffer(b, dtype=np.float32).reshape(self.row)

    def close(self) -> None:
        os.close(self.fd)


class _Store:
    """The resumable on-disk state of one extraction (``OUT/.partial``)."""

    def __init__(self, out: Path, n: int, fe: FrontEnd, fingerprint: str):
        self.dir = out / WORK_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "state.json"
        fresh = True
        if meta.is_file():
            if json.loads(meta.read_text()).get("fingerprint") != fingerprint:
                raise ValueError(f"{out} holds an unfinished extraction of other tracks or settings; "
                                 f"use another output folder or pass --overwrite")
            fresh = False
        self.rows = {name: _RowFile(self.dir / f"{name}.npy", n, shape, create=fresh)
                     for name, shape in fe.row_shapes().items()}
        # n bytes: small enough to map
        if fresh:  # its blocks allocated now: a full disk is an error here, never a SIGBUS in the map
            m = np.lib.format.open_memmap(self.dir / "done.npy", mode="w+", dtype=np.uint8, shape=(n,))
            size = m.offset + n
            del m
            fd = os.open(self.dir / "done.npy", os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        self.done = np.lib.format.open_memmap(self.dir / "done.npy", mode="r+", dtype=np.uint8, shape=(n,))
        self.info_path = self.dir / "track_info.jsonl"
        if fresh:
            self.info_path.write_text("")
            write_json(meta, {"fingerprint": fingerprint, "n": n})
        self._info_fh = open(self.info_path, "a", encoding="utf-8")

    def put(self, i: int, arrays: dict[str, np.ndarray], info: dict):
        for name, rows in self.rows.items():
            rows.write(i, arrays[name])
        self._info_fh.write(json.dumps({"i": i, **info}) + "\n")
        self._info_fh.flush()
        self.done[i] = 1  # marked only after the data, so a kill never leaves a "done" hole

    def flush(self):
        self.done.flush()

    def track_info(self) -> dict[int, dict]:
        out = {}
        with open(self.info_path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    try:
                        d = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by a kill: that track is redone
                        continue
                    out[d.pop("i")] = d
        return out

    def close(self):
        self.flush()
        self._info_fh.close()
        for rows in self.rows.values():
            rows.close()


def extract(tracks: list[Track], out_dir: str | os.PathLike, *, audio: AudioConfig | None = None,
            features: FeatureConfig | None = None, workers: int | None = None, progress: bool = True,
            min_duration: float | None = None, max_duration: float | None = None,
            overwrite: bool = False, views=None, cluster=None, shard_size: int | None = None) -> ExtractReport:
    """Extract the views of ``tracks`` (Mel + cochleagram, and encoder embeddings if ``views``
    names encoders: :func:`merkit.frontend.parse_views`) into a Memo2496-layout folder.

    workers: processes (default: all cores); 0 runs in this process (debugging, tests).
    cluster: run on a ``dask.distributed`` cluster instead (:mod:`merkit.cluster`): a scheduler
        address, ``"local:N"`` (a LocalCluster of N processes) or a ``distributed.Client``;
        ``workers`` is then unused. shard_size: tracks per cluster task (default
        :data:`merkit.cluster.DEFAULT_SHARD_SIZE`).
    min_duration / max_duration: the paper's curation filter (§III-A uses 30–300 s); off by default.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    if overwrite and (out / WORK_DIR).exists():
        shutil.rmtree(out / WORK_DIR)
    out.mkdir(parents=True, exist_ok=True)
    fe = FrontEnd(audio, features, views)
    if not fe.audio.mono:
        raise ValueError("the Memo2496 layout holds mono features: extract with AudioConfig(mono=True)")
    if not tracks:
        raise ValueError("no tracks to extract")
    if shard_size is not None:
        check_shard_size(shard_size)  # before any cluster is started
    ids = [t.track_id for t in tracks]
    if len(set(ids)) != len(ids):
        dup = sorted({x for x in ids if ids.count(x) > 1})[:5]
        raise ValueError(f"duplicate track ids in the manifest: {', '.join(dup)}")
    fingerprint = _fingerprint(tracks, {**fe.info(), "min": min_duration, "max": max_duration})
    if not (out / WORK_DIR).exists() and _published_fingerprint(out) == fingerprint:
        log.info("%s already holds these features; nothing to do", out)
        if not (out / FAILURES_FILE).exists():
            _write_failures(out / FAILURES_FILE, [])
        return ExtractReport(out, len(tracks), len(tracks), seconds=time.perf_counter() - t0,
                             n_skipped_resumed=len(tracks))
    try:
        return _extract(tracks, out, fe, fingerprint, t0, workers, progress, min_duration, max_duration,
                        cluster, shard_size)
    except (OSError, OutputError) as e:  # a full disk: one line; finished tracks stay in OUT/.partial
        err = space_error(e, e.filename or out) if isinstance(e, OSError) else e
        if err is None or not getattr(err, "errno", None):  # not a full disk: the caller's error
            raise
        raise OutputError(f"{err}; the finished tracks are kept in {out / WORK_DIR}: free some space and "
                          "rerun the same command to resume") from None


def _extract(tracks, out, fe, fingerprint, t0, workers, progress, min_duration, max_duration, cluster,
             shard_size) -> ExtractReport:
    store = _Store(out, len(tracks), fe, fingerprint)
    failures: dict[int, str] = {}
    todo = [i for i in range(len(tracks)) if not store.done[i]]
    n_resumed = len(tracks) - len(todo)
    workers = (os.cpu_count() or 1) if workers is None else workers

    from tqdm import tqdm

    bar = tqdm(total=len(tracks), initial=n_resumed, unit="track", desc="extract", disable=not progress,
               dynamic_ncols=True)

    def handle(res):
        i, arrays, x = res
        if arrays is None:
            failures[i] = x
            log.warning("skipped: %s", x)
        else:
            store.put(i, arrays, x)
        bar.update(1)

    try:
        if cluster is not None:  # the same store and handle(): resume, failures and publishing alike
            extract_on_cluster(cluster, todo, tracks, fe, min_duration, max_duration, handle,
                               shard_size=shard_size)
        elif workers == 0:
            _init_worker(fe.audio, fe.fx.cfg, fe.views, None)
            for i in todo:
                handle(_work(i, tracks[i].path, min_duration, max_duration))
        else:
            _run_pool(todo, tracks, fe, workers, min_duration, max_duration, handle, failures)
    finally:
        bar.close()
        store.close()

    report = _finalise(out, tracks, store, failures, fe, fingerprint)
    report.seconds = time.perf_counter() - t0
    report.n_skipped_resumed = n_resumed
    return report


def _run_pool(todo, tracks, fe, workers, min_d, max_d, handle, failures):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fork after numpy/BLAS threads start is not safe
    queue = list(reversed(todo))
    crashes: dict[int, int] = {}
    max_inflight = 4 * workers
    while queue:
        ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(fe.audio, fe.fx.cfg, fe.views, 1, os.getpid()))
        inflight: dict = {}
        try:
            while queue or inflight:
                while queue and len(inflight) < max_inflight:
                    i = queue.pop()
                    inflight[ex.submit(_work, i, tracks[i].path, min_d, max_d)] = i
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = inflight.pop(fut)
                    handle(fut.result())
        except BrokenProcessPool:
            # a worker died (e.g. a decoder crashed on a bad file): retry what was in flight
            for fut, i in inflight.items():
                crashes[i] = crashes.get(i, 0) + 1
                if crashes[i] >= _MAX_CRASHES:
                    handle((i, None, f"{tracks[i].path}: worker process crashed on this track"))
                else:
                    queue.append(i)
            log.warning("a worker process crashed; restarting the pool (%d tracks retried)", len(queue))
        finally:
            ex.shutdown(cancel_futures=True)


# --- on a dask.distributed cluster (merkit.cluster) ----------------------------------------------
def _extract_shard(items: list[tuple[int, str]], audio, feats, views, min_d, max_d) -> list[tuple]:
    # one torch thread per worker thread, as in the local pool
    fe = cached(("extract", audio, feats, views), lambda: worker_frontend(audio, feats, views, 1))
    return [process_track(fe, i, path, min_d, max_d) for i, path in items]


def extract_on_cluster(cluster, todo: list[int], tracks, fe: FrontEnd, min_d, max_d,
                       handle: Callable, *, shard_size: int | None = None) -> None:
    """The cluster runner of :func:`extract` (:mod:`merkit.cluster`): every to-do track's result goes to
    ``handle((i, arrays, info))`` or ``handle((i, None, reason))``, as the local pool's do."""

    items = [(i, abspath(tracks[i].path)) for i in todo]
    if not items:  # resumed with every track done: no cluster needed
        return
    with connect(cluster) as client:
        for shard, results in run_shards(client, _extract_shard, items, fe.audio, fe.fx.cfg, fe.views,
                                         min_d, max_d, shard_size=shard_size):
            if results is None:
                (i, _), = shard
                handle((i, None, f"{tracks[i].path}: worker process crashed on this track"))
                continue
            for res in results:
                handle(res)


def _published_fingerprint(out: Path) -> str | None:
    try:
        return json.loads((out / FEATURES_FILE).read_text()).get("fingerprint")
    except (OSError, ValueError):
        return None


def _finalise(out: Path, tracks: list[Track], store: _Store, failures: dict[int, str],
              fe: FrontEnd, fingerprint: str) -> ExtractReport:
    done = np.flatnonzero(np.asarray(store.done) == 1)
    infos = store.track_info()
    pending = len(tracks) - len(done) - len(failures)
    failed = [(tracks[i].track_id, tracks[i].path, r) for i, r in sorted(failures.items())]
    _write_failures(out / FAILURES_FILE, failed)
    report = ExtractReport(out, len(tracks), len(done), failed)
    if pending:  # interrupted: leave the work dir for --resume, publish nothing
        return report
    kept = []
    for i in done:
        t = tracks[i]
        d = infos.get(int(i), {})
        extra = {**t.extra, **{k: d[k] for k in ("lufs", "gain_db", "window_start", "repeated") if k in d}}
        kept.append(replace(t, duration=d.get("duration", t.duration), extra=extra))
    # Everything that needs disk space first, each file atomically: a full disk here leaves the
    # work folder whole, so a rerun (after freeing space) publishes again.
    for name, vals in zip((LABEL_A_FILE, LABEL_V_FILE), labels_from_tracks(kept)):
        save_npy(out / name, vals)
    write_manifest(kept, out / MANIFEST_FILE)
    if len(done) == len(tracks):  # everything succeeded: the work arrays are the result (renames)
        for name, rows in store.rows.items():
            os.replace(rows.path, out / view_file(name))
    else:  # copy the rows that succeeded, one at a time (bounded memory), then rename
        for view, src in store.rows.items():
            with atomic_path(out / view_file(view), suffix=".npy") as tmp:
                src = _RowFile(src.path, src.n, src.row, create=False)
                dst = _RowFile(tmp, len(done), src.row, create=True)
                try:
                    for j, i in enumerate(done):
                        dst.write(j, src.read(int(i)))
                finally:
                    src.close()
                    dst.close()
    # the fingerprint only counts when nothing failed: otherwise a rerun must retry the failures
    write_json(out / FEATURES_FILE, {**fe.info(), "fingerprint": fingerprint if not failures else None})
    # With failures the work dir stays, so that a rerun retries only the failed tracks.
    if not failures:
        shutil.rmtree(store.dir, ignore_errors=True)
    return report


def _write_failures(path: Path, failed: list[tuple[str, str, str]]):
    """The failure report, written on every run (only its header when nothing failed)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["track_id", "path", "reason"])
        w.writerows(failed)
