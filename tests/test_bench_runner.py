"""bench/run.py: every benchmark listed with its prerequisites, a missing hard prerequisite stops
the run in one line, and results are stamped with their provenance."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import run as bench_run  # noqa: E402


def test_every_script_is_registered_and_exists():
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")} - {"run.py"}
    assert {b.script for b in bench_run.BENCHMARKS.values()} == scripts


def test_listing_names_each_benchmark():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py")], capture_output=True, text=True, check=True).stdout
    for name in bench_run.BENCHMARKS:
        assert name in out


def test_a_missing_prerequisite_stops_the_run_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(bench_run.BENCHMARKS, "x", bench_run.Bench(
        "features.py", "test", (bench_run.Need("a thing", lambda: False, "make it"),)))
    assert bench_run.main(["x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bench x: missing: a thing: make it"]


def test_results_are_stamped_with_provenance(tmp_path):
    res = tmp_path / "r.json"
    res.write_text(json.dumps({"rows": [1, 2]}))
    (tmp_path / "list.json").write_text("[1, 2]")  # not an object: left alone
    rec = bench_run.provenance()
    assert set(rec) == {"date", "git_commit", "machine", "versions"} and rec["machine"]["cores"] >= 1
    assert rec["versions"]["merkit"]
    assert rec["git_commit"] == "unknown" or len(rec["git_commit"].split("+")[0]) == 40
    assert bench_run.stamp([res, tmp_path / "list.json"], rec) == [res]
    data = json.loads(res.read_text())
    assert data["rows"] == [1, 2] and data["provenance"] == rec
