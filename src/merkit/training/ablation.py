"""Module ablation of DAMER (paper Table V): DSAF, PCL and SAML switched on and off.

**Which seven rows.** Three on/off switches give eight combinations; Table V has seven. We read
it as the full model, each single removal and each double removal, i.e. every combination with
at least one module on; the eighth, all three off (the plain two-view classifier), is not a row
of the table but can be asked for by name (``"none"``).

Without DSAF each view attends to itself only, and the two pooled views meet in the FusionMLP
through concatenation (``ModelConfig.use_dsaf=False``); without PCL the pseudo-label loss and the
view-consistency term are dropped; without SAML there is no memory queue and no contrastive
loss (``TrainConfig.use_pcl`` / ``use_saml``). Everything else (data, seeds, hence splits and
batch order, and every other setting) is the same for all rows, so rows differ only by modules.

Layout::
    RUN/ablation.json            the settings (for ``merkit ablate --resume RUN``)
    RUN/<combo>/                 a ``merkit train`` run folder per combination (seed_<k>/ inside)
    RUN/results.json             per combination: per-seed test metrics, mean ± std, the table
    RUN/ablation.md              the table in Markdown
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, replace
from pathlib import Path

from ..config import ModelConfig, TrainConfig
from ..data.memo2496 import FeatureSet
from ..evaluation.protocol import METRICS, format_cell
from ..models import resolve_head

log = logging.getLogger(__name__)

MODULES = ("dsaf", "pcl", "saml")
ABLATION_JSON, RESULTS_JSON, TABLE_MD = "ablation.json", "results.json", "ablation.md"
NONE = "none"  # the combination with every module off


def combo_name(dsaf: bool, pcl: bool, saml: bool) -> str:
    """Canonical name: the modules that are on, in :data:`MODULES` order, joined by ``+``."""
    on = [m for m, flag in zip(MODULES, (dsaf, pcl, saml)) if flag]
    return "+".join(on) if on else NONE


def _all_combos() -> list[str]:
    # Most modules first, then in MODULES order: the full model heads the table as in Table V.
    flags = [(d, p, s) for d in (True, False) for p in (True, False) for s in (True, False)]
    flags.sort(key=lambda f: -sum(f))
    return [combo_name(*f) for f in flags]


ALL_COMBOS = _all_combos()
#: The seven rows of Table V (our reading, see the module docstring): all but "none".
TABLE_V_COMBOS = [c for c in ALL_COMBOS if c != NONE]


def parse_combo(spec: str) -> str:
    """``"saml+DSAF"``, ``"full"`` / ``"all"``, ``"none"`` -> the canonical name."""
    s = spec.strip().lower()
    if s in ("full", "all"):
        return combo_name(True, True, True)
    if s in (NONE, "base", "baseline"):
        return NONE
    parts = [p.strip() for p in s.replace(",", "+").split("+") if p.strip()]
    unknown = [p for p in parts if p not in MODULES]
    if unknown or not parts or len(set(parts)) != len(parts):
        raise ValueError(f"combination {spec!r}: write the modules that are on joined by '+' "
                         f"(from {', '.join(MODULES)}), or 'full' / 'none'")
    return combo_name(*(m in parts for m in MODULES))


def combo_flags(name: str) -> dict[str, bool]:
    """``{"dsaf": bool, "pcl": bool, "saml": bool}`` of a canonical combination name."""
    on = set() if name == NONE else set(name.split("+"))
    return {m: m in on for m in MODULES}


def combo_configs(name: str, model_cfg: ModelConfig, train_cfg: TrainConfig) -> tuple[ModelConfig, TrainConfig]:
    f = combo_flags(name)
    return replace(model_cfg, use_dsaf=f["dsaf"]), replace(train_cfg, use_pcl=f["pcl"], use_saml=f["saml"])


def format_ablation(rows: list[dict], *, markdown: bool = False, title: str = "") -> str:
    """The ablation table: one row per combination, ✓/✗ per module, mean ± std per metric."""
    mark = {True: "✓", False: "✗"}
    if markdown:
        lines = [title, ""] if title else []
        lines.append("| " + " | ".join([m.upper() for m in MODULES] + [m.upper() for m in METRICS]) + " |")
        lines.append("|" + "|".join([":-:"] * len(MODULES) + ["--:"] * len(METRICS)) + "|")
        for r in rows:
            cells = [mark[r["modules"][m]] for m in MODULES] + [format_cell(r["summary"][m]) for m in METRICS]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)
    lines = [title] if title else []
    lines.append("".join(f"{m.upper():>6}" for m in MODULES) + "".join(f"{m.upper():>17}" for m in METRICS))
    for r in rows:
        lines.append("".join(f"{mark[r['modules'][m]]:>6}" for m in MODULES)
                     + "".join(f"{format_cell(r['summary'][m]):>17}" for m in METRICS))
    return "\n".join(lines)


def run_ablation(fs: FeatureSet, model_cfg: ModelConfig, train_cfg: TrainConfig, run_dir: str | os.PathLike, *,
                 combos: list[str] | None = None, seeds: list[int] | None = None,
                 unlabelled: FeatureSet | None = None, resume: bool = False, progress: bool = True,
                 data_ref: str | None = None) -> dict:
    """Train every combination over the same seeds and tabulate the inference head's test metrics.

    ``combos``: names accepted by :func:`parse_combo` (default :data:`TABLE_V_COMBOS`). The
    module switches of ``model_cfg`` / ``train_cfg`` are overridden per combination. With
    ``resume=True`` finished combination/seed runs are read back, stopped ones continued from
    their ``last.pt`` and missing ones started; without it ``run_dir`` must not hold an ablation.

    Returns (and writes to ``run_dir/results.json``) ``{"combos", "seeds", "task",
    "inference_head", "rows": [{"combo", "modules", "summary": {metric: {mean, std, n}},
    "per_seed": [...]}], "table", "markdown"}``.
    """
    from ..checkpoint import versions
    from .run_files import write_json
    from .runner import train

    run_dir = Path(run_dir)
    combos = [parse_combo(c) for c in (combos or TABLE_V_COMBOS)]
    if len(set(combos)) != len(combos):
        raise ValueError(f"combinations must be distinct, got {combos}")
    seeds = list(seeds) if seeds is not None else [train_cfg.seed]
    meta_path = run_dir / ABLATION_JSON
    meta = {"model": asdict(model_cfg), "train": asdict(train_cfg), "combos": combos, "seeds": seeds,
            "data": data_ref or (str(fs.root) if fs.root else ""),
            "unlabelled": (str(unlabelled.root) if unlabelled is not None and unlabelled.root else None),
            "versions": versions()}
    if meta_path.is_file():
        if not resume:
            raise ValueError(f"{run_dir}: already holds an ablation; resume it or choose another folder")
        old = load_ablation_meta(run_dir)
        if (old.get("model"), old.get("train")) != (meta["model"], meta["train"]):
            raise ValueError(f"{meta_path}: the ablation was started with other settings; resume "
                             "needs the original ones")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
    # Rewritten on resume: combinations or seeds may be added to a finished ablation.
    write_json(meta_path, meta)

    head = resolve_head(model_cfg)
    rows = []
    for i, name in enumerate(combos, 1):
        log.info("ablation %d/%d: %s", i, len(combos), name)
        mcfg, tcfg = combo_configs(name, model_cfg, train_cfg)
        # resume=True on a missing folder starts it, so a killed ablation continues where it was.
        out = train(fs, mcfg, tcfg, run_dir / name, seeds=seeds, unlabelled=unlabelled, resume=resume,
                    progress=progress, data_ref=meta["data"])
        rows.append({"combo": name, "modules": combo_flags(name), "summary": out["summary"][head],
                     "per_seed": [{"seed": r["seed"], "best_epoch": r["best_epoch"], "test": r["test"][head]}
                                  for r in out["per_seed"]]})
        # The partial table after each combination: a long ablation shows progress on disk.
        _write_results(run_dir, meta, head, rows)
    return _write_results(run_dir, meta, head, rows)


def _write_results(run_dir: Path, meta: dict, head: str, rows: list[dict]) -> dict:
    from .run_files import write_json, write_text

    title = (f"{meta['data'] or 'data'}  task={meta['train']['label']}  model={meta['model']['name']}  "
             f"head={head}  test metrics over {len(meta['seeds'])} seed(s), mean ± std")
    res = {"combos": [r["combo"] for r in rows], "seeds": meta["seeds"], "task": meta["train"]["label"],
           "inference_head": head, "rows": rows, "table": format_ablation(rows, title=title),
           "markdown": format_ablation(rows, markdown=True, title=f"**Ablation** ({title})")}
    write_json(run_dir / RESULTS_JSON, res)
    write_text(run_dir / TABLE_MD, res["markdown"] + "\n")
    return res


def load_ablation_meta(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / ABLATION_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found, so {run_dir} is not a merkit ablation folder")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


__all__ = ["MODULES", "ALL_COMBOS", "TABLE_V_COMBOS", "combo_name", "parse_combo", "combo_flags",
           "combo_configs", "format_ablation", "run_ablation", "load_ablation_meta"]
