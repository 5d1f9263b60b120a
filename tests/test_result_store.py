"""Incremental library runs (merkit.result_store): a rerun analyses only new or changed files,
gives the same output as a full run, resumes a killed run, drops removed files, and keeps
results apart per model and settings."""
import json
import os
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import melody
from merkit.cli import main
from merkit.result_store import ResultStore, run_key
from merkit.results import FileResult, Prediction

SR = 22_050


@pytest.fixture()
def library(tmp_path, monkeypatch):
    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "cache"))
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(3):
        sf.write(lib / f"{i}.wav", melody(6.0, SR, seed=i), SR)
    return lib


@pytest.fixture()
def analysed(monkeypatch):
    """The files each run really analyses."""
    import merkit.predictors.base as base

    seen = []
    real = base.Predictor.analyse_files

    def spy(self, files, **kw):
        seen.append([os.path.basename(str(f)) for f in files])
        return real(self, files, **kw)

    monkeypatch.setattr(base.Predictor, "analyse_files", spy)
    return seen


def _json(path):
    return json.loads(path.read_text())


@pytest.mark.slow
def test_a_rerun_analyses_only_what_changed(library, analysed, tmp_path, capsys):
    out = tmp_path / "library.json"
    args = ["predict", str(library), "--format", "json", "-o", str(out), "--no-progress"]
    assert main(args) == 0 and analysed == [["0.wav", "1.wav", "2.wav"]]
    first = _json(out)
    assert main(args) == 0 and len(analysed) == 1  # nothing new: the model is not even loaded
    assert _json(out) == first
    sf.write(library / "1.wav", melody(6.0, SR, seed=9), SR)  # changed content
    sf.write(library / "3.wav", melody(6.0, SR, seed=3), SR)  # new
    (library / "0.wav").unlink()  # removed
    assert main(args) == 0 and analysed[-1] == ["1.wav", "3.wav"]
    got = _json(out)
    assert [os.path.basename(r["path"]) for r in got["results"]] == ["1.wav", "2.wav", "3.wav"]
    assert got["results"][1] == first["results"][2]  # 2.wav: the stored result, as it was
    # the same as a run that analyses everything
    assert main(args + ["--no-cache"]) == 0
    assert _json(out)["results"] == got["results"] and analysed[-1] == ["1.wav", "2.wav", "3.wav"]


@pytest.mark.slow
def test_results_are_kept_apart_per_settings_and_model(library, analysed, tmp_path):
    base_args = ["predict", str(library), "--format", "json", "--no-progress"]
    assert main(base_args) == 0
    assert main(base_args + ["--timeline"]) == 0 and analysed[-1] == ["0.wav", "1.wav", "2.wav"]
    assert main(base_args + ["--no-content-check"]) == 0 and len(analysed[-1]) == 3
    assert run_key(["/dev/null"], timeline=True) != run_key(["/dev/null"], timeline=False)


def test_a_killed_run_goes_on_where_it_stopped(library, analysed, tmp_path, monkeypatch, capsys):
    import merkit.predictors.base as base

    spy = base.Predictor.analyse_files

    def killed_after_two(self, files, **kw):
        for i, res in enumerate(spy(self, files, **kw)):
            if i == 2:
                raise KeyboardInterrupt
            yield res

    monkeypatch.setattr(base.Predictor, "analyse_files", killed_after_two)
    args = ["predict", str(library), "--format", "csv", "-o", str(tmp_path / "l.csv"), "--no-progress"]
    assert main(args) == 130
    monkeypatch.setattr(base.Predictor, "analyse_files", spy)
    assert main(args) == 0 and analysed[-1] == ["2.wav"]
    assert len((tmp_path / "l.csv").read_text().splitlines()) == 4


def test_failures_are_not_stored_and_not_music_is(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    f = tmp_path / "x.wav"
    sf.write(f, np.zeros(SR, np.float32), SR)
    assert not store.put("k", f, FileResult(str(f), error="cannot decode"))
    nm = FileResult(str(f), error="not music: silence", not_music=True,
                    prediction=Prediction.no_music(0.0, 1.0, False, "silence"))
    assert store.put("k", f, nm)
    back = store.get("k", f)
    assert back.to_dict() == nm.to_dict() and store.get("other", f) is None
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: a miss
    assert store.get("k", f) is None


def test_an_unchanged_500_file_library_reruns_in_seconds(tmp_path, monkeypatch, capsys):
    """The store's side of a rerun (scan, stat, look up, render) for 500 files: each file's result
    is put in the store as a full run would, then the rerun must take < 10 s and analyse nothing."""
    from merkit.config import DEFAULT_MODEL_FILE

    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "cache"))
    lib = tmp_path / "lib"
    lib.mkdir()
    y = melody(1.0, SR)
    from merkit.commands.predict import resolve_backend

    key = run_key([DEFAULT_MODEL_FILE], backend=resolve_backend("auto", None), device="cpu", timeline=False,
                  timeline_max_minutes=None, content_check=True)
    p = Prediction(arousal=0.6, valence=0.4, quadrant=1, quadrant_word="happy", quadrant_probs=(0.4, 0.2, 0.2, 0.2),
                   certainty=0.4, start=0.0, end=1.0)
    with ResultStore() as store:
        for i in range(500):
            f = lib / f"{i:03d}.wav"
            sf.write(f, y, SR)
            store.put(key, f, FileResult(str(f), prediction=p, duration=1.0))
        store.describe(key, "UnifiedModel(...)")
    import merkit.predictors.base as base

    monkeypatch.setattr(base.Predictor, "analyse_files", lambda *a, **k: pytest.fail("analysed a stored file"))
    t0 = time.perf_counter()
    assert main(["predict", str(lib), "--format", "csv", "-o", str(tmp_path / "l.csv"), "--no-progress"]) == 0
    took = time.perf_counter() - t0
    assert took < 10.0, took
    assert len((tmp_path / "l.csv").read_text().splitlines()) == 501
