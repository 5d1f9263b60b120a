"""Regression of continuous arousal and valence on Emotify (400 real recordings), every model
that regresses, the same splits and seeds: R², Pearson r, CCC and RMSE.

    python bench/regression_emotify.py --emotify feats/emotify      # trains (resumable), then reports
    python bench/regression_emotify.py --report                         # tables from the finished runs

Emotify's labels are merkit's heuristic mapping of the GEMS vote shares to valence and arousal
(``merkit.data.emotify.gems_to_va``), induced rather than perceived emotion, so they are noisy
targets; the protocol split (70/30, validation 15 % of the training part) with seeds 0-4.
Budget as in ``bench/emopia.py``: DAMER 40 epochs, short-chunk ResNet width 16.

Writes ``bench/results/regression_emotify.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

SEEDS = [0, 1, 2, 3, 4]
TASKS = ["a", "v"]
# (run folder name, models, ModelConfig overrides, TrainConfig overrides)
GROUPS = [
    ("classical", ["logreg", "svm"], {}, {}),
    ("shortchunk", ["shortchunk"], {"width": 16}, {}),
    ("damer", ["damer"], {}, {"epochs": 40}),
]


def main(argv=None) -> int:
    from merkit.feature_cache import dataset_features_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--emotify", dest="feats", metavar="DIR", default=str(dataset_features_dir("emotify")), help="Emotify feature folder (merkit extract emotify)")
    ap.add_argument("--feats", dest="feats", help=argparse.SUPPRESS)  # the old spelling
    ap.add_argument("--runs", default=str(ROOT / "runs"), help="parent of the run folders")
    ap.add_argument("--report", action="store_true", help="only write the tables from finished runs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)

    from merkit.training.compare import format_comparison
    from merkit.training.run_files import write_json

    runs = Path(args.runs)
    if not args.report:
        import logging

        import torch

        from merkit.feature_cache import load_features
        from merkit.training.compare import run_comparison

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
        torch.set_num_threads(1)
        fs = load_features(args.feats)
        for name, models, m_over, t_over in GROUPS:
            folder = runs / f"regression_emotify_{name}"
            run_comparison(fs, folder, models=models, tasks=TASKS, seeds=SEEDS, model_overrides=m_over,
                           train_overrides={**t_over, "regression": True}, resume=folder.exists(),
                           progress=False, data_ref=args.feats)
    rows, settings = [], {}
    for name, _, m_over, t_over in GROUPS:
        res_path = runs / f"regression_emotify_{name}" / "results.json"
        if not res_path.is_file():
            continue
        res = json.loads(res_path.read_text())
        rows += res["rows"]
        settings[name] = {"model_overrides": res["model_overrides"], "train_overrides": res["train_overrides"]}
    title = "Emotify, continuous arousal / valence (protocol split), test metrics, mean ± std over seeds"
    out = {"what": title, "seeds": SEEDS, "settings": settings, "rows": rows,
           "rerun": "python bench/regression_emotify.py --emotify FEATS"}
    out_dir = Path(args.out)
    write_json(out_dir / "regression_emotify.json", out)
    md = format_comparison(rows, markdown=True, title=f"# {title}", regression=True)
    (out_dir / "regression_emotify.md").write_text(md + "\n\nRerun: `python bench/regression_emotify.py --emotify FEATS`.\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
