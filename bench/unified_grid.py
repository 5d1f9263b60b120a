"""The unified model's width and dropout, chosen on validation parts only.

    python bench/unified_grid.py --emopia feats/emopia --mirex feats/mirex_mood --emotify feats/emotify

Trains "all corpora" for each (hidden, dropout, input dropout) with seeds 0-2 and writes the
mean validation score (merkit.evaluation.unified_eval.selection_score, averaged over corpora)
to bench/results/unified_grid.json. The rule, fixed before the run: a setting replaces the
default only if it beats the default's mean validation score by at least 0.01. Test parts
are not touched.
"""
import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emopia", required=True)
    ap.add_argument("--mirex", required=True)
    ap.add_argument("--emotify", required=True)
    args = ap.parse_args(argv)
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    import unified as U

    from merkit.data.multi_corpus import corpus_splits
    from merkit.models.unified import UnifiedConfig
    from merkit.training.unified_fit import UnifiedTrainConfig, fit_unified

    torch.set_num_threads(1)
    corpora = list(U.load_corpora({"emopia": args.emopia, "mirex_mood": args.mirex, "emotify": args.emotify},
                                  ("musicnn", "tonal")).values())
    out = {}
    for hidden, drop, idrop in itertools.product([128, 256, 512], [0.3, 0.5], [0.1, 0.3]):
        vals = []
        for seed in (0, 1, 2):
            splits = {c.name: corpus_splits(c, seed) for c in corpora}
            cfg = UnifiedConfig(input_dim=corpora[0].x.shape[1], hidden=hidden, dropout=drop, input_dropout=idrop)
            vals.append(fit_unified(corpora, splits, cfg, UnifiedTrainConfig(seed=seed)).val_score)
        out[f"{hidden},{drop},{idrop}"] = float(np.mean(vals))
        print(hidden, drop, idrop, round(float(np.mean(vals)), 4), flush=True)
    (ROOT / "bench" / "results" / "unified_grid.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
