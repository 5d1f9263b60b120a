"""Turning a trained unified network into a model file `merkit predict` can use: the steps the
shipped model and every `merkit train --arch unified` run share.

1. **Calibration** on the validation parts of every corpus (never the test parts): a logistic
   map per dimension from the head's raw valence / arousal score to P(positive) / P(high)
   (:func:`merkit.predictors.unified.fit_calibration`). MIREX-like clusters whose arousal side
   is not clear-cut (:data:`merkit.data.mirex_mood.CONFIDENT_AROUSAL`) do not vote on arousal.
2. **Reference outputs**: the model's float32 outputs on :func:`merkit.reference.reference_signal`,
   stored so that a loaded copy can verify itself (``UnifiedModel.check``).
3. **float16 check** (:func:`fp16_change`): the largest change float16 weights make to any output
   on the given inputs; the shipped model is refused beyond :data:`FP16_LIMIT`.

Without step 1 a model fell back to a default slope (1.7), so its probabilities were not
calibrated; ``merkit train --recipe default`` (the shipped model: :func:`train_default`,
``bench/train_default.py`` calls it) and ``merkit train --arch unified`` both call
:func:`calibrated_model`.

**The default recipe** (:func:`train_default`; every step seeded, so a rerun gives the same
model on CPU with one torch thread):
1. Features of the paper's 60 s window with the musicnn view: EMOPIA renders, the MIREX-like
   mood set, Emotify and the 4Q audio emotion dataset (:data:`DEFAULT_CORPORA`).
2. Splits of ``seed`` (:func:`merkit.data.multi_corpus.corpus_splits`): EMOPIA's official
   split, MIREX and 4Q fold ``seed`` of 5 artist-grouped folds (songs in both are grouped
   together), Emotify 70 / 15 / 15.
3. :func:`merkit.training.unified_fit.fit_unified` with the settings of :data:`DEFAULT_RECIPE`,
   chosen by **leave-one-corpus-out** validation (``bench/unified_loco.py``: each candidate
   trained without one corpus and scored on that corpus's validation part; the shipped model
   meets music from none of its corpora, and in-corpus validation rewards each corpus's quirks).
   The epoch is chosen on the training corpora's validation parts, as always.
4. Calibration and reference outputs (above); test metrics computed once per corpus.
5. Export with float16 weights, refused if they move any test output by more than
   :data:`FP16_LIMIT`; the file is then loaded back and self-checked.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .data.mirex_mood import CONFIDENT_AROUSAL
from .predictors.base import PredictorConfig
from .predictors.unified import UnifiedModel, fit_calibration
from .training.unified_fit import predict_corpus
from .data.multi_corpus import corpus_splits
from .evaluation.unified_eval import corpus_metrics
from .feature_cache import load_corpus
from .models.unified import DEFAULT_INPUTS, UnifiedConfig
from .outputs import atomic_path
from .training.unified_fit import UnifiedTrainConfig, fit_teachers, fit_unified
from .checkpoint import load_checkpoint, save_checkpoint
from .audio import AudioError
from .data.medley import INFO as MEDLEY_INFO
from .dynamic_features import load_dynamic
from .models.curve import N_NOVELTY, CurveConfig
from .training.curve_fit import change_labels, fit_detector, joins, select

FP16_LIMIT = 0.02  # the largest output change float16 weights may make (the shipped model's bar)


def calibrate(net, corpora, splits) -> dict[str, tuple[float, float]]:
    """``{"valence": (slope, intercept), "arousal": ...}`` fitted on every corpus's validation part."""
    calib = {}
    for j, dim in ((0, "valence"), (1, "arousal")):
        scores, labels = [], []
        for c in corpora:
            va = splits[c.name].val
            if len(va) == 0:
                continue
            s = predict_corpus(net, c.x[va])["va"][:, j]
            t = c.va[va, j].copy()
            if dim == "arousal" and (c.mirex >= 0).any():
                t[~np.isin(c.mirex[va] + 1, CONFIDENT_AROUSAL)] = np.nan
            scores.append(s)
            labels.append(t)
        calib[dim] = fit_calibration(np.concatenate(scores), np.concatenate(labels)) if scores else (1.7, 0.0)
    return calib


def calibrated_model(net, corpora, splits, *, feature_info: dict | None, info: dict | None = None) -> UnifiedModel:
    """A :class:`UnifiedModel` of ``net`` with the front end of ``feature_info`` (the feature
    folders' ``features.json``), calibrated on the validation parts and carrying its reference
    outputs."""
    model = UnifiedModel(net, PredictorConfig.from_feature_info(feature_info),
                         calibration=calibrate(net, corpora, splits), info=info)
    model.reference = model.reference_probabilities()
    return model


