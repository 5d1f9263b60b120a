"""Models by name, and loading a trained model from its checkpoint alone.

>>> model = load_model("runs/memo_a/seed_0/best.pt")     # eval mode, takes raw features
>>> probs = model.predict_proba(mel, coch)["ensemble"]    # (B, C)
"""
from __future__ import annotations

import os

from torch import nn

from ..config import ModelConfig, from_dict
from .damer import DAMER, DamerOutput, head_probabilities

MODELS: dict[str, type[nn.Module]] = {"damer": DAMER}


def build_model(name: str, cfg: ModelConfig) -> nn.Module:
    """A freshly initialised model ``name`` of architecture ``cfg``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](cfg)


def load_model(path: str | os.PathLike, *, map_location="cpu") -> nn.Module:
    """Rebuild a trained model (with its feature normalisation) from a checkpoint, in eval mode."""
    from ..training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, map_location=map_location)
    cfg = from_dict(ModelConfig, ckpt["config"]["model"])
    model = build_model(cfg.name, cfg)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the stored {cfg.name} config: {e}") from None
    return model.eval()


__all__ = ["MODELS", "DAMER", "DamerOutput", "build_model", "head_probabilities", "load_model"]
