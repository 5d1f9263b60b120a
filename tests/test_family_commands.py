"""Every command works for the unified and DSAML families, or refuses with one line saying why
(issue 21). The DAMER loop's families (damer, musefuse, resnet, shortchunk, svm, logreg) go
through train / evaluate / compare / plot / resume in test_compare.py, test_training.py and
test_plots.py; these two families are trained outside that loop, and were the ones whose
commands crashed (``KeyError: 'model'`` from evaluate, "not a run folder" from plot and resume,
flags silently ignored by train)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from conftest import melody
from merkit.cli import main

SR = 22_050
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny unified run (two corpora, 6 s windows) and a tiny DSAML run, through the CLI."""
    from test_unified import _feature_folder

    from merkit.data.manifest import Track
    from merkit.dynamic_features import DynamicGrid, extract_dynamic

    d = tmp_path_factory.mktemp("families")
    rng = np.random.default_rng(0)
    a = _feature_folder(d / "emopia", "emopia", 60, rng, kind="quadrant")
    b = _feature_folder(d / "mirex", "mirex_mood", 150, rng, kind="mirex")
    assert main(["train", "--model", "unified", "--data", f"{a},{b}", "--epochs", "2", "--run-dir",
                 str(d / "unified")]) == 0
    tracks = []
    for i in range(10):
        p = d / f"t{i}.wav"
        sf.write(p, melody(12.0, SR, seed=i), SR)
        tracks.append(Track(track_id=f"t{i}", path=str(p), split="train" if i < 6 else "val" if i < 8 else "test"))
    la = np.cumsum(rng.normal(0, 0.1, (10, 20)), 1).clip(-1, 1)
    extract_dynamic(tracks, d / "dyn", DynamicGrid(start=0.0, n_frames=20), labels=(la, -la), progress=False)
    assert main(["train", "--model", "dsaml", "--data", str(d / "dyn"), "--epochs", "2", "--run-dir",
                 str(d / "dsaml")]) == 0
    song = d / "song.wav"
    sf.write(song, melody(9.0, SR, seed=50), SR)
    return {"dir": d, "unified": {"run": d / "unified", "data": f"{a},{b}"},
            "dsaml": {"run": d / "dsaml", "data": str(d / "dyn")}, "song": song, "tracks": tracks}


def _cli(capsys, argv):
    rc = main([str(x) for x in argv])
    cap = capsys.readouterr()
    return rc, cap.out, [ln for ln in cap.err.strip().splitlines() if ln.strip()]


@pytest.mark.parametrize("family", ["unified", "dsaml"])
def test_evaluate_a_model_file_and_a_run_folder(runs, family, capsys, tmp_path):
    r = runs[family]
    model = r["run"] / "seed_0" / "model.pt"
    rc, out, err = _cli(capsys, ["evaluate", model, "--data", r["data"], "--out", tmp_path / "m.json"])
    assert rc == 0, err
    res = json.loads((tmp_path / "m.json").read_text())
    if family == "unified":
        assert set(res["metrics"]) == {"emopia", "mirex_mood"} and "mirex_f1" in res["metrics"]["mirex_mood"]
        # the test split is the one training used: the same metrics as the run recorded
        stored = json.loads((r["run"] / "results.json").read_text())["test"][0]
        for corpus, ms in stored.items():
            for m, v in ms.items():
                assert res["metrics"][corpus][m] == pytest.approx(v, abs=1e-6, nan_ok=True), (corpus, m)
    else:
        stored = json.loads((r["run"] / "results.json").read_text())["test"][0]
        assert res["n_tracks"] == 2
        for m, v in stored.items():
            assert res["metrics"]["curve"][m] == pytest.approx(v, abs=1e-5, nan_ok=True), m
    rc, out, err = _cli(capsys, ["evaluate", r["run"]])
    assert rc == 0 and "(1 seed)" in out, err  # the run's mean ± std table


