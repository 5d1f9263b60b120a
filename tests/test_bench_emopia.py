"""bench/emopia.py's report: cells come from the run folders present, else stay as committed."""
import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "emopia.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_emopia", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_run(runs: Path, split: str, model: str, task: str, seed: int, acc: float) -> None:
    folder = runs / split / f"{model}_{task}" / f"seed_{seed}"
    folder.mkdir(parents=True)
    metrics = {"acc": acc, "f1": acc - 0.1, "auc": acc + 0.05}
    (folder / "results.json").write_text(json.dumps({"inference_head": "ensemble",
                                                     "test": {"ensemble": metrics, "fused": metrics}}))


def committed(acc: float, n: int = 5) -> dict:
    return {"seeds": list(range(n)), "head": "ensemble", "settings": None,
            **{m: {"mean": acc, "std": 0.01, "n": n} for m in ("acc", "f1", "auc")}}


def test_report_refreshes_the_runs_it_has_and_keeps_committed_cells(bench, tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "results"
    out.mkdir()
    # committed results of an earlier run: DAMER arousal on both splits, SVM on the official split
    (out / "emopia.json").write_text(json.dumps({
        "damer": {"official": {"a": committed(0.85)}, "protocol": {"a": committed(0.83)}},
        "damer_by_head": {"official": {"fused": {"a": committed(0.84)}}}}))
    (out / "compare_emopia.json").write_text(json.dumps({"official": {"svm": {"v": committed(0.66)}}}))
    # runs present here: the frame-token variant (two seeds) and a fresh DAMER protocol valence run
    fake_run(runs, "official", "damer_frame", "a", 0, 0.90)
    fake_run(runs, "official", "damer_frame", "a", 1, 0.80)
    fake_run(runs, "protocol", "damer", "v", 0, 0.61)
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- emopia-table -->\nold\n<!-- /emopia-table -->\n")
    bench.report(runs, out, readme)

    emopia = json.loads((out / "emopia.json").read_text())
    compare = json.loads((out / "compare_emopia.json").read_text())
    frame = emopia["damer_variants"]["official"]["damer_frame"]["a"]
    assert frame["seeds"] == [0, 1] and frame["acc"]["mean"] == pytest.approx(0.85)
    assert frame["acc"]["std"] == pytest.approx(0.0707107, abs=1e-6)
    assert emopia["damer"]["protocol"]["v"]["acc"] == {"mean": 0.61, "std": 0.0, "n": 1}
    # kept: no run folder here
    assert emopia["damer"]["official"]["a"]["acc"]["mean"] == 0.85
    assert emopia["damer"]["protocol"]["a"]["acc"]["mean"] == 0.83
    assert emopia["damer_variants"]["official"]["damer"]["a"]["acc"]["mean"] == 0.85
    assert emopia["damer_by_head"]["official"]["fused"]["a"]["acc"]["mean"] == 0.84
    assert compare["official"]["svm"]["v"]["acc"]["mean"] == 0.66
    # nothing anywhere: empty
    assert emopia["damer"]["official"]["v"] is None and compare["official"]["resnet"]["a"] is None
    md = (out / "emopia.md").read_text()
    assert "| damer_frame | 0.850 ± 0.071 (2) |" in md
    assert "0.850 ± 0.010 (5)" in readme.read_text() and "old" not in readme.read_text()
