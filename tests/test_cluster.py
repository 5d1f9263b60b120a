"""merkit.cluster: extract and predict on a dask.distributed LocalCluster of 2 worker processes
give what the local paths give, survive a killed worker, resume by shards and report failures."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from conftest import melody, tone
from merkit.config import AudioConfig, FeatureConfig
from merkit.data.manifest import Track
from merkit.extract import WORK_DIR, extract

distributed = pytest.importorskip("distributed")

import merkit.cluster as mc  # noqa: E402

# small, fast settings, as tests/test_extract.py: 3 s windows at 22.05 kHz
AUDIO = AudioConfig(sample_rate=22_050, window_start=0.5, window_seconds=3.0)
FEATS = FeatureConfig(n_frames=31)
# everything a finished extraction publishes
OUTPUTS = ("mel_spec.npy", "cochlegram.npy", "labels/label_a.npy", "labels/label_v.npy", "tracks.csv",
           "features.json", "failures.csv")


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster for the module (starting one costs ~2 s), as `--cluster local:2` makes it:
    2 single-threaded processes."""
    with mc.connect("local:2") as client:
        yield client.cluster, client


@pytest.fixture
def client(cluster):
    lc, client = cluster
    client.wait_for_workers(2, timeout=60)  # a worker killed by an earlier test is back
    return client


def _corpus(tmp_path, n=12, *, bad=False) -> list[Track]:
    audio = tmp_path / "audio"
    audio.mkdir(exist_ok=True)
    tracks = []
    for i in range(n):
        p = audio / f"t{i:02d}.wav"
        sf.write(p, tone(110.0 * (i + 1), 4.0, 22_050), 22_050)
        tracks.append(Track(track_id=f"t{i:02d}", path=str(p), source="test", label_a=i - 5.5, label_v=5.5 - i))
    if bad:
        (audio / "bad.mp3").write_bytes(b"not audio" * 50)
        tracks.insert(3, Track(track_id="bad", path=str(audio / "bad.mp3")))
        tracks.insert(8, Track(track_id="missing", path=str(audio / "gone.wav")))
    return tracks


def _same_outputs(a: Path, b: Path):
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # the work dir is removed only when nothing failed (a rerun then retries just the failures)
    assert (a / WORK_DIR).exists() == (b / WORK_DIR).exists()


def test_extract_on_cluster_is_identical_to_local_and_reports_failures(client, tmp_path):
    tracks = _corpus(tmp_path, bad=True)
    ref = extract(tracks, tmp_path / "local", audio=AUDIO, features=FEATS, workers=0, progress=False)
    rep = extract(tracks, tmp_path / "dask", audio=AUDIO, features=FEATS, cluster=client, shard_size=3,
                  progress=False)
    assert rep.n_done == ref.n_done == 12
    assert [f[0] for f in rep.failures] == ["bad", "missing"]
    assert rep.failures == ref.failures  # the same reasons, track for track
    _same_outputs(tmp_path / "local", tmp_path / "dask")
    failures = (tmp_path / "dask" / "failures.csv").read_text()
    assert "bad.mp3" in failures and "gone.wav" in failures


def test_rerun_after_interruption_submits_only_unfinished_shards(client, tmp_path, monkeypatch):
    import merkit.extract as ex

    tracks = _corpus(tmp_path, 12)
    size = 3
    real_put, puts = ex._Store.put, []

    def put_then_die(self, i, *a):
        if len(puts) == 2 * size:  # two shards written: the client is killed in the third
            raise KeyboardInterrupt
        puts.append(i)
        return real_put(self, i, *a)

    monkeypatch.setattr(ex._Store, "put", put_then_die)
    with pytest.raises(KeyboardInterrupt):
        extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, cluster=client, shard_size=size,
                progress=False)
    assert not (tmp_path / "out" / "mel_spec.npy").exists()  # nothing half-published
    first_shards = [set(range(k, k + size)) for k in range(0, 12, size)]
    assert len(puts) == 2 * size and sum(s <= set(puts) for s in first_shards) == 2  # two whole shards
    monkeypatch.setattr(ex._Store, "put", real_put)

    submitted = []
    real_run = mc.run_shards

    def spy(client, fn, items, *a, **kw):
        submitted.extend(i for i, _ in items)
        return real_run(client, fn, items, *a, **kw)

    monkeypatch.setattr(ex, "run_shards", spy)  # the name extract calls
    rep = extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, cluster=client, shard_size=size,
                  progress=False)
    assert rep.n_skipped_resumed == 2 * size and rep.n_done == 12
    assert sorted(submitted) == sorted(set(range(12)) - set(puts))  # the finished shards are not resubmitted
    extract(tracks, tmp_path / "ref", audio=AUDIO, features=FEATS, workers=0, progress=False)
    _same_outputs(tmp_path / "ref", tmp_path / "out")


