"""Self-describing checkpoints, written atomically.

A checkpoint is a dict ``{format, config, state_dict, data_info, metrics, versions}`` (plus
``train_state`` in a run's ``last.pt``, which ``merkit train --resume`` continues from).
``config`` holds ``{"model": asdict(ModelConfig), "train": asdict(TrainConfig)}``, so
:func:`merkit.models.load_model` rebuilds the model from the file alone. Only plain containers,
numbers, strings and tensors are stored, so files load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = 1  # bump when the layout of the dict changes


def versions() -> dict[str, str]:
    from . import __version__

    return {"merkit": str(__version__), "torch": str(torch.__version__), "numpy": str(np.__version__),
            "python": platform.python_version()}


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (with ``format`` and ``versions`` added) to a temporary file, then rename
    it over ``path``, so a killed process never leaves a half-written checkpoint."""
    from .outputs import atomic_path

    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "versions": versions(), **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path}: not a readable merkit checkpoint ({type(e).__name__}: {e})") from None
    missing = [k for k in ("config", "state_dict") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a merkit checkpoint (missing {', '.join(missing)})")
    return ckpt
