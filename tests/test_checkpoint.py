"""One checkpoint format (format 2) for every torch family, and the files merkit wrote before it:
each older layout is written here exactly as the old code wrote it, then loaded by today's
readers, which must rebuild the same network (same outputs)."""
from dataclasses import asdict

import numpy as np
import pytest
import torch

from merkit.checkpoint import (CHECKPOINT_FORMAT, FIELDS, checkpoint_kind, load_checkpoint, main as convert,
                               make_checkpoint, save_checkpoint, upgrade)
from merkit.config import ModelConfig, TrainConfig

TINY = ModelConfig(n_mels=12, n_coch=10, n_frames=16, dim=16, n_heads=2, n_layers=1, fusion_dim=32,
                   n_classes=2)


def _damer():
    from merkit.models import build_model

    torch.manual_seed(0)
    return build_model("damer", TINY).eval()


def _inputs(cfg=TINY, b=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, cfg.n_mels, cfg.n_frames, generator=g), torch.randn(b, cfg.n_coch, cfg.n_frames, generator=g)


def test_format_2_has_every_field_and_round_trips(tmp_path):
    net = _damer()
    path = save_checkpoint(tmp_path / "m.pt", make_checkpoint("damer", asdict(TINY), net.state_dict(),
                                                              train_config={"label": "a"}))
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT == 2 and set(FIELDS) <= set(raw) and "merkit" in raw["versions"]
    assert load_checkpoint(path)["kind"] == checkpoint_kind(path) == "damer"
    assert checkpoint_kind(tmp_path / "missing.pt") is None


def test_damer_format_1_still_loads(tmp_path):
    """best.pt of the DAMER loop before format 2: {format: 1, config: {model, train}, ...}."""
    from merkit.models import load_model

    net = _damer()
    old = {"format": 1, "versions": {"merkit": "0.1.0"}, "config": {"model": asdict(TINY), "train": asdict(TrainConfig())},
           "state_dict": net.state_dict(), "data_info": {"task": "a"}, "metrics": {"epoch": 3}}
    torch.save(old, tmp_path / "best.pt")
    ckpt = load_checkpoint(tmp_path / "best.pt")
    assert (ckpt["kind"], ckpt["train_config"]["label"], ckpt["data_info"], ckpt["metrics"]) == (
        "damer", TrainConfig().label, {"task": "a"}, {"epoch": 3})
    mel, coch = _inputs()
    torch.testing.assert_close(load_model(tmp_path / "best.pt")(mel, coch).logits_fused, net(mel, coch).logits_fused)


def _unified_net():
    from merkit.models.unified import UnifiedConfig, UnifiedMER

    torch.manual_seed(0)
    net = UnifiedMER(UnifiedConfig(input_dim=8, hidden=16, inputs=("musicnn",)))
    net.set_normalisation(torch.zeros(8), torch.ones(8))
    return net.eval()


def test_unified_old_layout_still_loads(tmp_path):
    """The shipped model's layout before format 2: kind, config, calibration and predictor at the top."""
    from merkit.predict import load_model
    from merkit.predictors.base import PredictorConfig

    net = _unified_net()
    pred = {**PredictorConfig().to_dict(), "info": {"name": "old"}, "reference": None}
    old = {"format": 1, "kind": "unified", "config": net.cfg.to_dict(), "state_dict": net.state_dict(),
           "calibration": {"valence": [2.0, 0.1], "arousal": [1.5, -0.2]}, "predictor": pred,
           "train": {"seed": 4}, "test": {"x": 1}}
    torch.save(old, tmp_path / "model.pt")
    model = load_model(tmp_path / "model.pt")
    assert model.calibration == {"valence": (2.0, 0.1), "arousal": (1.5, -0.2)} and model.info == {"name": "old"}
    assert load_checkpoint(tmp_path / "model.pt")["train_config"] == {"seed": 4}
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(2))
    for h, v in net.predict(x).items():
        torch.testing.assert_close(model.net.predict(x)[h], v)


def test_dsaml_old_layout_still_loads(tmp_path):
    from merkit.models.dsaml import DSAML, DSAMLConfig
    from merkit.predict import load_model

    torch.manual_seed(0)
    net = DSAML(DSAMLConfig(frame_dim=6, global_dim=5, d_model=8, heads=2, lstm_hidden=4)).eval()
    old = {"format": 1, "kind": "dsaml", "model": net.cfg.to_dict(), "state_dict": net.state_dict(), "train": {},
           "dynamic_features": {"grid": {"hop": 0.25}, "encoder": {"encoder": "musicnn"}},
           "val": {}, "test": {"v_r": 0.5}, "best_epoch": 7}
    torch.save(old, tmp_path / "model.pt")
    model = load_model(tmp_path / "model.pt")
    assert model.hop == 0.25 and model.info["best_epoch"] == 7 and model.info["test"] == {"v_r": 0.5}
    f, g = torch.randn(2, 9, 6), torch.randn(2, 5)
    with torch.no_grad():
        torch.testing.assert_close(model.net(f, g), net(f, g))


def test_foreign_dicts_are_refused(tmp_path):
    for blob in ({"weights": {}}, {"state_dict": {}}, [1, 2], {"format": 2, "kind": "damer"}):
        with pytest.raises(ValueError, match="not a merkit model file"):
            upgrade(blob, "x.pt")


def test_converter_rewrites_the_shipped_model_with_the_same_predictions(tmp_path, capsys):
    """``python -m merkit.checkpoint OLD NEW`` on the shipped file: format 2, same outputs."""
    from merkit.config import DEFAULT_MODEL_FILE
    from merkit.predict import load_model

    assert convert([str(DEFAULT_MODEL_FILE), str(tmp_path / "new.pt")]) == 0
    raw = torch.load(tmp_path / "new.pt", weights_only=True)
    assert raw["format"] == 2 and raw["kind"] == "unified" and raw["converted_from"]["path"] == str(DEFAULT_MODEL_FILE)
    a, b = load_model(), load_model(tmp_path / "new.pt")
    x = np.random.default_rng(0).standard_normal((5, a.net.cfg.input_dim)).astype(np.float32)
    for k, v in a.outputs(x).items():
        np.testing.assert_array_equal(b.outputs(x)[k], v)
    assert a.calibration == b.calibration and a.reference == b.reference
    assert convert([str(tmp_path / "new.pt"), str(tmp_path / "new.pt")]) == 1  # never over its own input
    assert "NEW" in capsys.readouterr().err