def fp16_change(model: UnifiedModel, half: UnifiedModel, inputs: list[np.ndarray]) -> float:
    """The largest change between two copies' outputs (float32 ``model`` against a float16
    ``half``) on the input rows ``inputs``: probabilities directly, scores through tanh."""
    worst = 0.0
    for x in inputs:
        a, b = model.outputs(x), half.outputs(x)
        for k in a:
            d = np.abs(np.tanh(a[k]) - np.tanh(b[k])) if k == "va" else np.abs(a[k] - b[k])
            worst = max(worst, float(d.max()) if d.size else 0.0)
    return worst


DEFAULT_CORPORA = ("emopia", "mirex_mood", "emotify", "q4")
# (UnifiedConfig changes, UnifiedTrainConfig changes) of the shipped recipe: the best of
# bench/unified_loco.py's candidates by leave-one-corpus-out validation (bench/results/unified_loco.md)
DEFAULT_RECIPE: tuple[dict, dict] = ({"dropout": 0.7, "input_dropout": 0.5}, {})
LICENCES = {"musicnn weights": "ISC", "EMOPIA": "CC BY-NC-SA 4.0", "Emotify": "Magnatune, CC non-commercial",
            "MIREX-like": "research use only", "4Q audio emotion dataset": "research use only"}


def train_default(data: dict[str, str], out, *, seed: int = 0, inputs=None, log=print) -> dict:
    """The shipped model's recipe (module docstring) on ``data`` (``{corpus name: feature folder
    or dataset name}``, those of :data:`DEFAULT_CORPORA`), written to ``out``; ``inputs``:
    the network's inputs (default: :class:`~merkit.models.unified.UnifiedConfig`'s). Returns the
    record of the run (validation score, calibration, test metrics, float16 change)."""
    import time
    from pathlib import Path

    missing = [n for n in DEFAULT_CORPORA if n not in data]
    if missing:
        raise ValueError(f"the default recipe trains on {', '.join(DEFAULT_CORPORA)}; missing {', '.join(missing)}")
    t0 = time.perf_counter()
    model_changes, train_changes = DEFAULT_RECIPE
    inputs = tuple(inputs or model_changes.get("inputs") or DEFAULT_INPUTS)
    corpora = []
    for name in DEFAULT_CORPORA:
        c = load_corpus(str(data[name]), inputs)
        c.name = name
        corpora.append(c)
    splits = {c.name: corpus_splits(c, seed) for c in corpora}
    mcfg = UnifiedConfig(input_dim=corpora[0].x.shape[1], **{**model_changes, "inputs": inputs})
    used = UnifiedTrainConfig(seed=seed, **train_changes)
    teachers = fit_teachers(corpora, splits, mcfg, UnifiedTrainConfig(seed=seed)) if used.kd_weight else None
    chosen = fit_unified(corpora, splits, mcfg, used, teachers=teachers)
    log(f"validation {chosen.val_score:.4f} (epoch {chosen.best_epoch})")
    net = chosen.model
    test = {}
    for c in corpora:
        te = splits[c.name].test
        test[c.name] = {"n": int(len(te)), **corpus_metrics(c, te, predict_corpus(net, c.x[te]))}
    info = {"model": f"unified ({' + '.join(inputs)})", "inputs": list(inputs),
            "trained_on": {n: str(data[n]) for n in DEFAULT_CORPORA}, "seed": seed,
            "distillation": bool(used.kd_weight), "best_epoch": chosen.best_epoch, "test": test,
            "licences": LICENCES}
    model = calibrated_model(net, corpora, splits, feature_info=corpora[0].feature_info, info=info)

    out = Path(out)
    blob = dict(train_config=used.to_dict(),
                data_info={"data": {n: str(data[n]) for n in DEFAULT_CORPORA}, "va_scales": chosen.va_scales,
                           "feature_info": corpora[0].feature_info},
                metrics={"val": chosen.val_metrics, "test": test, "best_epoch": chosen.best_epoch})
    with atomic_path(out, suffix=".pt") as tmp:  # replaced only once the float16 copy passes
        model.save(tmp, **blob)
        half = UnifiedModel.from_blob(load_checkpoint(tmp), path=tmp)
        worst = fp16_change(model, half, [c.x[splits[c.name].test] for c in corpora])
        if worst > FP16_LIMIT:
            raise ValueError(f"float16 weights move test outputs by {worst:.4f} > {FP16_LIMIT}; {out} not written")
        half.check()
    return {"date": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - t0, 1),
            "validation": chosen.val_score, "recipe": {"model": model_changes, "train": train_changes},
            "calibration": {k: list(v) for k, v in model.calibration.items()}, "test": test,
            "fp16_max_output_change": worst, "train": used.to_dict(), "model": mcfg.to_dict(),
            "file_bytes": out.stat().st_size}


