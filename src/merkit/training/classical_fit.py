"""Training the classical (scikit-learn) models on the same splits, seeds and metrics as the
networks: :func:`fit_classical` is :func:`merkit.training.loop.fit` for a
:class:`~merkit.models.classical.ClassicalModel`.

The hyper-parameter (C, or Ridge's alpha) is chosen on the validation part carved from the
training data, exactly as the networks choose their epoch; the test part is predicted once.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ..config import ModelConfig, TrainConfig
from ..data.memo2496 import FeatureSet
from ..data.splits import make_splits, track_groups
from ..evaluation.protocol import head_metrics
from .run_files import RESULTS, data_description, usable, write_json

log = logging.getLogger(__name__)

MODEL_FILE = "model.skops"


def fit_classical(fs: FeatureSet, model_cfg: ModelConfig, cfg: TrainConfig, run_dir: str | os.PathLike, *,
                  resume: bool = False) -> dict:
    """Fit one seed of classical model ``model_cfg.name`` (``svm`` or ``logreg``) into ``run_dir``
    (``model.skops``, ``results.json``) and return the same record as :func:`~merkit.training.loop.fit`."""
    from ..models.classical import ClassicalModel

    run_dir = Path(run_dir)
    if resume and (run_dir / RESULTS).is_file():
        return json.loads((run_dir / RESULTS).read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    fs = usable(fs, "labelled")
    splits = make_splits(fs, cfg.label, threshold=cfg.threshold, mode=cfg.split, test_size=cfg.test_size,
                         val_size=cfg.val_size, seed=cfg.seed, regression=cfg.regression)
    model_cfg = replace(model_cfg, n_mels=fs.mel.shape[1], n_coch=fs.coch.shape[1],
                        n_frames=fs.mel.shape[2], n_classes=cfg.n_classes, inference_head="out")
    model = ClassicalModel(model_cfg.name, n_classes=cfg.n_classes, seed=cfg.seed,
                           feature_info=fs.feature_info)
    t0 = time.perf_counter()
    part = {k: np.sort(getattr(splits, k)) for k in ("train", "val", "test")}
    # sorted positions read a memory map sequentially; the labels follow the same order
    order = {k: np.argsort(getattr(splits, k)) for k in ("train", "val", "test")}
    y = {k: getattr(splits, f"y_{k}")[order[k]] for k in ("train", "val", "test")}
    val = {}
    if len(part["val"]):
        sel = model.fit(fs.mel[part["train"]], fs.coch[part["train"]], y["train"],
                        fs.mel[part["val"]], fs.coch[part["val"]], y["val"])
        val = head_metrics(y["val"], model.predict_heads(fs.mel[part["val"]], fs.coch[part["val"]]))
    else:  # no validation part: the grid is scored by cross-validation on the training part
        sel = model.fit(fs.mel[part["train"]], fs.coch[part["train"]], y["train"],
                        groups=track_groups(fs, part["train"]))
    test = head_metrics(y["test"], model.predict_heads(fs.mel[part["test"]], fs.coch[part["test"]]))
    model.save(run_dir / MODEL_FILE)
    result = {"seed": cfg.seed, "best_epoch": None, "epochs_run": 0, "inference_head": "out",
              "selection": sel,
              "val": val, "test": test, "sizes": splits.sizes(), "history": [],
              "time_s": time.perf_counter() - t0,
              "config": {"model": asdict(model_cfg), "train": asdict(cfg)},
              "data_info": data_description(fs, splits, cfg, None)}
    write_json(run_dir / RESULTS, result)
    log.info("%s seed %d: %s = %s chosen by %s; test %s", model_cfg.name, cfg.seed, sel.get("param"),
             sel.get("chosen"), sel.get("selection"), {k: round(v, 4) for k, v in test["out"].items()})
    return result