def test_cli_predict_on_a_scheduler_address_matches_local(cluster, client, tmp_path, capsys):
    """Rows of `merkit predict --cluster ADDRESS` equal the local command's: ok, not-music and error
    rows, the timeline included, in input order."""
    from merkit.cli import main
    from test_predict import music, save_tiny

    model = save_tiny(tmp_path / "tiny.pt")
    data = tmp_path / "in"
    data.mkdir()
    for k in range(3):
        sf.write(data / f"song{k}.wav", music(12.0, 300.0 + k), 44_100)
    sf.write(data / "hum.wav", tone(440.0, 12.0, 44_100), 44_100)  # a steady tone: not music
    (data / "broken.mp3").write_bytes(b"\0" * 100)
    common = ["--model", str(model), "--format", "csv", "--timeline", "--no-progress"]
    assert main(["predict", str(data), *common, "-o", str(tmp_path / "local.csv")]) == 1
    lc, _ = cluster
    assert main(["predict", str(data), *common, "-o", str(tmp_path / "dask.csv"),
                 "--cluster", lc.scheduler_address, "--shard-size", "2"]) == 1
    local, dask = (tmp_path / "local.csv").read_text(), (tmp_path / "dask.csv").read_text()
    assert dask == local
    assert ",error," in dask and ",not_music," in dask and dask.count("\nwindow,") == 6


def test_predict_default_model_on_cluster(client, tmp_path):
    from merkit.predict import load_model

    files = []
    for k in range(2):
        files.append(tmp_path / f"s{k}.wav")
        sf.write(files[-1], melody(8.0, 44_100, seed=k), 44_100)
    local = [r.to_dict() for r in load_model().analyse_files(files)]
    # one shard: one worker loads the shipped model (~5 s), not both at once on 2 cores
    from merkit.predict import ModelSpec, analyse_files_on_cluster

    remote = [r.to_dict() for r in analyse_files_on_cluster(ModelSpec(), files, cluster=client, shard_size=2)]
    assert all(r["ok"] for r in remote) and len(remote) == len(local)
    # the same code in another process: the same fields, floats to rounding (a worker's thread
    # count can change BLAS summation order: 1e-6 is far below any difference a bug would make)
    for a, b in zip(remote, local):
        assert a.keys() == b.keys() and a["prediction"]["quadrant"] == b["prediction"]["quadrant"]
        for k, v in b["prediction"].items():
            if isinstance(v, (float, dict)):  # numbers, and the GEMS shares {name: float}
                assert a["prediction"][k] == pytest.approx(v, abs=1e-6), k
            elif k != "quadrant_probs":
                assert a["prediction"][k] == v, k
        assert a["prediction"]["quadrant_probs"] == pytest.approx(b["prediction"]["quadrant_probs"], abs=1e-6)


def _double_or_die(items: list[int]) -> list[int]:
    if -1 in items:
        os.kill(os.getpid(), signal.SIGKILL)  # an item that crashes whichever worker runs it
    return [2 * x for x in items]


class _CountingClient:
    """A client that counts submitted tasks (run_shards' in-flight bound)."""

    def __init__(self, client):
        self.client, self.submitted = client, 0

    def submit(self, *a, **kw):
        self.submitted += 1
        return self.client.submit(*a, **kw)

    def nthreads(self):
        return self.client.nthreads()

    def cancel(self, futs):
        return self.client.cancel(futs)


@pytest.mark.parametrize("ordered", [False, True])
def test_run_shards_bounds_the_shards_in_flight(client, ordered):
    counting = _CountingClient(client)
    limit = mc.SHARDS_PER_THREAD * 2
    seen, most = [], 0
    for shard, res in mc.run_shards(counting, _double_or_die, list(range(40)), shard_size=2, ordered=ordered):
        most = max(most, counting.submitted - len(seen))  # submitted, not yet given to the caller
        seen.append((shard, res))
    assert most <= limit and counting.submitted == 20
    assert sorted(x for s, _ in seen for x in s) == list(range(40))
    assert all(r == [2 * x for x in s] for s, r in seen)
    if ordered:
        assert [x for s, _ in seen for x in s] == list(range(40))


class KillOnce(distributed.WorkerPlugin):
    """Logs every shard a worker starts; SIGKILLs the worker as it starts a shard once the
    client has written a first result (once per test, across workers: a marker file)."""

    def __init__(self, log: str, marker: str, written: str):
        self.log, self.marker, self.written = log, marker, written

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or "_extract_shard" not in str(key):
            return
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()} {key}\n")
        if os.path.exists(self.written) and os.path.getsize(self.written) > 0:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)  # with the shard just started