def hear_once(model_file, data: dict[str, str], out, *, seed: int = 0, log=print) -> dict:
    """A copy of ``model_file`` at ``out`` whose encoders hear a short clip once
    (:attr:`~merkit.config.AudioConfig.encoder_once`) instead of the window it was looped to:
    weights, calibration and timeline unchanged. Its test metrics are computed again on ``data``
    (``{corpus: feature folder}`` extracted with ``encoder_once``; the same seeded splits, test
    parts only, never used to choose anything) and stored beside those of the looped window;
    the reference outputs are made again, and the copy is loaded back and self-checked before
    it replaces ``out``."""
    import time

    t0 = time.perf_counter()
    blob = load_checkpoint(model_file)
    model = UnifiedModel.from_blob(blob, path=model_file)
    inputs = tuple(model.net.cfg.inputs)
    test = {}
    for name, folder in data.items():
        c = load_corpus(str(folder), inputs)
        if not (c.feature_info or {}).get("audio", {}).get("encoder_once"):
            raise ValueError(f"{folder}: its encoder views were not extracted with encoder_once")
        c.name = name
        te = corpus_splits(c, seed).test
        test[name] = {"n": int(len(te)), **corpus_metrics(c, te, predict_corpus(model.net, c.x[te]))}
    before = blob["metrics"].get("test")
    blob["predictor"]["audio"]["encoder_once"] = True
    blob["predictor"]["reference"] = model.set_encoder_once(True).reference_probabilities()
    blob["predictor"]["info"] = {**blob["predictor"].get("info", {}), "test": test, "test_looped_window": before}
    blob["metrics"] = {**blob["metrics"], "test": test, "test_looped_window": before}
    diff = _save_checked(blob, out)
    log(f"heard once: test metrics on {', '.join(test)}; self-check {diff:.2g}")
    return {"date": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - t0, 1), "test": test,
            "test_looped_window": before, "data": {k: str(v) for k, v in data.items()}, "self_check_difference": diff}


def clip_curves(model: UnifiedModel, paths: list[str]) -> list[dict]:
    """What :func:`merkit.training.curve_fit.steadiness` reads of single clips: each clip's 2 Hz
    frames, tonal view, track result (P valence, P arousal) and silent half seconds, through
    `merkit predict --timeline`'s own code (clips that fail or hold no music are left out)."""
    rows = []
    for path in paths:
        try:
            feats = model._file_features(path, True)
        except (AudioError, ValueError, OSError, RuntimeError):
            continue
        if "curve" not in feats:  # not music
            continue
        track = model._predictions(feats)[0]
        c = feats["curve"]
        rows.append({"frames": c["frames"], "tonal": c["tonal"], "track": (track.valence, track.arousal),
                     "silent": [f is not None for f in feats["window_flags"]]})
    return rows


