"""Several models on one dataset, the same splits, seeds and metrics: the Table-II-style comparison.

:func:`run_comparison` trains every (model, task) pair with :func:`merkit.training.runner.train`
into ``RUN/<model>_<task>/`` (each model with its own registered defaults, then the shared
overrides) and writes ``RUN/results.json`` and ``RUN/table.md`` after each pair, so a long
comparison shows progress on disk and resumes where it stopped.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

from ..config import ModelConfig, TrainConfig
from ..data.memo2496 import FeatureSet
from ..evaluation.protocol import format_cell
from ..models import get_spec

log = logging.getLogger(__name__)

COMPARE_JSON, RESULTS_JSON, TABLE_MD = "compare.json", "results.json", "table.md"
CLASSIFICATION_METRICS = ("acc", "f1", "auc")
REGRESSION_METRICS = ("r2", "pearson", "ccc", "rmse")
TASK_NAMES = {"a": "arousal", "v": "valence", "quadrant": "4Q"}


def format_comparison(rows: list[dict], *, markdown: bool = False, title: str = "",
                      regression: bool = False) -> str:
    """One row per model; per task, mean ± std of each metric of the model's inference head."""
    metrics = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    cell = {(r["model"], r["task"]): r["summary"] for r in rows}
    cols = [(t, m) for t in tasks for m in metrics]
    heads = [f"{TASK_NAMES.get(t, t)} {m.upper()}" for t, m in cols]
    body = [[model] + [format_cell(cell.get((model, t), {}).get(m, {})) for t, m in cols] for model in models]
    if markdown:
        lines = [title, ""] if title else []
        lines.append("| model | " + " | ".join(heads) + " |")
        lines.append("|---|" + "|".join(["--:"] * len(cols)) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    lines = [title] if title else []
    lines.append(f"{'model':<12}" + "".join(f"{h:>19}" for h in heads))
    lines += [f"{row[0]:<12}" + "".join(f"{c:>19}" for c in row[1:]) for row in body]
    return "\n".join(lines)


def comparison_configs(model: str, task: str, model_overrides: dict, train_overrides: dict
                       ) -> tuple[ModelConfig, TrainConfig]:
    """A model's registered defaults, then the task, then the shared overrides."""

    spec = get_spec(model)
    train_cfg = TrainConfig(**{**spec.train_defaults, **train_overrides, "label": task})
    return ModelConfig(**{**spec.model_defaults, **model_overrides, "name": model}), train_cfg


def run_comparison(fs: FeatureSet, run_dir: str | os.PathLike, *, models: list[str], tasks: list[str],
                   seeds: list[int], model_overrides: dict | None = None, train_overrides: dict | None = None,
                   resume: bool = False, progress: bool = True, data_ref: str | None = None) -> dict:
    """Train every model on every task over ``seeds``; returns (and writes) the results.

    ``model_overrides`` / ``train_overrides``: ModelConfig / TrainConfig fields applied to every
    model on top of its registered defaults (e.g. ``{"split": "official", "epochs": 40}``).
    With ``resume=True`` finished runs are read back and stopped ones continued; the stored
    settings must match.
    """
    from ..checkpoint import versions
    from .run_files import write_json
    from .runner import train

    run_dir = Path(run_dir)
    model_overrides, train_overrides = dict(model_overrides or {}), dict(train_overrides or {})
    for m in models:  # fail on a bad name or value before hours of training
        for t in tasks:
            comparison_configs(m, t, model_overrides, train_overrides)
    meta = {"data": data_ref or (str(fs.root) if fs.root else ""), "models": models, "tasks": tasks,
            "seeds": seeds, "model_overrides": model_overrides, "train_overrides": train_overrides,
            "versions": versions()}
    meta_path = run_dir / COMPARE_JSON
    if meta_path.is_file():
        if not resume:
            raise ValueError(f"{run_dir}: already holds a comparison; resume it or choose another folder")
        old = json.loads(meta_path.read_text())
        if (old["model_overrides"], old["train_overrides"]) != (model_overrides, train_overrides):
            raise ValueError(f"{meta_path}: the comparison was started with other settings")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(meta_path, meta)
    regression = bool(train_overrides.get("regression", False))
    rows = []
    for model in models:
        for task in tasks:
            mcfg, tcfg = comparison_configs(model, task, model_overrides, train_overrides)
            log.info("compare: %s on %s (%s)", model, TASK_NAMES.get(task, task), run_dir / f"{model}_{task}")
            out = train(fs, mcfg, tcfg, run_dir / f"{model}_{task}", seeds=seeds, resume=True,
                        progress=progress, data_ref=meta["data"])
            head = out["inference_head"]
            rows.append({"model": model, "task": task, "head": head, "summary": out["summary"][head],
                         "config": {"model": asdict(mcfg), "train": asdict(tcfg)},
                         "per_seed": [{"seed": r["seed"], "best_epoch": r["best_epoch"], "test": r["test"][head]}
                                      for r in out["per_seed"]]})
            _write_results(run_dir, meta, rows, regression)
    return _write_results(run_dir, meta, rows, regression)


def _write_results(run_dir: Path, meta: dict, rows: list[dict], regression: bool) -> dict:
    from .run_files import write_json, write_text

    split = meta["train_overrides"].get("split", TrainConfig.split)
    title = (f"{meta['data'] or 'data'}  split={split}  test metrics of each model's inference head "
             f"over {len(meta['seeds'])} seed(s), mean ± std")
    res = {**{k: meta[k] for k in ("data", "models", "tasks", "seeds", "model_overrides", "train_overrides")},
           "rows": rows, "table": format_comparison(rows, title=title, regression=regression),
           "markdown": format_comparison(rows, markdown=True, title=f"**Comparison** ({title})",
                                         regression=regression)}
    write_json(run_dir / RESULTS_JSON, res)
    write_text(run_dir / TABLE_MD, res["markdown"] + "\n")
    return res
