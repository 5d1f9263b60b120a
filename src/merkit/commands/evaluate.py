"""merkit evaluate CHECKPOINT --data DIR: metrics of a trained model; or RUN_DIR: its table.

With a checkpoint (``best.pt``, or a seed folder holding one) and ``--data``, the model predicts
the chosen part of the data (by default the test tracks recorded in the checkpoint; ``--subset
all`` for another dataset) and the metrics of every head are printed. With a run folder and no
``--data``, the stored mean ± std table of ``merkit train`` is printed.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

SUBSETS = ("test", "val", "train", "all")


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained checkpoint, or print a run's table",
                       description=__doc__.split("\n", 1)[1].strip())
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="best.pt / last.pt, a seed folder or a run folder")
    p.add_argument("--data", metavar="DIR|DATASET",
                   help="feature folder (Memo2496 layout), or emopia | emotify | synthetic (cached features)")
    p.add_argument("--subset", choices=SUBSETS, default="test",
                   help="tracks to evaluate: the checkpoint's test/val/train tracks, or all labelled "
                        "tracks of --data (default: test)")
    p.add_argument("--batch-size", type=int, default=512, help="prediction batch size")
    p.add_argument("--out", metavar="JSON", help="also write the metrics here")
    p.add_argument("--force", action="store_true",
                   help="let --out replace another kind of merkit output (never anything merkit did not write)")
    p.set_defaults(func=run)


def _find_checkpoint(path: Path) -> Path:
    if path.is_dir():
        for name in ("best.pt", "model.skops", "model.pkl"):  # a network, or a classical model (.pkl: refused)
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path}: no best.pt or model.skops here (a run folder needs no --data: "
                                "it prints its table)")
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
    from ..models import load_model
    from ..training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    return load_model(ckpt_path), ckpt.get("data_info") or {}, ckpt["config"]["train"]


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

    from ..evaluation.protocol import drop_nonfinite, head_metrics, predict, task_labels
    from .train import load_features

    ckpt_path = _find_checkpoint(Path(ckpt_path))
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
        probs = predict(model, fs.mel[idx], fs.coch[idx], batch_size=batch_size)
    except ValueError as e:
        raise ValueError(f"{data}: features do not fit {ckpt_path}: {e}") from None
    return {"checkpoint": str(ckpt_path), "data": str(data), "subset": subset, "task": task,
            "n_tracks": int(len(idx)), "metrics": head_metrics(y, probs)}


def run(args) -> int:
    from ..training.loop import write_json

    path = Path(args.checkpoint)
    if args.data is None:
        if path.is_dir() and (path / "results.json").is_file():
            res = json.loads((path / "results.json").read_text())
            if "table" in res:
                print(res["table"])
            else:
                print(format_metrics(res["test"], title=f"{path}: test metrics (seed {res['seed']})"))
            return 0
        raise ValueError(f"{path}: --data is required (only a finished run folder prints without it)")
    if args.out:
        from ..outputs import check_file

        check_file(args.out, flag="--out", kind="metrics", inputs=[path, args.data], force=args.force)
    res = evaluate_checkpoint(path, args.data, subset=args.subset, batch_size=args.batch_size)
    title = (f"{res['checkpoint']} on {res['data']} ({res['subset']}, {res['n_tracks']} tracks, "
             f"task {res['task']})")
    print(format_metrics(res["metrics"], title=title))
    if args.out:
        write_json(Path(args.out), res)
    return 0