@pytest.mark.parametrize("family", ["unified", "dsaml"])
@pytest.mark.parametrize("command,why", [
    (["plot", "{run}"], "which this family does not log"),
    (["train", "--resume", "{run}"], "--resume continues runs of the DAMER training loop"),
    (["compare", "--arch", "{family}", "--data", "{data}"], "merkit compare trains"),
    (["compare", "--models", "{family}", "--data", "{data}"], "merkit compare trains"),  # the old spelling
])
def test_commands_a_family_cannot_serve_refuse_in_one_line(runs, family, command, why, capsys):
    r = runs[family]
    argv = [c.format(run=r["run"], family=family, data=r["data"].split(",")[0]) for c in command]
    rc, out, err = _cli(capsys, argv)
    assert rc == 1 and len(err) == 1 and why in err[0] and "error:" in err[0], err


@pytest.mark.parametrize("family,flags,unused", [
    ("unified", ["--label", "v", "--batch-size", "3", "--kd-temperature", "9", "--no-amp"], "--amp, --batch-size, --label"),
    ("dsaml", ["--kd-weight", "1", "--use-pcl"], "--kd-weight, --use-pcl"),
    ("damer", ["--kd-weight", "1"], "--kd-weight is an option of --arch unified"),
])
def test_train_refuses_flags_the_family_does_not_use(runs, family, flags, unused, capsys, tmp_path):
    data = runs["unified" if family == "damer" else family]["data"]
    rc, out, err = _cli(capsys, ["train", "--arch", family, "--data", data, *flags, "--run-dir", tmp_path / "r"])
    assert rc == 1 and len(err) == 1 and unused in err[0], err
    assert not (tmp_path / "r").exists()  # refused before any work


@pytest.mark.parametrize("family", ["unified", "dsaml"])
def test_predict_with_a_trained_model(runs, family, capsys):
    model = runs[family]["run"] / "seed_0" / "model.pt"
    rc, out, err = _cli(capsys, ["predict", runs["song"], "--model", model, "--format", "json"])
    assert rc == 0, err
    p = json.loads(out)["results"][0]["prediction"]
    assert p["quadrant"] in (1, 2, 3, 4) and -1 <= p["valence_score"] <= 1


def test_adapt_works_on_unified_and_refuses_dsaml(runs, capsys, tmp_path):
    ex = tmp_path / "ex.csv"
    ex.write_text("path,quadrant\n" + "".join(f"{t.path},{1 + i % 4}\n" for i, t in enumerate(runs["tracks"][:4])))
    model = runs["unified"]["run"] / "seed_0" / "model.pt"
    rc, out, err = _cli(capsys, ["adapt", "--model", model, "--examples", ex, "-o", tmp_path / "mine.pt"])
    assert rc == 0 and "adapted on 4 tracks" in out, err
    from merkit.predict import load_model

    assert load_model(tmp_path / "mine.pt").info["adapted"]["examples"] == 4
    rc, out, err = _cli(capsys, ["adapt", "--model", runs["dsaml"]["run"] / "seed_0" / "model.pt", "--examples", ex,
                                 "-o", tmp_path / "dyn.pt"])
    assert rc == 1 and len(err) == 1 and "works on unified model files" in err[0], err
    assert not (tmp_path / "dyn.pt").exists()


@pytest.mark.parametrize("family", ["unified", "dsaml"])
def test_export(runs, family, capsys, tmp_path):
    pytest.importorskip("onnxruntime")
    model = runs[family]["run"] / "seed_0" / "model.pt"
    rc, out, err = _cli(capsys, ["export", model, "-o", tmp_path / "m.onnx"])
    if family == "unified":
        assert rc == 0 and (tmp_path / "m.onnx").is_file() and "largest difference to torch" in out, err
    else:
        assert rc == 1 and len(err) == 1 and "error:" in err[0] and not (tmp_path / "m.onnx").exists(), err


