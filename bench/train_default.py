"""Train the default model that ships inside merkit (``src/merkit/assets/default_model.pt``):
the unified model on the training parts of every corpus.

    python bench/train_default.py          # extracts missing feature folders into the cache first
    python bench/train_default.py --emopia-feats feats/emopia --mirex-feats feats/mirex_mood \\
                                  --emotify-feats feats/emotify

Recipe (every step seeded; rerunning it gives the same model on CPU with one torch thread):

1. Features of the paper's 60 s window with the musicnn view (``merkit extract NAME --views
   mel,coch,musicnn``): EMOPIA renders, the MIREX-like mood set, Emotify.
2. Splits, seed 0 (:func:`merkit.data.multi_corpus.corpus_splits`): EMOPIA's official split,
   MIREX fold 0 of 5 artist-grouped folds, Emotify 70 / 15 / 15.
3. Training: :func:`merkit.training.unified_fit.fit_unified` with and without distillation from
   per-corpus teachers; the variant with the better **validation** score is kept (and the epoch
   is chosen on validation, as always).
4. Calibration: P(high arousal) and P(positive valence) are logistic maps of the scores,
   fitted on the validation parts (:func:`merkit.predictors.unified.fit_calibration`).
5. Test metrics, computed once on each corpus's test part.
6. Export: float16 weights with the front end, the calibration and the float32 outputs of a
   fixed reference signal (``merkit.load_model().check()``); the export is refused if float16
   moves any test output by more than 0.02.

Results: ``bench/results/default_model.json``. Licences: musicnn's weights ISC; EMOPIA
CC BY-NC-SA 4.0, Emotify (Magnatune) CC non-commercial, MIREX-like previews research use: the
shipped weights are for non-commercial research.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
OUT_JSON = ROOT / "bench" / "results" / "default_model.json"
CORPORA = ("emopia", "mirex_mood", "emotify")
VIEWS = ("mel", "coch", "musicnn")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emopia-feats")
    ap.add_argument("--mirex-feats")
    ap.add_argument("--emotify-feats")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inputs", default="musicnn,tonal", help="views that make the input vector")
    ap.add_argument("--out", default=str(ROOT / "src" / "merkit" / "assets" / "default_model.pt"))
    args = ap.parse_args(argv)

    import torch

    from merkit.feature_cache import dataset_features
    from merkit.data.memo2496 import load_memo2496
    from merkit.data.multi_corpus import corpus_from_features, corpus_splits
    from merkit.evaluation.unified_eval import corpus_metrics
    from merkit.models.unified import UnifiedConfig
    from merkit.recipes import FP16_LIMIT, calibrated_model, fp16_change
    from merkit.training.unified_fit import UnifiedTrainConfig, fit_teachers, fit_unified, predict_corpus

    torch.set_num_threads(1)  # determinism and speed for a small MLP
    t0 = time.perf_counter()
    given = {"emopia": args.emopia_feats, "mirex_mood": args.mirex_feats, "emotify": args.emotify_feats}
    folders = {n: Path(p) if p else dataset_features(n, views=VIEWS) for n, p in given.items()}
    inputs = tuple(s.strip() for s in args.inputs.split(","))
    fss = {n: load_memo2496(p) for n, p in folders.items()}
    corpora = [corpus_from_features(fss[n], inputs, name=n) for n in CORPORA]
    splits = {c.name: corpus_splits(c, args.seed) for c in corpora}
    mcfg = UnifiedConfig(input_dim=corpora[0].x.shape[1], inputs=inputs)
    cfg = UnifiedTrainConfig(seed=args.seed)
    plain = fit_unified(corpora, splits, mcfg, cfg)
    teachers = fit_teachers(corpora, splits, mcfg, cfg)
    kd_cfg = UnifiedTrainConfig(seed=args.seed, kd_weight=0.5)
    kd = fit_unified(corpora, splits, mcfg, kd_cfg, teachers=teachers)
    chosen, used = (kd, kd_cfg) if kd.val_score > plain.val_score else (plain, cfg)
    print(f"validation: plain {plain.val_score:.4f} (epoch {plain.best_epoch}), "
          f"KD {kd.val_score:.4f} (epoch {kd.best_epoch}) -> {'KD' if chosen is kd else 'plain'}")
    net = chosen.model

    test = {}
    for c in corpora:
        te = splits[c.name].test
        test[c.name] = {"n": int(len(te)), **corpus_metrics(c, te, predict_corpus(net, c.x[te]))}

    info = {"model": "unified (musicnn MSD + tonal features)", "inputs": list(inputs),
            "trained_on": {n: str(folders[n]) for n in CORPORA}, "seed": args.seed,
            "distillation": chosen is kd, "best_epoch": chosen.best_epoch, "test": test,
            "licences": {"musicnn weights": "ISC", "EMOPIA": "CC BY-NC-SA 4.0",
                         "Emotify": "Magnatune, CC non-commercial", "MIREX-like": "research use only"}}
    # calibration on the validation parts of every corpus, reference outputs (merkit.recipes)
    model = calibrated_model(net, corpora, splits, feature_info=fss["emopia"].feature_info, info=info)
    calib = model.calibration

    # float16 export, checked against float32 on every test input before it replaces the old file
    from merkit.outputs import atomic_path
    from merkit.predict import load_model

    out = Path(args.out)
    with atomic_path(out, suffix=".pt") as tmp:
        model.save(tmp)
        half = load_model(tmp)
        worst = fp16_change(model, half, [c.x[splits[c.name].test] for c in corpora])
        if worst > FP16_LIMIT:
            raise SystemExit(f"float16 export moves test outputs by {worst:.4f} > {FP16_LIMIT}; not exported")
        half.check()
    record = {"date": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - t0, 1),
              "validation": {"plain": plain.val_score, "kd": kd.val_score},
              "calibration": {k: list(v) for k, v in calib.items()}, "test": test,
              "fp16_max_output_change": worst, "train": used.to_dict(), "model": mcfg.to_dict(),
              "file_bytes": out.stat().st_size}
    tmp = OUT_JSON.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, OUT_JSON)
    print(json.dumps(test, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), {OUT_JSON}; float16 change {worst:.4f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
