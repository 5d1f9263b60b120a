"""DDP training through torchrun on CPU (gloo, 2 processes): the same run as one process.

With dropout 0 and float32 (``--no-amp``), a 2-process run computes the loss of the same global
batches as a 1-process run, so its per-epoch losses, statistics and final metrics agree to float
rounding (measured: 2.5e-6 relative at worst, on the Jensen-Shannon term of ~1e-3); the tests
allow 2e-5. A killed DDP run resumes to the weights of an uninterrupted one.
"""
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from merkit.cli import main
from merkit.data.memo2496 import save_memo2496
from merkit.training import distributed as dist
from merkit.checkpoint import load_checkpoint
from merkit.training.loop import batch_starts

from test_training import separable

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TOLERANCE = 2e-5  # relative, on every logged number
FLAGS = ["--label", "a", "--dim", "16", "--n-heads", "2", "--n-layers", "1", "--fusion-dim", "32",
         "--batch-size", "30", "--lr", "3e-3", "--queue-size", "64", "--no-progress", "--dropout", "0",
         "--no-amp"]


def torchrun(args, **kw):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "merkit", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def finished(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def log_rows(run):
    with open(run / "seed_0" / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def assert_same_numbers(a, b, what):
    assert a.keys() == b.keys(), what
    for k in a:
        if k == "time_s" or k.endswith("_std"):  # wall time; stds of values near 1 (cancellation)
            continue
        x, y = float(a[k] or "nan"), float(b[k] or "nan")
        if math.isnan(x):
            assert math.isnan(y), (what, k)
            continue
        assert abs(x - y) <= TOLERANCE * max(1e-2, abs(x)), (what, k, x, y)


def assert_same_metrics(a, b):
    for head in a:
        for m, x in a[head].items():
            assert abs(x - b[head][m]) <= 1e-6 or (math.isnan(x) and math.isnan(b[head][m])), (head, m, x, b[head][m])


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    save_memo2496(separable(150), root / "feats")
    save_memo2496(separable(40, seed=7), root / "pool")
    return root


def test_rank_slices_partition_a_batch(monkeypatch):
    for n in (2, 7, 30, 31):
        for w in (1, 2, 3):
            monkeypatch.setattr(dist, "world", lambda: w)
            got = []
            for r in range(w):
                monkeypatch.setattr(dist, "rank", lambda: r)
                sl = dist.rank_slice(n)
                got += list(range(n))[sl]
                assert abs((sl.stop - sl.start) - n / w) < 1
            assert got == list(range(n))
    # a last batch with fewer samples than processes joins the one before it
    assert batch_starts(61, 30, world=2) == [0, 30, 61]
    assert batch_starts(62, 30, world=2) == [0, 30, 60, 62]
    assert batch_starts(63, 30, world=4) == [0, 30, 63]


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path, features):
    """DAMER, semi-supervised (PCL on an unlabelled pool, SAML queue with a key encoder): the
    same losses, PCL / queue statistics, validation metrics, selected epoch and test metrics."""
    args = ["--data", str(features / "feats"), "--unlabelled", str(features / "pool"), "--epochs", "3", *FLAGS]
    proc = torchrun([*args, "--run-dir", str(tmp_path / "two")])
    assert main(["train", *args, "--run-dir", str(tmp_path / "one")]) == 0
    out = finished(proc)
    assert out.count("results:") == 1  # rank 0 alone prints (and writes)
    one, two = log_rows(tmp_path / "one"), log_rows(tmp_path / "two")
    assert len(one) == len(two) == 3
    for ra, rb in zip(one, two):
        assert_same_numbers(ra, rb, f"epoch {ra['epoch']}")
    ra, rb = (json.loads((tmp_path / r / "seed_0" / "results.json").read_text()) for r in ("one", "two"))
    assert ra["best_epoch"] == rb["best_epoch"]
    assert_same_metrics(ra["test"], rb["test"])
    # the queues (gathered from both ranks) hold the same keys in the same order
    qa, qb = (load_checkpoint(tmp_path / r / "seed_0" / "last.pt")["train_state"]["objective"]["queue"]
              for r in ("one", "two"))
    assert torch.equal(qa["labels"], qb["labels"]) and torch.allclose(qa["keys"], qb["keys"], atol=1e-4)
    assert not list((tmp_path / "two").rglob("*.tmp"))


@pytest.mark.slow
def test_musefuse_prototypes_span_ranks(tmp_path, features):
    args = ["--data", str(features / "feats"), "--model", "musefuse", "--epochs", "2", *FLAGS]
    proc = torchrun([*args, "--run-dir", str(tmp_path / "two")])
    assert main(["train", *args, "--run-dir", str(tmp_path / "one")]) == 0
    finished(proc)
    for ra, rb in zip(log_rows(tmp_path / "one"), log_rows(tmp_path / "two")):
        assert_same_numbers(ra, rb, f"epoch {ra['epoch']}")
    pa, pb = (load_checkpoint(tmp_path / r / "seed_0" / "last.pt")["train_state"]["objective"]["prototypes"]
              for r in ("one", "two"))
    for b in pa:
        assert torch.allclose(pa[b]["prototypes"], pb[b]["prototypes"], atol=1e-5)


@pytest.mark.slow
def test_a_killed_ddp_run_resumes(tmp_path, features, capsys):
    args = ["--data", str(features / "feats"), "--epochs", "30", *FLAGS]
    straight = torchrun([*args, "--run-dir", str(tmp_path / "straight")])
    finished(straight)
    killed = torchrun([*args, "--run-dir", str(tmp_path / "killed")], start_new_session=True)
    log_csv = tmp_path / "killed" / "seed_0" / "log.csv"
    deadline = time.time() + 240
    while time.time() < deadline and killed.poll() is None:
        if log_csv.is_file() and len(log_csv.read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.02)
    os.killpg(killed.pid, signal.SIGKILL)  # torchrun and both ranks, without warning
    killed.communicate()
    assert not (tmp_path / "killed" / "seed_0" / "results.json").exists(), "the run ended before the kill"
    done = load_checkpoint(tmp_path / "killed" / "seed_0" / "last.pt")["train_state"]["epoch"]
    assert 2 <= done < 30
    # resuming with another number of processes is refused with the reason
    assert main(["train", "--resume", str(tmp_path / "killed")]) == 1
    assert "as many (torchrun --nproc_per_node)" in capsys.readouterr().err
    finished(torchrun(["--resume", str(tmp_path / "killed")]))
    for name in ("last.pt", "best.pt"):
        a = load_checkpoint(tmp_path / "straight" / "seed_0" / name)["state_dict"]
        b = load_checkpoint(tmp_path / "killed" / "seed_0" / name)["state_dict"]
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    ra, rb = (json.loads((tmp_path / r / "seed_0" / "results.json").read_text()) for r in ("straight", "killed"))
    assert ra["test"] == rb["test"] and ra["best_epoch"] == rb["best_epoch"]


def test_models_without_ddp_are_refused_under_torchrun(tmp_path, features):
    proc = torchrun(["--data", str(features / "feats"), "--model", "svm", "--label", "a",
                     "--run-dir", str(tmp_path / "svm")])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "without torchrun" in out
