"""The dynamic model's loss and regularisation, chosen on the validation medleys only (seed 0).

    python bench/dynamic_grid.py --dyn feats/medleys_dyn     # writes bench/results/dynamic_grid.json

Rule fixed beforehand: the configuration with the highest validation selection score (mean
per-song CCC of valence and arousal) becomes the default of DSAMLConfig / DynamicTrainConfig.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GRID = [({"dropout": 0.2}, {"loss": "mse"}), ({"dropout": 0.5}, {"loss": "mse"}),
        ({"dropout": 0.5, "d_model": 64}, {"loss": "mse", "lr": 3e-4}), ({"dropout": 0.2}, {"loss": "mse", "lr": 3e-4}),
        ({"dropout": 0.5}, {"loss": "mse", "weight_decay": 0.1}), ({"dropout": 0.5}, {"loss": "ccc"})]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dyn", required=True)
    args = ap.parse_args(argv)
    import torch

    from merkit.dynamic_features import load_dynamic
    from merkit.models.dsaml import DSAMLConfig
    from merkit.training.dynamic_fit import DynamicTrainConfig, fit_dynamic, selection_score

    torch.set_num_threads(1)
    ds = load_dynamic(args.dyn)
    split = np.array([t.split for t in ds.tracks])
    tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    rows = []
    for m, t in GRID:
        fit = fit_dynamic(ds, tr, va, DSAMLConfig(**m), DynamicTrainConfig(seed=0, **t))
        rows.append({"model": m, "train": t, "val_score": selection_score(fit.val), "val": fit.val,
                     "best_epoch": fit.best_epoch})
        print(m, t, round(rows[-1]["val_score"], 4), flush=True)
    best = max(rows, key=lambda r: r["val_score"])
    out = {"date": time.strftime("%Y-%m-%d"), "rows": rows, "chosen": {"model": best["model"], "train": best["train"]}}
    (ROOT / "bench" / "results" / "dynamic_grid.json").write_text(json.dumps(out, indent=2) + "\n")
    print("chosen:", out["chosen"])
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
