"""Extraction at corpus scale: wall time, tracks per second and peak memory for N tracks.

Two modes.

Scale (default): N manifest entries over 32 distinct generated 30-90 s WAV files (decoding,
resampling, loudness and features all run for every entry; only the disk cache is shared).
Peak RSS is reported for the main process and for the largest worker; the whole job's peak is
at most main + workers x worker. Writes bench/results/extract_scale.json.

    python bench/extract_scale.py --tracks 10000 --workers 2

Cluster (``--cluster``): the same real tracks (Emotify's one-minute MP3s from ../shared/data)
through the local process pool (2 processes) and through a dask LocalCluster of 1 and 2
single-threaded workers (``merkit.cluster``), in one run: tracks/s, CPU-s per track (workers,
and the client + scheduler), the overhead of the cluster path over the local pool, and a
projection to 1 M tracks. The outputs of every run are checked to be byte-identical to the
local pool's. Writes bench/results/extract_scale_cluster.json and bench/results/extract_scale.md
(with the scale run's numbers from extract_scale.json).

    python bench/extract_scale.py --cluster --tracks 192 --musicnn-tracks 32 --repeats 3
"""
from __future__ import annotations

import os

# Dask's nanny starts its workers with one BLAS/OpenMP thread each; the local pool gets the same
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import soundfile as sf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from features import music_like  # noqa: E402
from merkit.data.manifest import Track  # noqa: E402
from merkit.extract import extract  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PUBLISHED = ("mel_spec.npy", "cochlegram.npy", "labels/label_a.npy", "labels/label_v.npy", "tracks.csv")
PROJECT_TRACKS = 1_000_000
PROJECT_WORKERS = (2, 64, 256, 1024)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=None, help="default: 10000 (scale), 192 (--cluster)")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--cluster", action="store_true", help="local pool vs dask LocalCluster on real tracks")
    ap.add_argument("--musicnn-tracks", type=int, default=32,
                    help="--cluster: also time the views mel,coch,musicnn on this many tracks (0: skip)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="--cluster: rounds over all runners, interleaved; each runner's fastest is kept")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if args.cluster:
        return cluster_compare(args)
    n = args.tracks or 10_000
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = []
        for k in range(32):
            p = tmp / f"src{k}.wav"
            sf.write(p, music_like(30 + 2 * k, 44_100, seed=k), 44_100)
            files.append(p)
        tracks = [Track(track_id=f"t{i:05d}", path=str(files[i % 32]), label_a=float(i % 2) - 0.5,
                        label_v=0.5 - float(i % 3 == 0)) for i in range(n)]
        t0 = time.perf_counter()
        rep = extract(tracks, tmp / "out", workers=args.workers, progress=sys.stderr.isatty())
        wall = time.perf_counter() - t0
        main_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size_mb = sum(f.stat().st_size for f in (tmp / "out").rglob("*") if f.is_file()) / 2 ** 20
    res = {"tracks": n, "workers": args.workers, "done": rep.n_done, "failed": len(rep.failures),
           "wall_s": wall, "tracks_per_s": n / wall, "peak_rss_main_mb": main_mb,
           "peak_rss_largest_worker_mb": child_mb,
           "peak_rss_job_upper_bound_mb": main_mb + args.workers * child_mb, "output_mb": size_mb,
           "cpu_count": os.cpu_count()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "extract_scale.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


# --- cluster mode --------------------------------------------------------------------------------
def _cpu(who) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _process_cpu() -> float:
    """CPU-s of the calling process (run on every dask worker through ``client.run``)."""
    import psutil  # a dependency of distributed

    t = psutil.Process().cpu_times()
    return t.user + t.system


def _no_malloc_tuning() -> None:
    """Run on every worker: leave dask's malloc settings as they are (merkit.cluster._tune_malloc)."""
    import merkit.cluster

    merkit.cluster._tune_malloc = lambda: False


def _local_pool(tracks, out: Path, views, workers: int) -> dict:
    self0, kids0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    t0, th0 = time.perf_counter(), time.thread_time()
    rep = extract(tracks, out, workers=workers, views=views, progress=False)
    wall, thread = time.perf_counter() - t0, time.thread_time() - th0
    assert rep.n_done == len(tracks) and not rep.failures, rep.summary()
    # the pool's workers were joined at its shutdown, so their CPU is in RUSAGE_CHILDREN
    return {"runner": f"local pool, {workers} processes", "workers": workers, "wall_s": wall,
            "end_to_end_s": wall, "startup_s": 0.0, "tracks_per_s": len(tracks) / wall,
            "worker_cpu_s": _cpu(resource.RUSAGE_CHILDREN) - kids0,
            "main_cpu_s": _cpu(resource.RUSAGE_SELF) - self0, "main_thread_cpu_s": thread}


@contextmanager
def _dask_default_env(n: int):
    """A LocalCluster with dask's default worker environment (MALLOC_TRIM_THRESHOLD_=65536), as
    any cluster started without merkit has; its nanny also sets that in this process."""
    import distributed

    before = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    try:
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as lc, distributed.Client(lc) as client:
            yield client
    finally:
        if before is None:
            os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)  # later runs start as before


# plan entries: (runner kind, workers, shard size or None for the default, also a warm run)
RUNNERS = {
    "pool": "local pool",
    "dask": "dask LocalCluster (`--cluster local:N`)",
    "dask-default-env": "dask LocalCluster, dask's default worker environment",
    "dask-default-env-untuned": "dask LocalCluster, dask's default worker environment, merkit's malloc tuning off",
}


def _dask(tracks, out: Path, views, kind: str, n: int, shard_size: int | None, *, warm: bool) -> dict:
    """A LocalCluster of ``n`` workers; a cold run (workers import merkit and build their
    FrontEnd) and, with ``warm``, a second run on the same cluster."""
    from merkit.cluster import connect, shard_size_for

    t0 = time.perf_counter()
    with (connect(f"local:{n}") if kind == "dask" else _dask_default_env(n)) as client:
        client.wait_for_workers(n)
        if kind == "dask-default-env-untuned":
            client.run(_no_malloc_tuning)
        startup = time.perf_counter() - t0
        runs = []
        for name in ("cold", "warm") if warm else ("cold",):
            w0 = sum(client.run(_process_cpu).values())
            s0 = _cpu(resource.RUSAGE_SELF)
            t1, th0 = time.perf_counter(), time.thread_time()
            rep = extract(tracks, out / name, views=views, cluster=client, shard_size=shard_size, progress=False)
            wall, thread = time.perf_counter() - t1, time.thread_time() - th0
            assert rep.n_done == len(tracks) and not rep.failures, rep.summary()
            runs.append({"wall_s": wall, "worker_cpu_s": sum(client.run(_process_cpu).values()) - w0,
                         "main_cpu_s": _cpu(resource.RUSAGE_SELF) - s0, "main_thread_cpu_s": thread,
                         "tracks_per_s": len(tracks) / wall})
        t_close = time.perf_counter()
    close = time.perf_counter() - t_close
    cold = runs[0]
    res = {"runner": f"{RUNNERS[kind]}, {n} worker{'s' if n > 1 else ''}", "kind": kind, "workers": n,
           "shard_size": shard_size_for(len(tracks), n, shard_size), "startup_s": startup, "close_s": close,
           "end_to_end_s": startup + cold["wall_s"] + close, **cold}
    if warm:
        res["warm"] = runs[1]
    return res


def _identical(a: Path, b: Path) -> bool:
    return all((a / f).read_bytes() == (b / f).read_bytes() for f in PUBLISHED)


def _per_track(row: dict, n: int) -> None:
    row["worker_cpu_s_per_track"] = row["worker_cpu_s"] / n
    row["main_cpu_ms_per_track"] = 1000 * row["main_cpu_s"] / n
    row["main_thread_cpu_ms_per_track"] = 1000 * row["main_thread_cpu_s"] / n


def _suite(tracks, views, tmp: Path, plan, repeats: int) -> list[dict]:
    """Every runner of ``plan`` ``repeats`` times, the rounds interleaved (so that other load on
    a shared machine falls on all runners alike); each runner's row is its fastest run."""
    runs: list[list[dict]] = [[] for _ in plan]
    for rep in range(repeats):
        ref = tmp / f"pool-r{rep}"
        for k, (kind, n, shard, warm) in enumerate(plan):
            out = ref if kind == "pool" else tmp / f"{kind}{n}-{shard}-r{rep}"
            load = os.getloadavg()[0]
            row = _local_pool(tracks, out, views, n) if kind == "pool" else _dask(tracks, out, views, kind, n, shard,
                                                                                  warm=warm)
            row["load_before"], row["load_after"] = load, os.getloadavg()[0]
            if kind != "pool":  # plan[0], the local pool, is the reference
                row["identical_to_local_pool"] = all(_identical(ref, out / r) for r in ("cold", "warm")
                                                     if (out / r).exists())
            _per_track(row, len(tracks))
            if "warm" in row:
                _per_track(row["warm"], len(tracks))
            print(json.dumps(row), flush=True)
            runs[k].append(row)
    rows = []
    for k, tries in enumerate(runs):
        row = dict(min(tries, key=lambda r: r["wall_s"]))
        row["walls_s"] = [r["wall_s"] for r in tries]
        row["identical_to_local_pool"] = all(r.get("identical_to_local_pool", True) for r in tries)
        if "warm" in row:
            row["warm"] = min((r["warm"] for r in tries), key=lambda w: w["wall_s"])
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["overhead_vs_local_pool"] = row["wall_s"] / base["wall_s"] - 1
        row["overhead_end_to_end_vs_local_pool"] = row["end_to_end_s"] / base["end_to_end_s"] - 1
        if "warm" in row:
            row["warm"]["overhead_vs_local_pool"] = row["warm"]["wall_s"] / base["wall_s"] - 1
    return rows


def _receive_ms_per_track(folder: Path, shard: int = 32, repeats: int = 20) -> float:
    """What the client spends receiving one track's result besides writing it: copying a
    shard's arrays out of the socket and unpickling them (pickle protocol 5, out-of-band
    buffers, as dask sends numpy arrays), per track."""
    import pickle

    import numpy as np

    mel, coch = np.load(folder / "mel_spec.npy", mmap_mode="r"), np.load(folder / "cochlegram.npy", mmap_mode="r")
    results = [(i, {"mel": np.array(mel[i % len(mel)]), "coch": np.array(coch[i % len(mel)])},
                {"duration": 60.0, "lufs": -23.0}) for i in range(shard)]
    buffers = []
    data = pickle.dumps(results, protocol=5, buffer_callback=buffers.append)
    t0 = time.perf_counter()
    for _ in range(repeats):
        frames = [bytearray(b.raw()) for b in buffers]  # the bytes arriving from the socket
        pickle.loads(data, buffers=frames)
    return 1000 * (time.perf_counter() - t0) / repeats / shard


def cluster_compare(args):
    from merkit.data.registry import resolve_input

    emotify = resolve_input("emotify")  # 400 tracks in ../shared/data
    n = min(args.tracks or 192, len(emotify))
    tracks = emotify[:n]
    suites = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # the local pool first (the reference of the identity check), then the cluster
        plan = [("pool", 2, None, False), ("dask", 1, None, False), ("dask", 2, None, True), ("dask", 2, 8, False),
                ("dask-default-env", 2, None, False), ("dask-default-env-untuned", 2, None, False)]
        suites["mel,coch"] = {"tracks": n, "rows": _suite(tracks, ("mel", "coch"), tmp / "melcoch", plan, args.repeats)}
        receive_ms = _receive_ms_per_track(tmp / "melcoch" / "pool-r0")
        shutil.rmtree(tmp / "melcoch")
        if args.musicnn_tracks:
            m = min(args.musicnn_tracks, len(emotify))
            plan = [("pool", 2, None, False), ("dask", 2, None, False), ("dask-default-env", 2, None, False)]
            suites["mel,coch,musicnn"] = {"tracks": m, "rows": _suite(emotify[:m], ("mel", "coch", "musicnn"),
                                                                      tmp / "musicnn", plan, args.repeats)}
    res = {"what": "merkit extract of Emotify one-minute MP3s (paper preset: 60 s window at 44.1 kHz, T = 87)",
           "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                       "python": platform.python_version()},
           "versions": _versions(), "suites": suites,
           "command": "python bench/extract_scale.py " + " ".join(sys.argv[1:]), "repeats": args.repeats}
    res["projection"] = _projection(suites["mel,coch"]["rows"], receive_ms)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "extract_scale_cluster.json").write_text(json.dumps(res, indent=2))
    (out / "extract_scale.md").write_text(render_md(res, _scale_results(out)))
    print((out / "extract_scale.md").read_text())


