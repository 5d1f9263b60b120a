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
