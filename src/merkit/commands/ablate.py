"""merkit ablate --data DIR --label a|v|quadrant [--seeds 0 1 2 3 4]: the module ablation (Table V).

Trains DAMER with DSAF, PCL and SAML switched on and off (by default the seven combinations with
at least one module on; ``--combos`` picks others, e.g. ``--combos full dsaf+pcl none``) over the
same seeds and splits, and prints one table of the inference head's test metrics. Every other
ModelConfig / TrainConfig field is a flag as in ``merkit train``. ``merkit ablate --resume RUN``
continues a stopped ablation: finished combination/seed runs are not trained again.
"""
from __future__ import annotations

from . import COMMANDS

import logging
from pathlib import Path

from ..config import ModelConfig, TrainConfig, from_dict
from ._args import add_config_args, add_old_spelling, positive_int
from ..feature_cache import load_features

log = logging.getLogger(__name__)

# Set from the data and the task, or by the combination, never by a flag.
_MODEL_FIXED = ("name", "n_mels", "n_coch", "n_frames", "n_classes", "use_dsaf")
_TRAIN_FIXED = ("seed", "use_pcl", "use_saml")


def register(sub) -> None:
    from ..training.ablation import ALL_COMBOS, TABLE_V_COMBOS

    p = sub.add_parser("ablate", help=COMMANDS['ablate'],
                       description=__doc__.split("\n", 1)[1].strip())
    p.add_argument("--data", metavar="DIR|DATASET",
                   help="feature folder (Memo2496 layout), or emopia | emotify | synthetic (cached features)")
    p.add_argument("--arch", dest="model", default="damer", help="architecture (default: damer)")
    add_old_spelling(p, "--model", "model")
    p.add_argument("--combos", nargs="+", metavar="COMBO",
                   help=f"combinations: modules joined by '+', 'full' or 'none' (default: the Table V "
                        f"rows {' '.join(TABLE_V_COMBOS)}; all: {' '.join(ALL_COMBOS)})")
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="seeds to run (default: 0)")
    p.add_argument("--run-dir", metavar="DIR",
                   help="output folder (default: runs/ablation_<data>_<label>_<time>)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a stopped ablation with its stored settings (--combos / --seeds may add runs)")
    p.add_argument("--unlabelled", metavar="PATH", help="feature folder of unlabelled tracks for PCL")
    p.add_argument("--threads", type=positive_int, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add_config_args(p, ModelConfig, exclude=_MODEL_FIXED, group_title="model (ModelConfig)")
    add_config_args(p, TrainConfig, exclude=_TRAIN_FIXED, group_title="training (TrainConfig)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..training.ablation import RESULTS_JSON, TABLE_MD, load_ablation_meta, parse_combo, run_ablation
    from ._runs import new_run

    if args.threads:
        torch.set_num_threads(args.threads)
    combos = [parse_combo(c) for c in args.combos] if args.combos else None
    if args.resume:
        run_dir = Path(args.resume)
        meta = load_ablation_meta(run_dir)
        model_cfg = from_dict(ModelConfig, meta["model"])
        train_cfg = from_dict(TrainConfig, meta["train"])
        data, unlabelled = meta["data"], meta.get("unlabelled")
        combos = combos or meta["combos"]
        seeds = args.seeds or meta["seeds"]
        log.info("resuming %s (settings from its ablation.json; only --combos / --seeds are read)", run_dir)
    else:
        model_cfg, train_cfg, seeds, run_dir = new_run(args, "ablation_{data}_{label}")
        data, unlabelled = args.data, args.unlabelled
    fs = load_features(data)
    pool = load_features(unlabelled) if unlabelled else None
    out = run_ablation(fs, model_cfg, train_cfg, run_dir, combos=combos, seeds=seeds, unlabelled=pool,
                       resume=bool(args.resume), progress=args.progress, data_ref=str(data))
    print(out["table"])
    print(f"results: {run_dir / RESULTS_JSON}  table: {run_dir / TABLE_MD}")
    return 0
