"""merkit compare --data DIR --arch damer musefuse svm ... --tasks a v [--seeds 0 1 2 3 4]:
every model on the same splits, seeds and metrics, one table (the paper's Table II layout).

Each model trains with its registered defaults (``merkit compare --list``); any ModelConfig /
TrainConfig flag given here applies to all of them (e.g. ``--split official --epochs 40``).
``--resume RUN_DIR`` continues a stopped comparison; finished runs are read back.
"""
from __future__ import annotations

from . import COMMANDS

import dataclasses
import json
import logging
import time
from pathlib import Path

from ..config import ModelConfig, TrainConfig
from ._args import add_config_args, add_old_spelling, positive_int
from ..feature_cache import load_features
from ..models import MODELS

log = logging.getLogger(__name__)

_MODEL_FIXED = ("name", "n_mels", "n_coch", "n_frames", "n_classes")
_TRAIN_FIXED = ("seed", "label")


def register(sub) -> None:
    p = sub.add_parser("compare", help=COMMANDS['compare'],
                       description=__doc__.split("\n", 2)[2].strip())
    p.add_argument("--data", "--data-root", metavar="DIR|DATASET",
                   help="feature folder (Memo2496 layout), or emopia | emotify | synthetic (cached features)")
    loop = [n for n, s in MODELS.items() if s.in_loop]
    p.add_argument("--arch", dest="models", nargs="+", choices=list(MODELS), default=loop,
                   metavar="ARCH", help=f"architectures to compare (default: all that train on one folder: {' '.join(loop)})")
    add_old_spelling(p, "--models", "models", nargs="+", choices=list(MODELS))
    p.add_argument("--tasks", nargs="+", choices=("a", "v", "quadrant"), default=["a", "v"], metavar="TASK",
                   help="a (arousal), v (valence), quadrant (default: a v)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED", help="seeds (default: 0)")
    p.add_argument("--run-dir", metavar="DIR", help="output folder (default: runs/compare_<data>_<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped comparison with its settings")
    p.add_argument("--list", action="store_true", help="describe the models and their defaults, then exit")
    p.add_argument("--threads", type=positive_int, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add_config_args(p, ModelConfig, exclude=_MODEL_FIXED, group_title="model (ModelConfig), for every model")
    add_config_args(p, TrainConfig, exclude=_TRAIN_FIXED, group_title="training (TrainConfig), for every model")
    p.set_defaults(func=run)


# Why compare does not take a family trained outside the one-folder loop, by its kind.
OUTSIDE_LOOP = {
    "unified": "it trains across several corpora at once (merkit train --arch unified --data A,B,C), "
               "each with its own protocol",
    "dynamic": "it learns 2 Hz curves from a `merkit extract-dynamic` folder (merkit train --arch dsaml)",
}


def _set_fields(cls, args) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None and f.name not in _MODEL_FIXED + _TRAIN_FIXED}


def run(args) -> int:
    import torch

    from ..training.compare import RESULTS_JSON, TABLE_MD, run_comparison

    if args.list:
        for spec in MODELS.values():
            if spec.in_loop:
                defaults = (", ".join(f"{k}={v}" for k, v in {**spec.model_defaults, **spec.train_defaults}.items())
                            or ("hyper-parameter chosen on the validation part" if spec.kind == "classical"
                                else "TrainConfig's (the paper's)"))
            else:
                defaults = f"its own (merkit train --arch {spec.name} --help); not in compare"
            print(f"{spec.name:<11} {spec.kind:<9} {spec.summary}\n{'':<21} defaults: {defaults}")
        return 0
    other = [m for m in args.models if not MODELS[m].in_loop]
    if other:
        raise ValueError(f"--arch {other[0]}: merkit compare trains the single-corpus families on one feature "
                         f"folder's splits, and {other[0]} is not one: {OUTSIDE_LOOP[MODELS[other[0]].kind]}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        run_dir = Path(args.resume)
        meta_path = run_dir / "compare.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: not found, so {run_dir} is not a merkit comparison")
        meta = json.loads(meta_path.read_text())
        data, models, tasks, seeds = meta["data"], meta["models"], meta["tasks"], meta["seeds"]
        m_over, t_over = meta["model_overrides"], meta["train_overrides"]
    else:
        if not args.data:
            raise ValueError("--data is required (or --resume RUN_DIR)")
        data, models, tasks, seeds = args.data, args.models, args.tasks, args.seeds
        m_over, t_over = _set_fields(ModelConfig, args), _set_fields(TrainConfig, args)
        run_dir = Path(args.run_dir or f"runs/compare_{Path(data).name}_{time.strftime('%Y%m%d-%H%M%S')}")
        from ._runs import _check_run_dir

        _check_run_dir(run_dir, data)
    fs = load_features(data)
    out = run_comparison(fs, run_dir, models=models, tasks=tasks, seeds=seeds, model_overrides=m_over,
                         train_overrides=t_over, resume=bool(args.resume), progress=args.progress,
                         data_ref=str(data))
    print(out["table"])
    print(f"results: {run_dir / RESULTS_JSON}  table: {run_dir / TABLE_MD}")
    return 0
