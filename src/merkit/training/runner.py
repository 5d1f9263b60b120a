"""The seed runner: one run per seed into ``RUN/seed_<k>``, then mean ± std of the test metrics
(``RUN/results.json``, the printed table). Torch families train through
:func:`merkit.training.loop.fit`, scikit-learn ones through
:func:`merkit.training.classical_fit.fit_classical`."""
from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from ..checkpoint import versions
from ..config import ModelConfig, TrainConfig
from ..data.memo2496 import FeatureSet
from ..evaluation.protocol import format_table, summarise_seeds
from ..models import get_spec, resolve_head
from . import distributed as dist
from .classical_fit import fit_classical
from .loop import fit
from .run_files import RESULTS, RUN_JSON, write_json


def train(fs: FeatureSet, model_cfg: ModelConfig, cfg: TrainConfig, run_dir: str | os.PathLike, *,
          seeds: list[int] | None = None, unlabelled: FeatureSet | None = None,
          resume: bool = False, progress: bool = True, data_ref: str | None = None,
          on_epoch_end: Callable[[int, dict], None] | None = None) -> dict:
    """Train one run per seed into ``run_dir/seed_<k>`` and summarise the test metrics.

    Writes ``run_dir/run.json`` (the settings, for ``merkit train --resume``) and
    ``run_dir/results.json`` (per-seed test metrics, mean ± std per head, the printed table).
    Returns the content of the latter.
    """
    run_dir = Path(run_dir)
    seeds = list(seeds) if seeds is not None else [cfg.seed]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    main = dist.is_main()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"model": asdict(model_cfg), "train": asdict(cfg), "seeds": seeds,
            "data": data_ref or (str(fs.root) if fs.root else ""),
            "unlabelled": (str(unlabelled.root) if unlabelled is not None and unlabelled.root else None),
            "versions": versions()}
    if main and (not resume or not (run_dir / RUN_JSON).is_file()):
        write_json(run_dir / RUN_JSON, meta)
    classical = get_spec(model_cfg.name).kind == "classical"
    if classical and dist.world() > 1:
        raise ValueError(f"model {model_cfg.name} is a scikit-learn model: train it in one process, "
                         "without torchrun")
    if classical and unlabelled is not None:
        raise ValueError(f"--unlabelled: model {model_cfg.name} does not use unlabelled data")
    per_seed = []
    for seed in seeds:
        if classical:
            res = fit_classical(fs, model_cfg, replace(cfg, seed=seed), run_dir / f"seed_{seed}", resume=resume)
        else:
            res = fit(fs, model_cfg, replace(cfg, seed=seed), run_dir / f"seed_{seed}",
                      unlabelled=unlabelled, resume=resume, progress=progress, on_epoch_end=on_epoch_end)
        per_seed.append(res)
    summary = summarise_seeds([r["test"] for r in per_seed])
    title = (f"{meta['data'] or 'data'}  task={cfg.label}  model={model_cfg.name}  split={cfg.split}  "
             f"test metrics over {len(seeds)} seed(s), mean ± std")
    table = format_table(summary, title=title)
    out = {"seeds": seeds, "task": cfg.label, "model": model_cfg.name,
           "inference_head": per_seed[0]["inference_head"] if per_seed else resolve_head(model_cfg),
           "per_seed": [{"seed": r["seed"], "best_epoch": r["best_epoch"], "val": r["val"], "test": r["test"]}
                        for r in per_seed],
           "summary": summary, "table": table}
    if main:
        write_json(run_dir / RESULTS, out)
    return out


__all__ = ["train"]
