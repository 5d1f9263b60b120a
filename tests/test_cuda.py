"""Training and prediction on a GPU with mixed precision (skipped on machines without CUDA, as
in CI; run them where a GPU is available: ``pytest tests/test_cuda.py``)."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from merkit.config import ModelConfig
from merkit.models import MODELS
from merkit.training import fit

from test_training import TINY_TRAIN, separable

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TORCH_MODELS = [name for name, spec in MODELS.items() if spec.kind == "torch"]


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_every_torch_model_trains_on_cuda_with_amp(tmp_path, name):
    spec = MODELS[name]
    model_cfg = ModelConfig(**{**spec.model_defaults, "name": name, "dim": 16, "n_heads": 2, "n_layers": 1,
                               "fusion_dim": 32})
    cfg = replace(TINY_TRAIN, epochs=12, device="cuda", amp=True)
    res = fit(separable(160, shift=2.5), model_cfg, cfg, tmp_path, progress=False)
    head = res["inference_head"]
    assert res["test"][head]["acc"] >= 0.75  # separable data: chance is 0.5
    assert all(np.isfinite(r["loss"]) for r in res["history"])


def test_shipped_model_predicts_on_cuda_like_on_cpu():
    from conftest import melody
    from merkit.predict import load_model

    y = melody(40.0, 44_100, seed=3)
    cpu = load_model(None)
    gpu = load_model(None).to_device("cuda")
    a, b = cpu.predict(y, 44_100), gpu.predict(y, 44_100)
    assert abs(a.arousal - b.arousal) < 1e-4 and abs(a.valence - b.valence) < 1e-4
    ta, tb = cpu.predict_timeline(y, 44_100), gpu.predict_timeline(y, 44_100)
    assert max(abs(p.arousal - q.arousal) for p, q in zip(ta, tb)) < 1e-4


def test_trained_damer_predicts_on_cuda_like_on_cpu(tmp_path):
    from merkit.predictors.damer import EmotionModel

    model_cfg = ModelConfig(dim=16, n_heads=2, n_layers=1, fusion_dim=32)
    shape = dict(n_mels=128, n_coch=84, n_frames=87)  # the front end's
    fit(separable(80, **shape), model_cfg, replace(TINY_TRAIN, epochs=2, device="cpu"), tmp_path, progress=False)
    fs = separable(10, seed=4, **shape)
    cpu = EmotionModel.from_files([tmp_path / "best.pt"])
    gpu = EmotionModel.from_files([tmp_path / "best.pt"]).to_device("cuda")
    pa, pb = cpu.predict_features(fs.mel, fs.coch), gpu.predict_features(fs.mel, fs.coch)
    assert max(abs(x["arousal"] - y["arousal"]) for x, y in zip(pa, pb) if x["arousal"] is not None) < 1e-4