def _versions() -> dict:
    import dask
    import distributed
    import numpy

    return {"dask": dask.__version__, "distributed": distributed.__version__, "numpy": numpy.__version__}


def _projection(rows: list[dict], receive_ms: float) -> dict:
    """1 M tracks from the measured costs of the warm 2-worker run of `--cluster local:2`.

    A worker is one core spending ``worker_cpu_s_per_track`` per track; the client receives and
    writes every result (``receive_ms`` + its writing thread's ms per track, one core), which
    caps the job at 1000 / that tracks/s whatever the number of workers."""
    w = next(r for r in rows if "warm" in r)["warm"]
    per_track = w["worker_cpu_s_per_track"]
    client_ms = w["main_thread_cpu_ms_per_track"] + receive_ms
    client_cap = 1000.0 / client_ms
    track_bytes = (128 + 84) * 87 * 4  # Mel + cochleagram float32 rows at the paper's settings
    walls = {}
    for n in PROJECT_WORKERS:
        rate = min(n / per_track, client_cap)
        walls[str(n)] = {"hours": PROJECT_TRACKS / rate / 3600, "tracks_per_s": rate,
                         "client_bound": n / per_track > client_cap, "into_client_mb_per_s": rate * track_bytes / 1e6}
    return {"tracks": PROJECT_TRACKS, "worker_cpu_s_per_track": per_track,
            "client_write_ms_per_track": w["main_thread_cpu_ms_per_track"], "client_receive_ms_per_track": receive_ms,
            "client_cap_tracks_per_s": client_cap, "cpu_hours": PROJECT_TRACKS * per_track / 3600,
            "background_core_fraction": (w["main_cpu_s"] - w["main_thread_cpu_s"]) / w["wall_s"],
            "parallel_efficiency_2_workers": w["tracks_per_s"] * per_track / 2, "wall_by_workers": walls,
            "shards": PROJECT_TRACKS // 32, "output_gb": PROJECT_TRACKS * track_bytes / 1e9}


def _scale_results(out: Path) -> dict | None:
    try:
        return json.loads((out / "extract_scale.json").read_text())
    except (OSError, ValueError):
        return None


def _f(x, nd=2) -> str:
    return f"{x:.{nd}f}"


def _row_md(r: dict, runner: str, shard, startup: str, end_to_end: str, over_e2e: str, identical: bool) -> str:
    return (f"| {runner} | {shard} | {startup} | {_f(r['wall_s'], 1)} | {_f(r['tracks_per_s'])} "
            f"| {100 * r['overhead_vs_local_pool']:+.1f} % | {end_to_end} | {over_e2e} "
            f"| {_f(r['worker_cpu_s_per_track'], 3)} | {_f(r['main_thread_cpu_ms_per_track'], 2)} "
            f"| {_f(r['main_cpu_ms_per_track'], 1)} | {'yes' if identical else 'NO'} |")


def render_md(res: dict, scale: dict | None) -> str:
    m = res["machine"]
    lines = ["# Extraction at scale: local process pool and dask cluster", "",
             f"{res['what']}. Measured on this machine: {m['cpu_count']} cores ({m['processor']}), "
             f"Python {m['python']}, dask/distributed {res['versions']['distributed']}. Every run "
             "extracts the same tracks into a fresh folder; the dask runs' published arrays, labels "
             "and tracks.csv were checked byte-identical to the local pool's (column *identical*). "
             f"The runners take turns, {res['repeats']} rounds; each row is that runner's fastest run "
             f"(all run times and the load average before and after each are in "
             "extract_scale_cluster.json).", "",
             f"Rerun: `{res['command'].strip()}`", ""]
    for views, suite in res["suites"].items():
        lines += [f"## Views {views}, {suite['tracks']} tracks", "",
                  "| runner | shard size | start-up (s) | run (s) | tracks/s | overhead vs local pool (run) "
                  "| end to end (s) | overhead (end to end) | worker CPU-s / track "
                  "| client CPU ms / track, writing thread | client CPU ms / track, whole process | identical |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in suite["rows"]:
            dask = r["runner"].startswith("dask")
            lines.append(_row_md(r, r["runner"], r.get("shard_size", "-"), _f(r["startup_s"], 1) if dask else "-",
                                 _f(r["end_to_end_s"], 1),
                                 f"{100 * r['overhead_end_to_end_vs_local_pool']:+.1f} %",
                                 r.get("identical_to_local_pool", True)))
            if "warm" in r:
                lines.append(_row_md(r["warm"], "... the same cluster, second run (warm workers)", r["shard_size"],
                                     "-", "-", "-", r["identical_to_local_pool"]))
        lines.append("")
    lines += ["*start-up*: starting the LocalCluster (what `--cluster local:N` adds; an existing cluster has "
              "none); *run*: the `extract()` call; *overhead*: run time over the local pool's (same cores, "
              "same tracks); *end to end*: start-up + run + shutting the cluster down; *worker CPU-s*: the "
              "worker processes' CPU; *client CPU*: the thread that writes results into the store, and the "
              "whole calling process (with a LocalCluster also the scheduler and the nannies, which tick "
              "whether or not there is work; for the local pool also building its own FrontEnd). *dask's "
              "default worker environment*: a LocalCluster made without merkit's settings, as `dask worker` "
              "and dask-jobqueue start workers: MALLOC_TRIM_THRESHOLD_=65536 (merkit's workers retune "
              "malloc themselves then, `merkit.cluster._tune_malloc`; the row *tuning off* shows what that "
              "is worth) and one malloc arena per thread (`--cluster local:N` sets MALLOC_ARENA_MAX=1: "
              "dask runs a task in a thread of the worker, and a thread's own arena costs musicnn time).", ""]
    p = res["projection"]
    lines += [f"## Projection to {p['tracks']:,} tracks (views mel,coch)", "",
              f"From the warm 2-worker run: **{_f(p['worker_cpu_s_per_track'], 3)} CPU-s per track** on a worker, "
              f"so **{p['cpu_hours']:.0f} CPU-hours** for 1 M tracks. The client spends "
              f"{_f(p['client_write_ms_per_track'], 2)} ms per track writing results and "
              f"{_f(p['client_receive_ms_per_track'], 3)} ms receiving them (copy + unpickle, measured "
              f"separately), so one client keeps up with ~{p['client_cap_tracks_per_s']:,.0f} tracks/s. "
              f"{p['shards']:,} tasks of 32 tracks for the scheduler; {p['output_gb']:.0f} GB of Mel + "
              "cochleagram float32 rows on the client's disk. Parallel efficiency measured here "
              f"(2 workers on 2 cores, the client and scheduler beside them): "
              f"{100 * p['parallel_efficiency_2_workers']:.0f} %; the LocalCluster's scheduler and nannies "
              f"used {100 * p['background_core_fraction']:.0f} % of a core in the background. The table "
              "assumes one core per worker and audio on a shared file system fast enough for them.", "",
              "| workers (1 core each) | tracks/s | wall time for 1 M tracks | into the client (MB/s) | limited by |",
              "|---|---|---|---|---|"]
    for n, w in p["wall_by_workers"].items():
        hours = w["hours"]
        span = f"{60 * hours:.0f} min" if hours < 1 else f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
        lines.append(f"| {n} | {w['tracks_per_s']:,.0f} | {span} | {w['into_client_mb_per_s']:.0f} "
                     f"| {'the client' if w['client_bound'] else 'workers'} |")
    lines.append("")
    if scale:
        lines += ["## Local pool at scale (generated audio)", "",
                  f"`python bench/extract_scale.py --tracks {scale['tracks']} --workers {scale['workers']}`: "
                  f"{scale['tracks']:,} manifest entries over 32 generated 30-90 s WAV files, "
                  f"{scale['workers']} processes on {scale['cpu_count']} cores: {scale['wall_s']:.0f} s, "
                  f"{scale['tracks_per_s']:.2f} tracks/s, {scale['failed']} failed; peak RSS main "
                  f"{scale['peak_rss_main_mb']:.0f} MB, largest worker {scale['peak_rss_largest_worker_mb']:.0f} MB "
                  f"(job at most {scale['peak_rss_job_upper_bound_mb']:.0f} MB); output {scale['output_mb']:.0f} MB "
                  "(bench/results/extract_scale.json).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