def test_a_trained_unified_model_is_calibrated_on_validation_and_checks_itself(runs):
    """`merkit train --model unified` calibrates as the shipped model does (merkit.recipes): the
    slopes fitted on the validation parts (not the default 1.7), and reference outputs that a
    loaded copy verifies."""
    from merkit.data.multi_corpus import corpus_from_features, corpus_splits
    from merkit.feature_cache import load_features
    from merkit.predict import load_model
    from merkit.recipes import calibrate

    model = load_model(runs["unified"]["run"] / "seed_0" / "model.pt")
    assert model.calibration["valence"] != (1.7, 0.0) and model.calibration["arousal"] != (1.7, 0.0)
    assert model.reference is not None and model.check() < 1e-6  # float32 weights: the same outputs
    corpora = [corpus_from_features(load_features(p, views=("mel", "coch", "musicnn")), ("musicnn", "tonal"))
               for p in runs["unified"]["data"].split(",")]
    splits = {c.name: corpus_splits(c, 0) for c in corpora}
    again = calibrate(model.net, corpora, splits)
    for dim in ("valence", "arousal"):
        np.testing.assert_allclose(model.calibration[dim], again[dim], rtol=1e-6)


@pytest.mark.parametrize("family,shown,hidden", [("unified", ["--kd-temperature", "200"], ["--label", "--batch-size"]),
                                                  ("dsaml", ["--batch-size", "150"], ["--label", "--kd-weight"])])
def test_train_help_of_one_family_shows_its_own_options_and_defaults(family, shown, hidden, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--arch", family, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and all(s in out for s in shown) and not any(h in out for h in hidden), out


@pytest.mark.slow
def test_train_recipe_default_makes_a_calibrated_self_checking_model(tmp_path, capsys):
    """`merkit train --recipe default`: the shipped model's recipe from the package (plain vs
    leave-one-corpus-out-chosen settings, calibration, float16 check) on four tiny corpora."""
    import json

    from test_unified import _feature_folder

    from merkit.checkpoint import load_checkpoint
    from merkit.predict import load_model

    rng = np.random.default_rng(1)
    data = [_feature_folder(tmp_path / n, n, k, rng, kind=kind)
            for n, k, kind in (("emopia", 60, "quadrant"), ("mirex_mood", 150, "mirex"), ("emotify", 100, "mirex"),
                               ("q4", 100, "quadrant"))]
    rc, out, err = _cli(capsys, ["train", "--recipe", "default", "--data", ",".join(map(str, data)),
                                 "--run-dir", tmp_path / "run"])
    assert rc == 0, err
    model = load_model(tmp_path / "run" / "model.pt")
    assert model.check() < 0.02 and set(model.calibration) == {"valence", "arousal"}
    assert model.calibration["valence"] != (1.7, 0.0)  # fitted, not the fallback
    ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    from merkit.recipes import DEFAULT_RECIPE

    assert ckpt["kind"] == "unified" and ckpt["train_config"]["kd_weight"] == DEFAULT_RECIPE[1].get("kd_weight", 0.0)
    assert all(ckpt["model_config"][k] == v for k, v in DEFAULT_RECIPE[0].items())
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["recipe"] == "default" and res["record"]["fp16_max_output_change"] <= 0.02
    assert set(res["test"][0]) == {"emopia", "mirex_mood", "emotify", "q4"} and "| emopia |" in out


def test_train_recipe_default_refuses_what_it_fixes(capsys, tmp_path):
    rc, _, err = _cli(capsys, ["train", "--recipe", "default", "--epochs", "3", "--run-dir", tmp_path / "r"])
    assert rc == 1 and len(err) == 1 and "fixes its training settings (--epochs" in err[0], err
    rc, _, err = _cli(capsys, ["train", "--recipe", "default", "--data", "a,b", "--run-dir", tmp_path / "r"])
    assert rc == 1 and len(err) == 1 and "in this order: emopia,mirex_mood,emotify,q4 (got 2)" in err[0], err
    rc, _, err = _cli(capsys, ["train", "--recipe", "default", "--arch", "dsaml"])
    assert rc == 1 and len(err) == 1 and "leave out --arch" in err[0], err
