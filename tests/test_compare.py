"""One interface for every model: merkit compare, regression, MuseFuse's flag spellings, the
plateau schedule."""
import json
from dataclasses import replace

import pytest
import torch

from merkit.cli import main, normalise_flags
from merkit.data.memo2496 import save_memo2496
from merkit.models import MODELS, load_model
from merkit.training import fit

from test_training import TINY_MODEL, TINY_TRAIN, separable

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY_NET = ["--dim", "16", "--n-heads", "2", "--n-layers", "1", "--fusion-dim", "32", "--width", "4",
            "--chunk-frames", "4", "--batch-size", "32", "--lr", "3e-3", "--queue-size", "64", "--no-progress"]


def test_underscore_flags_become_hyphens_but_values_do_not():
    assert normalise_flags(["train", "--batch_size", "8", "--data_root=/a_b", "--run-dir", "x_y", "--", "--k_v"]) == \
        ["train", "--batch-size", "8", "--data-root=/a_b", "--run-dir", "x_y", "--", "--k_v"]


def test_every_registered_model_is_importable():
    # one registry: every family, the loop's and the two trained by their own runners
    assert {spec.kind for spec in MODELS.values()} == {"torch", "classical", "unified", "dynamic"}
    assert set(MODELS) >= {"damer", "musefuse", "resnet", "shortchunk", "svm", "logreg", "unified", "dsaml"}
    for spec in MODELS.values():
        cls = spec.model_class()
        if spec.kind == "torch":
            assert hasattr(cls, "default_head") and hasattr(cls, "predict_proba"), spec.name
            assert spec.objective_class() is not None and spec.in_loop, spec.name
        elif spec.kind == "classical":
            assert hasattr(cls, "fit") and hasattr(cls, "save") and spec.in_loop, spec.name
        else:  # trained outside the loop: a network, its runner's config, the flags it takes
            import dataclasses

            fields = {f.name for f in dataclasses.fields(spec.train_config_class())}
            assert issubclass(cls, torch.nn.Module) and not spec.in_loop, spec.name
            assert set(spec.cli_flags) - {"inputs"} <= fields, spec.name


def test_cli_compare_trains_every_model_on_the_same_split_and_resumes(tmp_path, capsys):
    data = save_memo2496(separable(160, clips_per_song=2), tmp_path / "feats")
    run = tmp_path / "cmp"
    args = ["compare", "--data", str(data), "--models", "logreg", "musefuse", "damer", "--tasks", "a", "v",
            "--epochs", "6", "--run-dir", str(run), *TINY_NET]
    assert main(args) == 0
    printed = capsys.readouterr().out
    res = json.loads((run / "results.json").read_text())
    assert [(r["model"], r["task"]) for r in res["rows"]] == [
        (m, t) for m in ("logreg", "musefuse", "damer") for t in ("a", "v")]
    for name in ("logreg", "musefuse", "damer", "arousal ACC", "valence AUC"):
        assert name in printed and name in (run / "table.md").read_text()
    heads = {r["model"]: r["head"] for r in res["rows"]}
    assert heads == {"logreg": "out", "musefuse": "fused", "damer": "ensemble"}
    # the same test tracks for every model (same split seed)
    ids = {json.loads((run / f"{m}_a" / "seed_0" / "results.json").read_text())["sizes"]["test"]
           for m in ("logreg", "musefuse", "damer")}
    assert len(ids) == 1
    # logistic regression on mean MFCCs separates the Mel-energy (arousal) classes of this data
    logreg_a = next(r for r in res["rows"] if r["model"] == "logreg" and r["task"] == "a")
    assert logreg_a["summary"]["acc"]["mean"] >= 0.9
    # resuming a finished comparison retrains nothing
    stamp = (run / "damer_a" / "seed_0" / "best.pt").stat().st_mtime_ns
    assert main(["compare", "--resume", str(run), "--no-progress"]) == 0
    assert (run / "damer_a" / "seed_0" / "best.pt").stat().st_mtime_ns == stamp
    assert json.loads((run / "results.json").read_text())["rows"] == res["rows"]
    # a new comparison into the same folder is refused
    assert main(args) == 1


def test_regression_through_the_cli_for_a_network_and_a_classical_model(tmp_path, capsys):
    data = save_memo2496(separable(200, clips_per_song=2), tmp_path / "feats")
    for model in ("damer", "logreg"):
        run = tmp_path / model
        assert main(["train", "--data", str(data), "--model", model, "--label", "a", "--regression",
                     "--epochs", "10", "--run-dir", str(run), *TINY_NET]) == 0
        res = json.loads((run / "results.json").read_text())
        test = res["per_seed"][0]["test"][res["inference_head"]]
        assert set(test) == {"r2", "pearson", "ccc", "rmse"}
        # the features carry sign(a), so a good regressor correlates well with a ~ U(-1, 1)
        assert test["pearson"] > 0.6 and test["ccc"] > 0.4, (model, test)
        out = tmp_path / f"{model}_eval.json"
        assert main(["evaluate", str(run / "seed_0"), "--data", str(data), "--out", str(out)]) == 0
        evaluated = json.loads(out.read_text())["metrics"][res["inference_head"]]
        assert evaluated == pytest.approx(test, abs=1e-6)  # file = training-time path


def test_musefuse_accepts_its_readme_command_line(tmp_path):
    data = save_memo2496(separable(120), tmp_path / "feats")
    out = tmp_path / "out"
    assert main(["train", "--model", "musefuse", "--label_mode", "v", "--epochs", "2", "--batch_size", "32",
                 "--lr", "1e-3", "--data_root", str(data), "--out_dir", str(out), "--mixed_precision",
                 "--dim", "16", "--n_heads", "2", "--n-layers", "1", "--fusion-dim", "32", "--no-progress"]) == 0
    ckpts = list((out / "seed_0").glob("musefuse_memo_v_*.pt"))
    assert len(ckpts) == 1
    model = load_model(ckpts[0])
    assert model.cfg.name == "musefuse"
    stored = torch.load(ckpts[0], map_location="cpu", weights_only=False)
    assert stored["kind"] == "musefuse" and stored["format"] == 2
    assert stored["train_config"]["amp"] is True and stored["train_config"]["label"] == "v"
    assert "val" in stored["metrics"] and "acc" in stored["metrics"]["val"]["fused"]


def test_plateau_schedule_lowers_the_learning_rate_when_validation_stalls(tmp_path):
    cfg = replace(TINY_TRAIN, epochs=8, scheduler="plateau", plateau_patience=0, plateau_factor=0.5)
    res = fit(separable(120), TINY_MODEL, cfg, tmp_path / "run", progress=False)
    lrs = [r["lr"] for r in res["history"]]
    assert lrs[0] == cfg.lr and all(b <= a for a, b in zip(lrs, lrs[1:]))
    assert min(lrs) < cfg.lr  # validation accuracy saturates on this data, so it stalled
    for a, b in zip(lrs, lrs[1:]):  # every change is one factor
        assert b == a or b == pytest.approx(a * 0.5)


def test_a_dataset_name_loads_its_cached_features(tmp_path, monkeypatch):
    from merkit.feature_cache import load_features
    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "cache"))
    save_memo2496(separable(20), tmp_path / "cache" / "feats" / "emotify")
    assert len(load_features("emotify")) == 20  # no extraction: the cached folder is used
    with pytest.raises(ValueError, match="not one of the dataset names"):
        load_features("no-such-corpus")
    with pytest.raises(ValueError, match="extract them with"):
        from merkit.feature_cache import dataset_features
        dataset_features("deam")