def fit_timeline(model_file, dyn_folder, out, *, clips: dict[str, list[str]] | None = None,
                 songs: dict[str, list[str]] | None = None, log=print) -> dict:
    """The shipped model's 2 Hz timeline (:mod:`merkit.models.curve`): its change detector
    fitted on the training medleys of ``dyn_folder`` (a ``merkit extract-dynamic`` folder of
    ``merkit medleys``; the medleys' test split is not read), its threshold, shortest part,
    easing and lag chosen on the validation medleys with the model's own head, among the settings
    that hold still on the single real clips ``clips`` (``{corpus: paths}``: validation parts,
    never test parts; :mod:`merkit.training.curve_fit`); the single songs ``songs`` (training
    parts) are the detector's examples of music that does not change, then stored in a copy of ``model_file`` at ``out``
    (weights and calibration unchanged) with the reference outputs of its track window and timeline;
    the copy is loaded back and self-checked before it replaces ``out``."""
    import time
    from pathlib import Path

    t0 = time.perf_counter()
    ds = load_dynamic(dyn_folder)
    split = np.array([t.split for t in ds.tracks])
    train, val = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    if not len(train) or not len(val):
        raise ValueError(f"{dyn_folder}: needs training and validation medleys (merkit medleys), "
                         f"got {len(train)} and {len(val)}")
    crossfade = _medley_crossfade(ds, MEDLEY_INFO)
    blob = load_checkpoint(model_file)
    model = UnifiedModel.from_blob(blob, path=model_file)
    pen = model.encoder_seq_dim("musicnn")
    frames = [np.asarray(ds.frames[i], np.float64) for i in range(len(ds.tracks))]
    model.set_curve(CurveConfig(weights=(0.0,) * N_NOVELTY, bias=0.0, mean=(0.0,) * frames[0].shape[1],
                                std=(1.0,) * frames[0].shape[1], pen_dim=pen))  # reads the clips' frames below
    unchanged = [r["frames"] for paths in (songs or {}).values() for r in clip_curves(model, paths)]
    log(f"detector: {len(train)} training medleys, {len(unchanged)} single songs")
    w, b, mean, std = fit_detector([frames[i] for i in train],
                                   [change_labels(np.asarray(ds.times), joins(ds.tracks[i], crossfade)) for i in train],
                                   pen_dim=pen, unchanged=unchanged)
    base = CurveConfig(weights=tuple(map(float, w)), bias=float(b), mean=tuple(map(float, mean)),
                       std=tuple(map(float, std)), pen_dim=pen)
    net = model.net
    tonal = net.mean[2 * frames[0].shape[1]:].numpy() if "tonal" in net.cfg.inputs else None  # the average tonal view

    def head(x):  # valence_score, arousal_score of head inputs
        return model.va_scores(model.outputs(x)["va"])

    def prob_head(x):  # P(positive valence), P(high arousal)
        return model.va_probabilities(model.outputs(x)["va"])

    steady = None
    if clips:  # (any detector will do: the clips' frames and track results do not depend on it)
        steady = {name: clip_curves(model, paths) for name, paths in clips.items()}
        log("steadiness clips: " + ", ".join(f"{k} {len(v)}" for k, v in steady.items()))
    true = np.stack([np.asarray(ds.dyn_v), np.asarray(ds.dyn_a)], -1)
    cfg, grid = select([frames[i] for i in val], true[val], base, head, tonal, clips=steady, prob_head=prob_head)
    best = next(r for r in grid if r["chosen"])
    cfg = dataclasses.replace(cfg, fitted_on={"medleys": Path(dyn_folder).name, "train": int(len(train)),
                                              "val": int(len(val)), "val_r": {"v": best["v_r"], "a": best["a_r"]},
                                              "steady_clips": {k: len(v) for k, v in (steady or {}).items()},
                                              "single_songs": len(unchanged),
                                              "val_steadiness": best.get("clips")})
    log(f"timeline: threshold {cfg.threshold}, shortest part {cfg.min_part} s, ease {cfg.ease} s, lag {cfg.lag} s; "
        f"validation r valence {best['v_r']:.3f}, arousal {best['a_r']:.3f}; worst steadiness on the clips "
        f"{best.get('worst_steadiness', float('nan')):.2f}")
    model.set_curve(cfg)
    blob["predictor"]["curve"] = cfg.to_dict()
    # the reference of the track window and the new timeline (the sliding windows' rows go)
    blob["predictor"]["reference"] = model.reference_probabilities()
    diff = _save_checked(blob, out)
    return {"date": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - t0, 1),
            "curve": {k: v for k, v in cfg.to_dict().items() if k not in ("mean", "std")},
            "grid": grid, "self_check_difference": diff}


def _save_checked(blob: dict, out) -> float:
    """Write the model-file dict ``blob`` to ``out`` atomically, once a copy of it loads back
    and passes its self-check; returns the self-check's difference."""
    from pathlib import Path

    with atomic_path(Path(out), suffix=".pt") as tmp:
        save_checkpoint(tmp, blob)
        return UnifiedModel.from_blob(load_checkpoint(tmp), path=tmp).check()


def _medley_crossfade(ds, info_name: str) -> float:
    """The medleys' crossfade (s), from the medley folder named in the frames' manifest."""
    import json
    from pathlib import Path

    for t in ds.tracks[:1]:
        info = Path(t.path).resolve().parent.parent / info_name
        if info.is_file():
            return float(json.loads(info.read_text())["config"]["crossfade"])
    raise ValueError(f"the medleys' {info_name} is not beside their audio; rebuild them with merkit medleys")


__all__ = ["DEFAULT_CORPORA", "DEFAULT_RECIPE", "FP16_LIMIT", "calibrate", "calibrated_model", "fit_timeline",
           "fp16_change", "hear_once", "train_default"]
