"""Train the default model that ships inside merkit (``src/merkit/assets/default_model.pt``):
the unified model on the training parts of every corpus.

    python bench/train_default.py          # extracts missing feature folders into the cache first
    python bench/train_default.py --emopia feats/emopia --mirex feats/mirex_mood --emotify feats/emotify --q4 feats/q4

A thin caller of the recipe inside the package (:func:`merkit.recipes.train_default`, also
``merkit train --recipe default``), which writes the package's model file and this record.

Recipe (every step seeded; rerunning it gives the same model on CPU with one torch thread):

1. Features of the paper's 60 s window with the musicnn view (``merkit extract NAME --views
   mel,coch,musicnn``): EMOPIA renders, the MIREX-like mood set, Emotify, the 4Q dataset.
2. Splits, seed 0 (:func:`merkit.data.multi_corpus.corpus_splits`): EMOPIA's official split,
   MIREX and 4Q fold 0 of 5 artist-grouped folds, Emotify 70 / 15 / 15.
3. Training: :func:`merkit.training.unified_fit.fit_unified` with ``merkit.recipes.DEFAULT_RECIPE``,
   the settings chosen by leave-one-corpus-out validation (``bench/unified_loco.py``); the epoch
   is chosen on validation, as always.
4. Calibration: P(high arousal) and P(positive valence) are logistic maps of the scores,
   fitted on the validation parts (:func:`merkit.predictors.unified.fit_calibration`).
5. Test metrics, computed once on each corpus's test part.
6. Export: float16 weights with the front end, the calibration and the float32 outputs of a
   fixed reference signal (``merkit.load_model().check()``); the export is refused if float16
   moves any test output by more than 0.02.

Results: ``bench/results/default_model.json``. Licences: musicnn's weights ISC; EMOPIA
CC BY-NC-SA 4.0, Emotify (Magnatune) CC non-commercial, MIREX-like and 4Q previews research use: the
shipped weights are for non-commercial research.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
OUT_JSON = ROOT / "bench" / "results" / "default_model.json"
VIEWS = ("mel", "coch", "musicnn")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, flag in (("emopia", "--emopia"), ("mirex_mood", "--mirex"), ("emotify", "--emotify"), ("q4", "--q4")):
        ap.add_argument(flag, dest=name, metavar="DIR", help=f"{name} feature folder with the musicnn view "
                                                               "(default: merkit's cache, extracted on first use)")
        ap.add_argument(f"{flag}-feats", dest=name, help=argparse.SUPPRESS)  # the old spelling
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inputs", default="musicnn,tonal", help="views that make the input vector")
    ap.add_argument("--out", default=str(ROOT / "src" / "merkit" / "assets" / "default_model.pt"))
    args = ap.parse_args(argv)

    import torch

    from merkit.feature_cache import dataset_features
    from merkit.outputs import write_json
    from merkit.recipes import DEFAULT_CORPORA, train_default

    torch.set_num_threads(1)  # determinism and speed for a small MLP
    data = {n: getattr(args, n) or str(dataset_features(n, views=VIEWS)) for n in DEFAULT_CORPORA}
    record = train_default(data, args.out, seed=args.seed, inputs=[s.strip() for s in args.inputs.split(",")])
    write_json(OUT_JSON, record)
    print(json.dumps(record["test"], indent=1))
    print(f"wrote {args.out} ({record['file_bytes'] / 1e6:.2f} MB), {OUT_JSON}; "
          f"float16 change {record['fp16_max_output_change']:.4f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
