"""One checkpoint format for every torch family, written atomically, and a reader of the older
layouts.

A model file is a dict (format 2)::
    {"format": 2,
     "kind":         the family's name in merkit.models.MODELS ("damer", "musefuse", "resnet",
                     "shortchunk", "unified", "dsaml"),
     "model_config": the network's config as a dict (enough to rebuild it with no training code),
     "train_config": the training config it was trained with (a dict; {} when unknown),
     "state_dict":   the weights,
     "data_info":    what it was trained on (feature folders, split track ids, feature settings),
     "predictor":    what `merkit predict` needs beyond the network (front end, calibration,
                     reference outputs, the 2 Hz grid); {} when the data's front end is meant,
     "metrics":      validation / test metrics and the selected epoch (may be {}),
     "versions":     merkit, torch, numpy, python}

plus ``train_state`` in a DAMER-loop run's ``last.pt`` (what ``merkit train --resume``
continues from). Only plain containers, numbers, strings and tensors are stored, so files load
with ``torch.load(weights_only=True)``. :func:`load_checkpoint` returns this layout for every
file merkit ever wrote: the DAMER loop's format 1 (``config: {model, train}``), the unified
model's and the DSAML model's own dicts (``kind`` with ``config`` / ``model``); :func:`upgrade`
does the mapping and ``python -m merkit.checkpoint OLD NEW`` rewrites a file in the new layout.
(Classical models are scikit-learn objects: their file is ``model.skops``, see
:mod:`merkit.models.classical`.)
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from . import __version__
from .outputs import OutputError, atomic_path, check_file

CHECKPOINT_FORMAT = 2  # bump when the layout of the dict changes (and teach upgrade() the old one)
FIELDS = ("kind", "model_config", "train_config", "state_dict", "data_info", "predictor", "metrics")


def versions() -> dict[str, str]:
    return {"merkit": str(__version__), "torch": str(torch.__version__), "numpy": str(np.__version__),
            "python": platform.python_version()}


def make_checkpoint(kind: str, model_config: dict, state_dict: dict, *, train_config: dict | None = None,
                    data_info: dict | None = None, predictor: dict | None = None, metrics: dict | None = None,
                    **extra: Any) -> dict:
    """A format-2 checkpoint dict (``extra``: e.g. ``train_state``)."""
    return {"format": CHECKPOINT_FORMAT, "kind": kind, "model_config": dict(model_config),
            "train_config": dict(train_config or {}), "state_dict": state_dict, "data_info": dict(data_info or {}),
            "predictor": dict(predictor or {}), "metrics": dict(metrics or {}), **extra}


def upgrade(blob: Any, source: str | os.PathLike = "checkpoint") -> dict:
    """``blob`` in the format-2 layout (a new dict; tensors shared). Raises ValueError for a dict
    that is none of merkit's layouts."""
    if not isinstance(blob, dict):
        raise ValueError(f"{source}: not a merkit model file (a {type(blob).__name__}, not a dict)")
    if blob.get("format") == CHECKPOINT_FORMAT:
        missing = [k for k in FIELDS if k not in blob]
        if missing:
            raise ValueError(f"{source}: not a merkit model file (missing {', '.join(missing)})")
        return dict(blob)
    if "state_dict" not in blob:
        raise ValueError(f"{source}: not a merkit model file (missing state_dict)")
    versions_ = blob.get("versions") or {}
    if blob.get("kind") == "unified":
        # the shipped model and `merkit train --arch unified` runs before format 2
        pred = dict(blob.get("predictor") or {})
        if blob.get("calibration") is not None:
            pred["calibration"] = blob["calibration"]
        data = {k: blob[k] for k in ("data", "va_scales", "feature_info") if k in blob}
        metrics = {k: blob[k] for k in ("val", "test", "best_epoch") if k in blob}
        return make_checkpoint("unified", blob["config"], blob["state_dict"], train_config=blob.get("train"),
                               data_info=data, predictor=pred, metrics=metrics, versions=versions_)
    if blob.get("kind") == "dsaml":
        dyn = blob.get("dynamic_features") or {}
        pred = {"hop": float((dyn.get("grid") or {}).get("hop", 0.5)),
                "encoder": (dyn.get("encoder") or {}).get("encoder", "musicnn")}
        metrics = {k: blob[k] for k in ("val", "test", "best_epoch") if k in blob}
        return make_checkpoint("dsaml", blob["model"], blob["state_dict"], train_config=blob.get("train"),
                               data_info={"dynamic_features": dyn}, predictor=pred, metrics=metrics,
                               versions=versions_)
    config = blob.get("config")
    if isinstance(config, dict) and isinstance(config.get("model"), dict):
        # format 1: the DAMER training loop's best.pt / last.pt, and the DAMER-family model files
        extra = {"train_state": blob["train_state"]} if "train_state" in blob else {}
        return make_checkpoint(config["model"].get("name", "damer"), config["model"], blob["state_dict"],
                               train_config=config.get("train"), data_info=blob.get("data_info"),
                               predictor=blob.get("predictor"), metrics=blob.get("metrics"),
                               versions=versions_, **extra)
    raise ValueError(f"{source}: not a merkit model file (neither format 2 nor an older merkit layout)")


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (a :func:`make_checkpoint` dict; ``versions`` added) to a temporary file,
    then rename it over ``path``, so a killed process never leaves a half-written checkpoint."""

    path = Path(path)
    payload = upgrade({**payload, "format": payload.get("format", CHECKPOINT_FORMAT)}, path)
    payload["versions"] = versions()
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_blob(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> Any:
    """The raw object of a torch file (plain data and tensors only), with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        first = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"{path}: not a merkit model file ({type(e).__name__}: {first})") from None


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict:
    """Any merkit model file in the format-2 layout (older layouts upgraded in memory)."""
    return upgrade(read_blob(path, map_location=map_location), path)


def checkpoint_kind(path: str | os.PathLike) -> str | None:
    """The family of a model file, or None for a file that is not a readable merkit model file."""
    try:
        return load_checkpoint(path)["kind"]
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    """``python -m merkit.checkpoint OLD NEW``: rewrite a model file in the current layout."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m merkit.checkpoint", description=main.__doc__)
    p.add_argument("old")
    p.add_argument("new")
    args = p.parse_args(argv)

    try:
        check_file(args.new, flag="NEW", kind="model", inputs=[args.old])
        blob = load_checkpoint(args.old)
        keep = blob.pop("versions", {})
        save_checkpoint(args.new, {**blob, "converted_from": {"path": str(args.old), "versions": keep}})
    except (OSError, ValueError, OutputError) as e:
        print(f"python -m merkit.checkpoint: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.new}: {blob['kind']} model, checkpoint format {CHECKPOINT_FORMAT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
