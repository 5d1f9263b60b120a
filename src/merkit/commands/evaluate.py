"""merkit evaluate CHECKPOINT --data DIR: metrics of a trained model; or RUN_DIR: its table.

With a checkpoint (``best.pt``, or a seed folder holding one) and ``--data``, the model predicts
the chosen part of the data (by default the test tracks recorded in the checkpoint; ``--subset
all`` for another dataset) and the metrics of every head are printed. With a run folder and no
``--data``, the stored mean ± std table of ``merkit train`` is printed.
"""
from __future__ import annotations

from . import COMMANDS
from ._args import add_old_spelling

import json
import logging
import math
from pathlib import Path
from ..feature_cache import load_corpus, load_features
from ..outputs import check_file
from ..models import load_model

log = logging.getLogger(__name__)

SUBSETS = ("test", "val", "train", "all")


def register(sub) -> None:
    p = sub.add_parser("evaluate", help=COMMANDS['evaluate'],
                       description=__doc__.split("\n", 1)[1].strip())
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="best.pt / last.pt, a seed folder or a run folder")
    p.add_argument("--data", metavar="DIR|DATASET",
                   help="feature folder (Memo2496 layout), or emopia | emotify | synthetic (cached features)")
    p.add_argument("--subset", choices=SUBSETS, default="test",
                   help="tracks to evaluate: the checkpoint's test/val/train tracks, or all labelled "
                        "tracks of --data (default: test)")
    p.add_argument("--batch-size", type=int, default=512, help="prediction batch size")
    p.add_argument("-o", "--output", metavar="JSON", help="also write the metrics here")
    add_old_spelling(p, "--out", "output")
    p.add_argument("--force", action="store_true",
                   help="let --out replace another kind of merkit output (never anything merkit did not write)")
    p.set_defaults(func=run)


def _find_checkpoint(path: Path) -> Path:
    if path.is_dir():
        for name in ("best.pt", "model.pt", "model.skops", "model.pkl"):  # a network, or a classical model (.pkl: refused)
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path}: no best.pt, model.pt or model.skops here (a run folder needs no "
                                "--data: it prints its table)")
    return path


def _load_trained(ckpt_path: Path):
    """``(model, data_info, train_config)`` of a network checkpoint or of a classical model
    (``model.skops``, whose data description is in the ``results.json`` beside it)."""
    if ckpt_path.suffix in (".skops", ".pkl"):
        from ..models.classical import ClassicalModel

        model = ClassicalModel.load(ckpt_path)
        res_path = ckpt_path.parent / "results.json"
        if not res_path.is_file():
            raise FileNotFoundError(f"{res_path}: not found; it records which tracks {ckpt_path} was tested on")
        res = json.loads(res_path.read_text())
        return model, res.get("data_info") or {}, res["config"]["train"]
    from ..checkpoint import load_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    return load_model(ckpt_path), ckpt["data_info"], ckpt["train_config"]


def format_metrics(metrics: dict[str, dict[str, float]], title: str = "") -> str:
    names = list(next(iter(metrics.values())))
    lines = [title] if title else []
    lines.append(f"{'head':<10}" + "".join(f"{m.upper():>9}" for m in names))
    for head, row in metrics.items():
        lines.append(f"{head:<10}" + "".join(f"{row[m]:>9.4f}" if math.isfinite(row[m]) else f"{'n/a':>9}"
                                             for m in names))
    return "\n".join(lines)


def evaluate_checkpoint(ckpt_path, data: str, *, subset: str = "test", batch_size: int = 512) -> dict:
    """Metrics ``{head: {acc, f1, auc}}`` of a checkpoint on a feature folder, with the task
    (label, threshold) stored in the checkpoint."""
    import numpy as np

    from ..data.splits import drop_nonfinite, task_labels
    from ..evaluation.protocol import head_metrics
    from ..models.inference import predict_heads

    ckpt_path = _find_checkpoint(Path(ckpt_path))
    kind = _kind(ckpt_path)
    if kind == "unified":
        return evaluate_unified(ckpt_path, data, subset=subset)
    if kind == "dsaml":
        return evaluate_dynamic(ckpt_path, data, subset=subset)
    model, info, train_cfg = _load_trained(ckpt_path)
    task, threshold = info.get("task", train_cfg["label"]), info.get("threshold", 0.0)
    fs, bad = drop_nonfinite(load_features(data))
    if bad:
        log.warning("%s: skipping %d track(s) with non-finite features (e.g. %s)", data, len(bad), bad[0])
    idx, y = task_labels(fs, task, threshold)
    if train_cfg.get("regression"):  # the same tracks, with their continuous labels
        y = fs.labels(task)[idx].astype(np.float32)
    if subset != "all":
        wanted = info.get("track_ids", {}).get(subset)
        if not wanted:
            raise ValueError(f"{ckpt_path}: records no {subset} tracks; use --subset all")
        pos = {fs.tracks[i].track_id: k for k, i in enumerate(idx)}
        missing = [t for t in wanted if t not in pos]
        if missing:
            raise ValueError(f"{data}: {len(missing)} of the checkpoint's {len(wanted)} {subset} tracks "
                             f"are missing or unlabelled (e.g. {missing[0]!r}); use --subset all for "
                             "another dataset")
        sel = np.array([pos[t] for t in wanted], dtype=np.int64)
        idx, y = idx[sel], y[sel]
    if len(idx) == 0:
        raise ValueError(f"{data}: no track with a known {task!r} label")
    try:
        probs = predict_heads(model, fs.mel[idx], fs.coch[idx], batch_size=batch_size)
    except ValueError as e:
        raise ValueError(f"{data}: features do not fit {ckpt_path}: {e}") from None
    return {"checkpoint": str(ckpt_path), "data": str(data), "subset": subset, "task": task,
            "n_tracks": int(len(idx)), "metrics": head_metrics(y, probs)}


