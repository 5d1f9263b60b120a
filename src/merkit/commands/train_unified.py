"""``merkit train --arch unified --data emopia,mirex_mood,emotify``: the multi-corpus model.

Each ``--data`` entry is a feature folder with the musicnn view (``merkit extract ... --views
mel,coch,musicnn``) or a dataset name (extracted into the cache with that view on first use).
Per seed: each corpus's splits (:func:`merkit.data.multi_corpus.corpus_splits`), training on
the training parts, the epoch chosen on the validation parts, the test parts predicted once.
``RUN_DIR/seed_<k>/model.pt`` is the checkpoint (``merkit predict --model`` reads it),
``RUN_DIR/results.json`` the metrics.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..training.run_files import write_text
from ._runs import unified_table

DEFAULT_INPUTS = ("musicnn", "tonal")


def parse_inputs(spec: str | None) -> tuple[str, ...]:
    """``--inputs``: "tonal" (from the cochleagram) or encoder views; at least one encoder."""
    from ..config import ConfigError
    from ..encoders import ENCODERS

    names = tuple(dict.fromkeys(s.strip() for s in (spec or ",".join(DEFAULT_INPUTS)).split(",") if s.strip()))
    unknown = [n for n in names if n != "tonal" and n not in ENCODERS]
    if unknown:
        raise ConfigError(f"--inputs: unknown input {unknown[0]!r}; inputs: tonal, {', '.join(sorted(ENCODERS))}")
    if not any(n in ENCODERS for n in names):
        raise ConfigError("--inputs needs at least one encoder view (e.g. musicnn)")
    return names


def run_unified(args) -> int:
    from ..data.multi_corpus import corpus_splits
    from ..evaluation.unified_eval import corpus_metrics
    from ..models.unified import UnifiedConfig
    from ..recipes import calibrated_model
    from ..checkpoint import save_checkpoint
    from ..training.unified_fit import UnifiedTrainConfig, fit_teachers, fit_unified, predict_corpus
    from ..feature_cache import load_corpus

    if not args.data:
        raise ValueError("--data is required: a comma-separated list of feature folders or dataset names")
    specs = [s.strip() for s in args.data.split(",") if s.strip()]
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"unified_{time.strftime('%Y%m%d-%H%M%S')}"
    from ..outputs import check_folder

    check_folder(run_dir, flag="--run-dir", inputs=specs, empty=True)  # before any data is loaded
    inputs = parse_inputs(getattr(args, "inputs", None))
    corpora = []
    for spec in specs:
        c = load_corpus(spec, inputs)
        if c.name in {x.name for x in corpora}:
            c.name = f"{c.name}_{len(corpora)}"
        corpora.append(c)
    from ._runs import family_overrides

    overrides = family_overrides(args)
    seeds = args.seeds or [0]
    mcfg = UnifiedConfig(input_dim=corpora[0].x.shape[1], inputs=inputs)
    per_seed = []
    for seed in seeds:
        cfg = UnifiedTrainConfig(**{**UnifiedTrainConfig().to_dict(), **overrides, "seed": seed})
        splits = {c.name: corpus_splits(c, seed) for c in corpora}
        teachers = fit_teachers(corpora, splits, mcfg, cfg) if cfg.kd_weight > 0 else None
        res = fit_unified(corpora, splits, mcfg, cfg, teachers=teachers)
        test = {c.name: corpus_metrics(c, splits[c.name].test, predict_corpus(res.model, c.x[splits[c.name].test]))
                for c in corpora}
        out = run_dir / f"seed_{seed}"
        out.mkdir(parents=True, exist_ok=True)
        # calibrated on the validation parts and self-checking, as the shipped model (merkit.recipes)
        model = calibrated_model(res.model, corpora, splits, feature_info=corpora[0].feature_info,
                                 info={"test": test, "seed": seed, "data": [str(s) for s in specs]})
        blob = {**model.to_blob(), "train": cfg.to_dict(), "va_scales": res.va_scales,
                "data": [str(s) for s in specs], "val": res.val_metrics, "test": test,
                "best_epoch": res.best_epoch, "feature_info": corpora[0].feature_info}
        save_checkpoint(out / "model.pt", blob)
        per_seed.append(test)
        print(f"seed {seed}: best epoch {res.best_epoch}, validation {res.val_score:.4f}")
    table = unified_table(per_seed)
    write_text(run_dir / "results.json", json.dumps({"kind": "unified", "data": specs, "seeds": seeds,
                                                     "test": per_seed, "table": table}, indent=2))
    print(table)
    print(f"results: {run_dir / 'results.json'}")
    return 0
