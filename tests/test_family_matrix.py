"""Every command for every family of the training loop (damer, musefuse, resnet, shortchunk, svm,
logreg) on tiny data: it works, or refuses in one line saying why, never a traceback. (The
unified and DSAML families: tests/test_family_commands.py.)"""
import json

import numpy as np
import pytest
import soundfile as sf

from conftest import melody
from merkit.cli import main

pytestmark = pytest.mark.usefixtures("torch_one_thread")

LOOP = ("damer", "musefuse", "resnet", "shortchunk", "svm", "logreg")
CLASSICAL = ("svm", "logreg")
TINY = {"damer": ["--dim", "16", "--n_heads", "2", "--n-layers", "1", "--fusion-dim", "32"],
        "musefuse": ["--dim", "16", "--n_heads", "2", "--n-layers", "1", "--fusion-dim", "32"]}
SR = 22_050


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run per family, trained through the CLI on a 60-clip folder whose front end (6 s
    windows at 22.05 kHz, 31 frames) is the one `merkit predict` rebuilds from the model file."""
    from test_unified import _feature_folder

    d = tmp_path_factory.mktemp("matrix")
    data = _feature_folder(d / "feats", "emopia", 60, np.random.default_rng(0), kind="quadrant")
    song = d / "song.wav"
    sf.write(song, melody(9.0, SR, seed=3), SR)
    (d / "examples.csv").write_text(f"path,quadrant\n{song},1\n")
    for fam in LOOP:
        assert main(["train", "--arch", fam, "--data", str(data), "--label", "a", "--epochs", "2",
                     "--run-dir", str(d / fam), "--no-progress", *TINY.get(fam, [])]) == 0, fam
    return {"dir": d, "data": data, "song": song}


def _cli(capsys, argv):
    rc = main([str(x) for x in argv])
    cap = capsys.readouterr()
    err = [ln for ln in cap.err.strip().splitlines() if ln.strip() and not ln.startswith("INFO")]
    assert not any("Traceback" in ln for ln in err), err
    return rc, cap.out, err


def _model(runs, fam):
    return runs["dir"] / fam / "seed_0" / ("model.skops" if fam in CLASSICAL else "best.pt")


@pytest.mark.parametrize("fam", LOOP)
def test_evaluate_a_model_and_a_run(runs, fam, capsys, tmp_path):
    rc, out, err = _cli(capsys, ["evaluate", runs["dir"] / fam / "seed_0", "--data", runs["data"],
                                 "-o", tmp_path / "m.json"])
    assert rc == 0, err
    stored = json.loads((runs["dir"] / fam / "results.json").read_text())
    head = stored["inference_head"]
    got = json.loads((tmp_path / "m.json").read_text())["metrics"][head]
    assert got == pytest.approx(stored["per_seed"][0]["test"][head], abs=1e-6)  # the file = training time
    rc, out, err = _cli(capsys, ["evaluate", runs["dir"] / fam])
    assert rc == 0 and head in out, err


@pytest.mark.parametrize("fam", LOOP)
def test_plot_draws_what_the_family_logs_or_refuses(runs, fam, capsys, tmp_path):
    rc, out, err = _cli(capsys, ["plot", runs["dir"] / fam, "-o", tmp_path / "p", "--data", runs["data"]])
    if fam in CLASSICAL:
        assert rc == 1 and len(err) == 1 and "a classical model has no epochs" in err[0], err
        return
    assert rc == 0, err
    drawn = {p.name for p in (tmp_path / "p").rglob("*.png")}
    assert "training.png" in drawn
    assert ("fig7_tsne.png" in drawn) == (fam in ("damer", "musefuse"))  # only they have fused features


@pytest.mark.parametrize("fam", LOOP)
def test_predict_export_and_the_onnx_backend(runs, fam, capsys, tmp_path):
    model = _model(runs, fam)
    rc, out, err = _cli(capsys, ["predict", runs["song"], "--model", model, "--format", "json"])
    if fam in CLASSICAL:
        assert rc == 1 and len(err) == 1 and "a classical (scikit-learn) model" in err[0], err
        rc, _, err = _cli(capsys, ["export", model, "-o", tmp_path / "m.onnx"])
        assert rc == 1 and len(err) == 1 and "a classical (scikit-learn) model" in err[0], err
        return
    assert rc == 0, err
    torch_res = json.loads(out)["results"][0]["prediction"]
    assert 0.0 <= torch_res["arousal"] <= 1.0
    assert (torch_res["view_agreement"] is None) == (fam in ("resnet", "shortchunk"))  # one view: nothing to agree
    pytest.importorskip("onnxruntime")
    rc, out, err = _cli(capsys, ["export", model, "-o", tmp_path / "m.onnx"])
    assert rc == 0, err
    rc, out, err = _cli(capsys, ["predict", runs["song"], "--backend", "onnx", "--model", tmp_path / "m.onnx",
                                 "--format", "json"])
    assert rc == 0, err
    assert json.loads(out)["results"][0]["prediction"]["arousal"] == pytest.approx(torch_res["arousal"], abs=1e-4)


@pytest.mark.parametrize("fam", LOOP)
def test_adapt_refuses_every_loop_family_in_one_line(runs, fam, capsys, tmp_path):
    rc, _, err = _cli(capsys, ["adapt", "--model", _model(runs, fam), "--examples", runs["dir"] / "examples.csv",
                               "-o", tmp_path / "a.pt"])
    why = "a classical (scikit-learn) model" if fam in CLASSICAL else "works on unified model files"
    assert rc == 1 and len(err) == 1 and why in err[0], err


@pytest.mark.parametrize("fam", LOOP)
def test_resume_of_a_finished_run_retrains_nothing(runs, fam, capsys):
    results = runs["dir"] / fam / "results.json"
    before = results.read_text()
    models = {p: p.stat().st_mtime_ns for p in (runs["dir"] / fam / "seed_0").glob("*") if p.suffix in (".pt", ".skops")}
    assert models
    rc, out, err = _cli(capsys, ["train", "--resume", runs["dir"] / fam])
    assert rc == 0, err
    assert json.loads(results.read_text())["per_seed"] == json.loads(before)["per_seed"]
    assert {p: p.stat().st_mtime_ns for p in models} == models  # no model file rewritten


def test_compare_runs_every_loop_family_on_one_split(runs, capsys, tmp_path):
    rc, out, err = _cli(capsys, ["compare", "--data", runs["data"], "--arch", *LOOP, "--tasks", "a", "--epochs", "1",
                                 "--run-dir", tmp_path / "cmp", "--no-progress", *TINY["damer"]])
    assert rc == 0, err
    rows = json.loads((tmp_path / "cmp" / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == list(LOOP)