def _kind(ckpt_path: Path) -> str | None:
    """A model file's family (``damer``, ``unified``, ``dsaml``, ...); None for a classical model."""
    if ckpt_path.suffix in (".skops", ".pkl"):
        return None
    from ._runs import _model_kind

    return _model_kind(ckpt_path)  # None for an unreadable file: the loader below gives the full error


def evaluate_unified(ckpt_path: Path, data: str, *, subset: str = "test") -> dict:
    """A unified model's metrics on one or more feature folders (comma-separated), each with
    its corpus protocol's ``subset`` for the seed the model was trained with (the same split
    training used: :func:`merkit.data.multi_corpus.corpus_splits`), or ``all`` its tracks."""
    import numpy as np

    from ..data.multi_corpus import corpus_splits
    from ..evaluation.unified_eval import corpus_metrics
    from ..models.unified import load_unified
    from ..checkpoint import load_checkpoint
    from ..training.unified_fit import predict_corpus

    ckpt = load_checkpoint(ckpt_path)
    net = load_unified(ckpt)
    seed = int(ckpt["train_config"].get("seed", 0))
    metrics, n = {}, 0
    for spec in (s.strip() for s in str(data).split(",") if s.strip()):
        c = load_corpus(spec, tuple(net.cfg.inputs))
        if c.x.shape[1] != net.cfg.input_dim:
            raise ValueError(f"{spec}: {c.x.shape[1]} input values per track, but {ckpt_path} takes "
                             f"{net.cfg.input_dim}")
        idx = np.arange(len(c)) if subset == "all" else getattr(corpus_splits(c, seed), subset)
        if len(idx) == 0:
            raise ValueError(f"{spec}: no {subset} tracks")
        metrics[c.name] = corpus_metrics(c, idx, predict_corpus(net, c.x[idx]))
        n += len(idx)
    return {"checkpoint": str(ckpt_path), "data": str(data), "subset": subset, "task": "unified",
            "seed": seed, "n_tracks": int(n), "metrics": metrics}


def evaluate_dynamic(ckpt_path: Path, data: str, *, subset: str = "test") -> dict:
    """A DSAML model's per-song metrics on a `merkit extract-dynamic` folder (its tracks marked
    ``subset``, or all of them)."""
    import numpy as np

    from ..dynamic_features import load_dynamic
    from ..predictors.dynamic import DynamicModel
    from ..checkpoint import load_checkpoint
    from ..training.dynamic_fit import predict, song_metrics, targets

    net = DynamicModel.from_blob(load_checkpoint(ckpt_path), path=ckpt_path).net
    ds = load_dynamic(data)
    split = np.array([t.split for t in ds.tracks])
    idx = np.arange(len(split)) if subset == "all" else np.flatnonzero(split == subset)
    if len(idx) == 0:
        raise ValueError(f"{data}: no tracks marked {subset!r}; use --subset all")
    pred = predict(net, np.asarray(ds.frames)[idx], np.asarray(ds.global_)[idx])
    return {"checkpoint": str(ckpt_path), "data": str(data), "subset": subset, "task": "dynamic",
            "n_tracks": int(len(idx)), "metrics": {"curve": song_metrics(pred, targets(ds, idx))}}


def format_result(res: dict) -> str:
    """The printed table of :func:`evaluate_checkpoint`'s result, for every family."""
    title = f"{res['checkpoint']} on {res['data']} ({res['subset']}, {res['n_tracks']} tracks, task {res['task']})"
    if res["task"] == "unified":  # each corpus has its own metrics
        lines = [title, "| corpus | metric | value |", "|---|---|--:|"]
        for corpus, ms in res["metrics"].items():
            lines += [f"| {corpus} | {m} | {v:.4f} |" for m, v in sorted(ms.items())]
        return "\n".join(lines)
    return format_metrics(res["metrics"], title=title)


def run_table(path: Path) -> str:
    """The stored table of a finished run folder (every family)."""
    res = json.loads((path / "results.json").read_text())
    if "table" in res:
        return res["table"]
    test = res.get("test")
    if isinstance(test, list) and test:  # a unified / DSAML run from before the table was stored
        if isinstance(next(iter(test[0].values())), dict):
            from ._runs import unified_table

            return unified_table(test)
        from ._runs import dynamic_table

        return dynamic_table(test)
    if isinstance(test, dict) and "seed" in res:
        return format_metrics(test, title=f"{path}: test metrics (seed {res['seed']})")
    raise ValueError(f"{path / 'results.json'}: holds no table of test metrics")


def run(args) -> int:
    from ..training.run_files import write_json

    path = Path(args.checkpoint)
    if args.data is None:
        if path.is_dir() and (path / "results.json").is_file():
            print(run_table(path))
            return 0
        raise ValueError(f"{path}: --data is required (only a finished run folder prints without it)")
    if args.output:
        check_file(args.output, flag="-o", kind="metrics", inputs=[path, args.data], force=args.force)
    res = evaluate_checkpoint(path, args.data, subset=args.subset, batch_size=args.batch_size)
    print(format_result(res))
    if args.output:
        write_json(Path(args.output), res)
    return 0
