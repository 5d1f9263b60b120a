"""Train the default model that ships inside merkit (``src/merkit/assets/default_model.pt``).

    python bench/train_default.py                     # rebuilds missing feature folders, trains, exports
    python bench/train_default.py --emopia-feats /work/feats/emopia --emotify-feats /work/feats/emotify

Recipe (every step seeded; rerunning it gives the same model on CPU):

1. Features of the paper's 60 s window (``merkit extract emopia|emotify``; reused when the
   folders given by ``--emopia-feats`` / ``--emotify-feats`` exist, since rendering EMOPIA takes
   ~30 min on 2 cores).
2. Splits: EMOPIA's official song-level split (train / val / test); Emotify has none, so it is
   split 70 / 15 / 15 by :func:`~merkit.evaluation.protocol.stratified_group_split`, stratified
   by quadrant (seed ``--seed``). The 27 EMOPIA clips in no official split are left out.
3. Timeline windows: ``--crops`` 10 s crops per track at seeded random offsets, with the
   track's labels and split, so that the network also sees the window length the timeline
   uses (the frame length scales with the window, so a 10 s window has frames 6x shorter and
   a different level and texture than the 60 s window it was never trained on).
4. One small DAMER network (``SHIPPED_MODEL``), 4-class quadrant task (arousal and valence
   are its marginals), trained with the current :func:`merkit.training.loop.train` (PCL and
   SAML as configured by default), the epoch selected on the validation part (early stopping
   with ``--patience``).
5. Test metrics, computed once on the held-out test tracks, per corpus and per window length:
   4-quadrant accuracy and macro F1, and the accuracy of the arousal and valence marginals.
6. Export: the selected weights in float16 (half the size) with the front-end settings; the
   float16 model is checked against the float32 one on the test features.

Results: ``bench/results/default_model.json``. Data licences: EMOPIA CC BY-NC-SA 4.0; Emotify
(Magnatune) Creative Commons non-commercial; the shipped weights inherit "non-commercial".
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MERKIT_CACHE", Path.home() / ".cache" / "merkit"))
log = logging.getLogger("train_default")

# Emotify has no official split: 15 % test, then 15 % of the rest for validation (the same
# validation share as TrainConfig.val_size), grouped and stratified by quadrant.
EMOTIFY_TEST, EMOTIFY_VAL = 0.15, 0.15
N_CROPS = 2  # 10 s crops per track: triples the data, costs ~3x per epoch
# A small DAMER: half the paper's width and one cross-view layer (0.16 M parameters instead of
# 0.98 M). On a shared 2-core CPU a paper-size step of 256 samples took 19 s, i.e. hours for
# the recipe; this one trains in tens of minutes and predicts faster.
# fast_dropout off: torch's dropout, with which the shipped model was trained (the recipe stays
# bit-reproducible against the committed weights).
SHIPPED_MODEL = dict(dim=64, n_layers=1, n_heads=4, fusion_dim=128, fast_dropout=False)
EPOCHS, PATIENCE = 20, 5  # modest: the whole recipe fits in tens of minutes on 2 cores
CROP_SEP = "#crop"  # track id of a crop: "<track_id>#crop<k>"
LICENCES = {"emopia": "CC BY-NC-SA 4.0", "emotify": "Magnatune, Creative Commons non-commercial"}


def assign_emotify_splits(fs, seed: int):
    """Emotify tracks with a train / val / test split (copies; the folder is not touched)."""
    from merkit.evaluation.protocol import stratified_group_split, task_labels, track_groups

    idx, y = task_labels(fs, "quadrant")
    groups = track_groups(fs, idx)
    rest, test = stratified_group_split(y, groups, EMOTIFY_TEST, seed)
    tr, va = stratified_group_split(y[rest], groups[rest], EMOTIFY_VAL, seed)
    split = {}
    for part, pos in (("train", rest[tr]), ("val", rest[va]), ("test", test)):
        split.update({int(idx[p]): part for p in pos})
    tracks = [replace(t, split=split.get(i, "")) for i, t in enumerate(fs.tracks)]
    return replace(fs, tracks=tracks)


# -- 10 s crops --------------------------------------------------------------------------------
def _crop_worker(args):
    """Features of ``n`` crops of one track (runs in a worker process)."""
    i, path, midi, n, seed = args
    from merkit.audio import load_audio, prepare
    from merkit.features.extractor import FeatureExtractor
    from merkit.predict import PredictorConfig

    pc = PredictorConfig()
    a = pc.timeline_audio()
    fx = FeatureExtractor(a, pc.features)
    src = path if path and Path(path).is_file() else midi
    try:
        y, sr = load_audio(src, sample_rate=a.sample_rate)
    except Exception as e:  # a bad file is skipped, the recipe goes on
        return i, None, f"{src}: {e}"
    w = a.window_samples
    rng = np.random.default_rng([seed, i])
    starts = rng.integers(0, max(len(y) - w, 0) + 1, size=n)
    wins = np.stack([prepare(y[s:s + w], sr, a, name=str(src))[0] for s in starts])
    f = fx(wins)
    return i, (f.mel, f.coch, starts / sr), None


def crop_features(fs, n: int, seed: int, cache_dir: Path, workers: int):
    """A FeatureSet of ``n`` 10 s crops per track of ``fs`` (cached in ``cache_dir``)."""
    from merkit.data.memo2496 import FeatureSet, is_memo2496_dir, load_memo2496, save_memo2496
    from merkit.predict import PredictorConfig

    ids = [t.track_id for t in fs.tracks]
    key = hashlib.sha256(json.dumps([ids, n, seed, PredictorConfig().to_dict()]).encode()).hexdigest()[:16]
    out = cache_dir / f"crops_{fs.tracks[0].source}_{key}"
    if is_memo2496_dir(out):
        log.info("crops: reusing %s", out)
        return load_memo2496(out, mmap=False)
    jobs = [(i, t.path, t.extra.get("midi", ""), n, seed) for i, t in enumerate(fs.tracks)]
    mel, coch, tracks, la, lv = [], [], [], [], []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        for i, res, err in pool.map(_crop_worker, jobs, chunksize=8):
            if err:
                log.warning("crops: skipping %s", err)
                continue
            m, c, starts = res
            t = fs.tracks[i]
            for k in range(n):
                extra = {"crop_of": t.track_id, "crop_start": float(starts[k])}
                tracks.append(replace(t, track_id=f"{t.track_id}{CROP_SEP}{k}", extra=extra))
                la.append(fs.label_a[i])
                lv.append(fs.label_v[i])
            mel.append(m)
            coch.append(c)
    log.info("crops: %d tracks x %d in %.0f s", len(mel), n, time.perf_counter() - t0)
    crops = FeatureSet(mel=np.concatenate(mel), coch=np.concatenate(coch), label_a=np.asarray(la, np.float32),
                       label_v=np.asarray(lv, np.float32), tracks=tracks, root=out,
                       feature_info={"crops": n, "seed": seed, **PredictorConfig().to_dict()})
    save_memo2496(crops, out)
    return crops


def concat(parts, root: Path | None = None):
    from merkit.data.memo2496 import FeatureSet

    return FeatureSet(mel=np.concatenate([np.asarray(p.mel) for p in parts]),
                      coch=np.concatenate([np.asarray(p.coch) for p in parts]),
                      label_a=np.concatenate([np.asarray(p.label_a, np.float32) for p in parts]),
                      label_v=np.concatenate([np.asarray(p.label_v, np.float32) for p in parts]),
                      tracks=[t for p in parts for t in p.tracks], root=root,
                      feature_info=parts[0].feature_info)


# -- evaluation ----------------------------------------------------------------------------------
def evaluate(model, fs, part: str) -> dict:
    """Metrics of ``model`` on the ``part`` tracks, per corpus and window length."""
    from merkit.evaluation.metrics import accuracy, macro_f1
    from merkit.evaluation.protocol import predict

    out = {}
    for source in sorted({t.source for t in fs.tracks}):
        for kind in ("full", "crop10s"):
            idx = np.array([i for i, t in enumerate(fs.tracks) if t.split == part and t.source == source
                            and (CROP_SEP in t.track_id) == (kind == "crop10s") and t.quadrant > 0])
            if len(idx) == 0:
                continue
            p = predict(model, fs.mel[idx], fs.coch[idx])["ensemble"]
            q = np.array([fs.tracks[i].quadrant for i in idx]) - 1
            pred = p.argmax(1)
            hi_a, pos_v = np.isin(q, (0, 1)), np.isin(q, (0, 3))
            out[f"{source}/{kind}"] = {
                "n": int(len(idx)),
                "quadrant_acc": accuracy(q, pred),
                "quadrant_macro_f1": macro_f1(q, pred, n_classes=4),
                "arousal_acc": accuracy(hi_a, (p[:, 0] + p[:, 1]) >= 0.5),
                "valence_acc": accuracy(pos_v, (p[:, 0] + p[:, 3]) >= 0.5),
            }
    return out


def export(best_pt: Path, out: Path, info: dict, fs_test) -> dict:
    """Write the shipped file: float16 weights, the front end, what the model is, and the
    float32 predictions of a reference signal (``EmotionModel.check`` compares against them)."""
    from merkit.evaluation.protocol import predict
    from merkit.models import load_model as load_network
    from merkit.predict import FP16_TOLERANCE, PREDICTOR_KEY, EmotionModel, PredictorConfig, load_model
    from merkit.training.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(best_pt)
    sd16 = {k: (v.half() if v.is_floating_point() and not k.endswith(("_mean", "_std")) else v)
            for k, v in ckpt["state_dict"].items()}  # normalisation stats stay float32: they are tiny
    data_info = {k: v for k, v in ckpt["data_info"].items() if k != "track_ids"}
    payload = {"config": ckpt["config"], "state_dict": sd16, "data_info": data_info,
               "metrics": ckpt.get("metrics"),
               PREDICTOR_KEY: {**PredictorConfig().to_dict(), "task": "quadrant", "info": info}}
    m32 = load_network(best_pt)
    payload[PREDICTOR_KEY]["reference"] = EmotionModel({"quadrant": m32}, PredictorConfig()).reference_probabilities()
    tmp = out.with_name(out.name + ".candidate")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(tmp, payload)
    reference_diff = load_model(tmp).check()
    m16 = load_network(tmp)
    p32 = predict(m32, fs_test.mel, fs_test.coch)["ensemble"]
    p16 = predict(m16, fs_test.mel, fs_test.coch)["ensemble"]
    diff = float(np.abs(p32 - p16).max())
    agree = float((p32.argmax(1) == p16.argmax(1)).mean())
    if diff > FP16_TOLERANCE:
        raise RuntimeError(f"float16 export differs by {diff:.4f} > {FP16_TOLERANCE} from float32")
    os.replace(tmp, out)
    return {"max_abs_prob_diff_fp16": diff, "argmax_agreement_fp16": agree,
            "reference_signal_diff_fp16": reference_diff, "bytes": out.stat().st_size}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--emopia-feats", type=Path, default=CACHE / "feats" / "emopia",
                   help="EMOPIA feature folder; extracted there when absent")
    p.add_argument("--emotify-feats", type=Path, default=CACHE / "feats" / "emotify",
                   help="Emotify feature folder; extracted there when absent")
    p.add_argument("--work-dir", type=Path, default=CACHE / "train_default",
                   help="crops cache and the training run")
    p.add_argument("--out", type=Path, default=ROOT / "src" / "merkit" / "assets" / "default_model.pt")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "default_model.json")
    p.add_argument("--crops", type=int, default=N_CROPS, help="10 s crops per track (0: none)")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--patience", type=int, default=PATIENCE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", type=Path, default=None,
                   help="continue (or reuse, when finished) this training run instead of starting "
                        "a fresh one in WORK_DIR/run_seed<k>_<time>")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")

    import torch

    from merkit.config import ModelConfig, TrainConfig
    from merkit.data.feature_cache import dataset_features
    from merkit.data.memo2496 import load_memo2496
    from merkit.models import load_model as load_network
    from merkit.training.loop import train

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    emopia = load_memo2496(dataset_features("emopia", args.emopia_feats, workers=args.workers), mmap=False)
    emotify = assign_emotify_splits(
        load_memo2496(dataset_features("emotify", args.emotify_feats, workers=args.workers), mmap=False), args.seed)
    parts = [emopia, emotify]
    if args.crops:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        # the crops inherit each track's split, so no song is on both sides
        parts += [crop_features(fs, args.crops, args.seed, args.work_dir, args.workers) for fs in (emopia, emotify)]
    fs = concat(parts)
    fs = fs.subset([i for i, t in enumerate(fs.tracks) if t.split in ("train", "val", "test")])
    sizes = {s: {src: sum(t.split == s and t.source == src for t in fs.tracks) for src in LICENCES}
             for s in ("train", "val", "test")}
    log.info("data: %s", sizes)

    model_cfg = ModelConfig(**SHIPPED_MODEL)
    # cpu_amp off: float32, as the shipped model was trained (the recipe stays reproducible on
    # CPUs with native bfloat16 too)
    train_cfg = TrainConfig(label="quadrant", split="official", epochs=args.epochs, patience=args.patience,
                            cpu_amp=False,
                            seed=args.seed, select_metric="acc")
    run_dir = args.run_dir or args.work_dir / f"run_seed{args.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    res = train(fs, model_cfg, train_cfg, run_dir, seeds=[args.seed], data_ref="emopia+emotify (+crops)",
                resume=args.run_dir is not None and run_dir.exists())
    best = run_dir / f"seed_{args.seed}" / "best.pt"
    model = load_network(best)
    test = evaluate(model, fs, "test")
    val = evaluate(model, fs, "val")
    info = {"data": {"emopia": {"licence": LICENCES["emopia"], "labels": "quadrant (annotated)"},
                     "emotify": {"licence": LICENCES["emotify"],
                                 "labels": "quadrant of the GEMS votes mapped to V/A (heuristic)"}},
            "sizes": sizes, "test": test, "val": val,
            "best_epoch": res["per_seed"][0]["best_epoch"], "recipe": "bench/train_default.py"}
    test_idx = [i for i, t in enumerate(fs.tracks) if t.split == "test"]
    exported = export(best, args.out, info, fs.subset(test_idx))
    results = {"recipe": "python bench/train_default.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "args": {k: str(v) for k, v in vars(args).items()}, "sizes": sizes,
               "model": asdict(model_cfg), "train": asdict(train_cfg),
               "best_epoch": info["best_epoch"], "epochs_run": len(json.loads(
                   (run_dir / f"seed_{args.seed}" / "results.json").read_text())["history"]),
               "val": val, "test": test, "export": exported, "minutes": (time.perf_counter() - t0) / 60,
               "torch_threads": torch.get_num_threads()}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.results.with_name(args.results.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, args.results)
    print(json.dumps({"test": test, "export": exported}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
