"""``merkit train --arch unified --data emopia,mirex_mood,emotify``: the multi-corpus model.

Each ``--data`` entry is a feature folder with the musicnn view (``merkit extract ... --views
mel,coch,musicnn``) or a dataset name (extracted into the cache with that view on first use).
Per seed: each corpus's splits (:func:`merkit.data.multi_corpus.corpus_splits`), training on
the training parts, the epoch chosen on the validation parts, the test parts predicted once.
``RUN_DIR/seed_<k>/model.pt`` is the checkpoint (``merkit predict --model`` reads it),
``RUN_DIR/results.json`` the metrics.

``merkit train --recipe default``: the shipped model's recipe (:func:`merkit.recipes.train_default`)
into ``RUN_DIR/model.pt`` and ``RUN_DIR/results.json``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..training.run_files import write_text
from ._runs import unified_table
from ..config import ConfigError
from ..encoders import ENCODERS
from ..data.multi_corpus import corpus_splits
from ..evaluation.unified_eval import corpus_metrics
from ..feature_cache import load_corpus
from ..outputs import check_folder
from ._runs import family_overrides

def parse_inputs(spec: str | None) -> tuple[str, ...]:
    """``--inputs``: "tonal" (from the cochleagram) or encoder views; at least one encoder."""

    if not spec:
        from ..models.unified import DEFAULT_INPUTS

        return DEFAULT_INPUTS
    names = tuple(dict.fromkeys(s.strip() for s in spec.split(",") if s.strip()))
    unknown = [n for n in names if n != "tonal" and n not in ENCODERS]
    if unknown:
        raise ConfigError(f"--inputs: unknown input {unknown[0]!r}; inputs: tonal, {', '.join(sorted(ENCODERS))}")
    if not any(n in ENCODERS for n in names):
        raise ConfigError("--inputs needs at least one encoder view (e.g. musicnn)")
    return names


def run_unified(args) -> int:
    from ..models.unified import UnifiedConfig
    from ..recipes import calibrated_model
    from ..checkpoint import save_checkpoint
    from ..training.unified_fit import UnifiedTrainConfig, fit_teachers, fit_unified, predict_corpus

    if not args.data:
        raise ValueError("--data is required: a comma-separated list of feature folders or dataset names")
    specs = [s.strip() for s in args.data.split(",") if s.strip()]
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"unified_{time.strftime('%Y%m%d-%H%M%S')}"

    check_folder(run_dir, flag="--run-dir", inputs=specs, empty=True)  # before any data is loaded
    inputs = parse_inputs(getattr(args, "inputs", None))
    corpora = []
    for spec in specs:
        c = load_corpus(spec, inputs)
        if c.name in {x.name for x in corpora}:
            c.name = f"{c.name}_{len(corpora)}"
        corpora.append(c)

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
        blob = model.to_blob(train_config=cfg.to_dict(),
                             data_info={"data": [str(s) for s in specs], "va_scales": res.va_scales,
                                        "feature_info": corpora[0].feature_info},
                             metrics={"val": res.val_metrics, "test": test, "best_epoch": res.best_epoch})
        save_checkpoint(out / "model.pt", blob)
        per_seed.append(test)
        print(f"seed {seed}: best epoch {res.best_epoch}, validation {res.val_score:.4f}")
    table = unified_table(per_seed)
    write_text(run_dir / "results.json", json.dumps({"kind": "unified", "data": specs, "seeds": seeds,
                                                     "test": per_seed, "table": table}, indent=2))
    print(table)
    print(f"results: {run_dir / 'results.json'}")
    return 0


def run_recipe(args) -> int:
    """``merkit train --recipe default [--data EMOPIA,MIREX,EMOTIFY,Q4] [--seeds N] [--inputs ...]``."""
    from ..recipes import DEFAULT_CORPORA, train_default

    args.model = "unified"
    fixed = sorted(k for k in family_overrides(args) if k != "inputs")
    if fixed:
        raise ValueError(f"--recipe default fixes its training settings ({', '.join('--' + k.replace('_', '-') for k in fixed)} "
                         "given); set them with --arch unified instead")
    specs = [s.strip() for s in (args.data or ",".join(DEFAULT_CORPORA)).split(",") if s.strip()]
    if len(specs) != len(DEFAULT_CORPORA):
        raise ValueError(f"--data: the default recipe takes {len(DEFAULT_CORPORA)} feature folders or dataset names, "
                         f"in this order: {','.join(DEFAULT_CORPORA)} (got {len(specs)})")
    seeds = args.seeds or [0]
    if len(seeds) != 1:
        raise ValueError("--recipe default trains one model: give one seed")
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"default_{time.strftime('%Y%m%d-%H%M%S')}"
    check_folder(run_dir, flag="--run-dir", inputs=specs, empty=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = train_default(dict(zip(DEFAULT_CORPORA, specs)), run_dir / "model.pt", seed=seeds[0],
                           inputs=parse_inputs(getattr(args, "inputs", None)))
    table = unified_table([{n: {k: v for k, v in m.items() if k != "n"} for n, m in record["test"].items()}])
    write_text(run_dir / "results.json", json.dumps({"kind": "unified", "recipe": "default", "data": specs,
                                                     "seeds": seeds, "test": [record["test"]], "table": table,
                                                     "record": record}, indent=2))
    print(table)
    print(f"model: {run_dir / 'model.pt'} (merkit predict --model {run_dir / 'model.pt'}); results: "
          f"{run_dir / 'results.json'}")
    return 0