def test_killed_worker_costs_only_the_shards_it_held(client, tmp_path):
    tracks = _corpus(tmp_path, 24)
    size = 2
    n_shards = len(tracks) // size
    log, marker = tmp_path / "executions.log", tmp_path / "killed"
    plugin = KillOnce(str(log), str(marker), str(tmp_path / "out" / WORK_DIR / "track_info.jsonl"))
    client.register_plugin(plugin, name="kill-once")
    try:
        rep = extract(tracks, tmp_path / "out", audio=AUDIO, features=FEATS, cluster=client, shard_size=size,
                      progress=False)
    finally:
        client.unregister_worker_plugin("kill-once")
    assert marker.exists(), "no worker was killed"
    assert rep.n_done == len(tracks) and not rep.failures
    runs = [r.split() for r in log.read_text().splitlines()]  # (worker pid, task key)
    assert len({pid for pid, _ in runs}) >= 2  # shards ran in more than one worker process
    assert len({key for _, key in runs}) == n_shards  # dask reran the dead worker's tasks itself
    # every shard once, plus those the dead worker held: the one it had started, and results
    # the client had not fetched yet (tiny shards here), never more than the shards in flight,
    # and not the whole batch again
    in_flight = mc.SHARDS_PER_THREAD * 2
    assert n_shards + 1 <= len(runs) <= n_shards + in_flight, runs
    extract(tracks, tmp_path / "ref", audio=AUDIO, features=FEATS, workers=0, progress=False)
    _same_outputs(tmp_path / "ref", tmp_path / "out")


def test_run_shards_isolates_an_item_that_kills_workers(cluster, client):
    lc, _ = cluster
    items = [0, 1, 2, 3, -1, 5, 6, 7, 8, 9]
    allowed = lc.scheduler.allowed_failures
    lc.scheduler.allowed_failures = 0  # the first death ends a task (dask's default: the fourth)
    try:
        out = list(mc.run_shards(client, _double_or_die, items, shard_size=4, ordered=True))
    finally:
        lc.scheduler.allowed_failures = allowed
    flat = [(x, r) for shard, res in out for x, r in zip(shard, res if res is not None else [None] * len(shard))]
    assert [x for x, _ in flat] == items  # in order, every item once
    assert dict(flat) == {x: (None if x == -1 else 2 * x) for x in items}
    assert ([-1], None) in out


def test_cli_extract_cluster_local_n(tmp_path):
    """`--cluster local:2` starts (and closes) its own LocalCluster; same bytes as `--workers 0`."""
    from merkit.cli import main

    _corpus(tmp_path, 6)
    env_before = dict(os.environ)
    common = ["--no-progress", "--sample-rate", "22050", "--window-start", "0.5", "--window-seconds", "3",
              "--n-frames", "31"]
    assert main(["extract", str(tmp_path / "audio"), "-o", str(tmp_path / "local"), "--workers", "0", *common]) == 0
    assert main(["extract", str(tmp_path / "audio"), "-o", str(tmp_path / "dask"), "--cluster", "local:2",
                 "--shard-size", "2", *common]) == 0
    _same_outputs(tmp_path / "local", tmp_path / "dask")
    assert dict(os.environ) == env_before  # what dask's nannies set in this process is undone


def test_clear_errors_without_dask_or_scheduler(monkeypatch):
    with pytest.raises(mc.ClusterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        with mc.connect("tcp://127.0.0.1:9", timeout=1):
            pass
    for bad in ("local:0", "local:x"):
        with pytest.raises(mc.ClusterError, match="local:N"):
            with mc.connect(bad):
                pass
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if merkit[dask] were not installed
    with pytest.raises(mc.ClusterError, match=r"merkit\[dask\]"):
        with mc.connect("local:1"):
            pass


def test_merkit_does_not_import_dask():
    code = ("import sys, merkit.extract, merkit.cluster, merkit.cli, merkit.commands.predict; "
            "assert 'distributed' not in sys.modules and 'dask' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shard_size_default_spreads_small_inputs():
    assert mc.shard_size_for(10_000, 8) == mc.DEFAULT_SHARD_SIZE
    assert mc.shard_size_for(12, 2) == 3  # 4 shards: two per worker thread
    assert mc.shard_size_for(1, 4) == 1 and mc.shard_size_for(7, 2, 5) == 5
    with pytest.raises(ValueError):
        mc.shard_size_for(10, 2, 0)


def test_connect_by_address_and_scheduler_file(cluster, tmp_path):
    import json

    lc, _ = cluster
    (tmp_path / "scheduler.json").write_text(json.dumps({"address": lc.scheduler_address}))
    for spec in (lc.scheduler_address, str(tmp_path / "scheduler.json")):
        with mc.connect(spec) as c:
            assert c.scheduler.address == lc.scheduler_address and len(c.nthreads()) >= 1


def _malloc_env() -> dict:
    return {k: os.environ.get(k) for k in ("MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_")}


def test_local_workers_start_with_fast_malloc_settings(client):
    """local:N workers: one malloc arena, and not dask's MALLOC_TRIM_THRESHOLD_ (docs/scale.md: Malloc)."""
    envs = list(client.run(_malloc_env).values())
    assert envs and all(e == {"MALLOC_ARENA_MAX": "1", "MALLOC_TRIM_THRESHOLD_": None} for e in envs)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tune_malloc_only_where_dask_pinned_it():
    def tuned(env: dict) -> str:
        code = "import merkit.cluster as mc; print(mc._tune_malloc())"
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    assert tuned(env) == "False"
    assert tuned({**env, "MALLOC_TRIM_THRESHOLD_": "65536"}) == "True"
