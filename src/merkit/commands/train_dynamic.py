"""``merkit train --arch dsaml --data FOLDER``: the dynamic (2 Hz) model on a ``merkit
extract-dynamic`` folder. Splits come from the folder's tracks (``merkit medleys`` assigns them
by source song); per seed, the epoch is chosen on the validation part and the test part is
predicted once. ``RUN_DIR/seed_<k>/model.pt`` is a self-describing checkpoint (kind ``dsaml``:
configuration, normalisation, the frame grid and the encoder it was trained on);
``RUN_DIR/results.json`` holds the per-song metrics.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..training.run_files import write_text
from ._runs import dynamic_table
from ..dynamic_features import load_dynamic
from ..outputs import check_folder
from ._runs import family_overrides

KIND = "dsaml"


def dsaml_checkpoint(model, *, train: dict, info: dict, val: dict, test: dict, best_epoch: int) -> dict:
    """A format-2 checkpoint of a DSAML network trained on a ``merkit extract-dynamic`` folder
    whose ``info`` (its 2 Hz grid and encoder) the predictor reads back."""
    from ..checkpoint import make_checkpoint

    pred = {"hop": float((info.get("grid") or {}).get("hop", 0.5)),
            "encoder": (info.get("encoder") or {}).get("encoder", "musicnn")}
    return make_checkpoint(KIND, model.cfg.to_dict(), model.state_dict(), train_config=train,
                           data_info={"dynamic_features": info}, predictor=pred,
                           metrics={"val": val, "test": test, "best_epoch": best_epoch})


def run_dynamic(args) -> int:
    from ..models.dsaml import DSAMLConfig
    from ..checkpoint import save_checkpoint
    from ..training.dynamic_fit import DynamicTrainConfig, fit_dynamic, predict, song_metrics, targets

    if not args.data:
        raise ValueError("--data is required: a `merkit extract-dynamic` folder")
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"dsaml_{time.strftime('%Y%m%d-%H%M%S')}"

    check_folder(run_dir, flag="--run-dir", inputs=[args.data], empty=True)  # before any data is loaded
    ds = load_dynamic(args.data)
    split = np.array([t.split for t in ds.tracks])
    train, val, test = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
    if not len(train) or not len(val) or not len(test):
        raise ValueError(f"{args.data}: needs tracks marked train, val and test (found {len(train)} / {len(val)} / "
                         f"{len(test)}); `merkit medleys` assigns them")

    overrides = family_overrides(args)
    per_seed = []
    for seed in args.seeds or [0]:
        cfg = DynamicTrainConfig(**{**DynamicTrainConfig().to_dict(), **overrides, "seed": seed})
        fit = fit_dynamic(ds, train, val, DSAMLConfig(), cfg)
        m = song_metrics(predict(fit.model, np.asarray(ds.frames)[test], np.asarray(ds.global_)[test]),
                         targets(ds, test))
        save_checkpoint(run_dir / f"seed_{seed}" / "model.pt",
                        dsaml_checkpoint(fit.model, train=cfg.to_dict(), info=ds.info, val=fit.val, test=m,
                                         best_epoch=fit.best_epoch))
        per_seed.append(m)
        print(f"seed {seed}: best epoch {fit.best_epoch}, validation CCC {np.nanmean([fit.val['v_ccc'], fit.val['a_ccc']]):.3f}")
    table = dynamic_table(per_seed)
    write_text(run_dir / "results.json", json.dumps({"kind": "dsaml", "data": str(args.data),
                                                     "seeds": args.seeds or [0], "test": per_seed,
                                                     "table": table}, indent=2))
    print(table)
    print(f"results: {run_dir / 'results.json'}")
    return 0
