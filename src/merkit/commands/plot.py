"""merkit plot RUN_DIR [-o OUT]: PNG figures of a finished run (a seed folder, a multi-seed run
or an ablation).

Per seed folder: ``training.png`` (losses, validation metrics), ``fig5_pcl.png`` (PCL dynamics),
``fig6_saml.png`` (memory-queue entropy, class coverage, distances to class centroids) and
``fig7_tsne.png`` (t-SNE of the fused features before and after training); an ablation folder
adds ``ablation.png``. Figures of modules a run had switched off are left out.
"""
from __future__ import annotations

from . import COMMANDS
from ._args import add_old_spelling

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
from ._runs import _model_kind
from ..feature_cache import load_features
from ..config import ModelConfig, from_dict
from ..outputs import check_figure, check_folder
from ..models import build_model, get_spec, load_model

log = logging.getLogger(__name__)

# t-SNE (van der Maaten & Hinton 2008): perplexity 30 is the usual default (sklearn's); it must
# stay below the number of points, so small sets use a third of it.
TSNE_PERPLEXITY = 30.0
TSNE_MIN_POINTS = 5  # fewer points make no picture worth drawing
MAX_POINTS = 1500  # t-SNE is O(N log N) per iteration; 1500 points take a few seconds on a CPU
SUBSETS = ("test", "val", "train", "all")
PLOTS_DIR = "plots"


def register(sub) -> None:
    p = sub.add_parser("plot", help=COMMANDS['plot'], description=__doc__.split("\n", 2)[2].strip())
    p.add_argument("run_dir", metavar="RUN_DIR", help="a seed folder, a `merkit train` run or a `merkit ablate` run")
    p.add_argument("-o", "--output", metavar="DIR", help=f"output folder (default: RUN_DIR/{PLOTS_DIR})")
    add_old_spelling(p, "--out", "output")
    p.add_argument("--data", metavar="DIR", help="feature folder of the run (default: the one it was trained on)")
    p.add_argument("--subset", choices=SUBSETS, default="test",
                   help="tracks shown in the t-SNE (default: the run's test tracks)")
    p.add_argument("--max-points", type=int, default=MAX_POINTS,
                   help="at most this many tracks in the t-SNE, drawn at random (default: %(default)s)")
    p.add_argument("--no-tsne", dest="tsne", action="store_false", help="skip Fig. 7 (the slowest figure)")
    p.set_defaults(func=run)


# -- what a run saved ------------------------------------------------------------------------------
def read_history(seed_dir: Path) -> dict[str, np.ndarray]:
    """The columns of ``seed_dir/log.csv`` as float arrays (empty cells are nan)."""
    path = Path(seed_dir) / "log.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (no epoch finished yet?)")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no epochs logged")

    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return math.nan

    return {k: np.array([num(r.get(k)) for r in rows]) for k in rows[0]}


def find_seed_dirs(run_dir: Path) -> list[Path]:
    """``run_dir`` itself when it holds a ``last.pt``, else every folder below it that does."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such folder")
    if (run_dir / "last.pt").is_file():
        return [run_dir]
    found = sorted(p.parent for p in run_dir.rglob("last.pt"))
    if not found:
        models = [run_dir / "model.pt"] if (run_dir / "model.pt").is_file() else sorted(run_dir.glob("seed_*/model.pt"))
        kinds = sorted({_model_kind(p) for p in models} - {None})
        skops = sorted(run_dir.glob("model.skops")) + sorted(run_dir.glob("seed_*/model.skops"))
        if skops and not kinds:
            raise ValueError(f"{run_dir}: a classical (svm / logreg) run; merkit plot draws a training loop's "
                             f"per-epoch figures, and a classical model has no epochs: `merkit evaluate {run_dir}` "
                             "prints its test table")
        if kinds:
            raise ValueError(f"{run_dir}: a --arch {'/'.join(kinds)} run; merkit plot draws the figures of the "
                             "DAMER training loop (per-epoch losses, PCL, SAML, t-SNE), which this family does "
                             f"not log: `merkit evaluate {run_dir}` prints its test table")
        raise FileNotFoundError(f"{run_dir}: no last.pt in it or below it, so it is not a merkit run folder")
    return found


def _resolve_data(seed_dir: Path, ckpt: dict, override: str | None):
    """The FeatureSet the run was trained on: ``override``, else the checkpoint's record, else the
    ``data`` of a ``run.json`` / ``ablation.json`` above the seed folder; None if none exists."""

    candidates = [override] if override else []
    candidates.append(ckpt["data_info"].get("data"))
    for parent in (seed_dir.parent, seed_dir.parent.parent):
        for name in ("run.json", "ablation.json"):
            if (parent / name).is_file():
                try:
                    candidates.append(json.loads((parent / name).read_text()).get("data"))
                except json.JSONDecodeError:
                    pass
    for c in candidates:
        if c and Path(c).is_dir():
            return load_features(c)
        if c and c == override:
            raise FileNotFoundError(f"{c}: no such feature folder")
    return None


def _task_positions(fs, info: dict, subset: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``fs`` and task classes of the run's ``subset`` tracks, in recorded order."""
    from ..data.splits import task_labels

    idx, y = task_labels(fs, info["task"], info.get("threshold", 0.0))
    if subset == "all":
        return idx, y
    pos = {fs.tracks[i].track_id: k for k, i in enumerate(idx)}
    wanted = info.get("track_ids", {}).get(subset, [])
    missing = [t for t in wanted if t not in pos]
    if missing:
        raise ValueError(f"{fs.root}: {len(missing)} of the run's {subset} tracks are missing or unlabelled "
                         f"(e.g. {missing[0]!r}); is this the data the run was trained on?")
    sel = np.array([pos[t] for t in wanted], dtype=np.int64)
    return idx[sel], y[sel]


# -- Fig. 6: the memory queue, reconstructed ---------------------------------------------------------
def queue_trace(y_train, *, seed: int, batch_size: int, epochs: int, queue_size: int,
                n_classes: int) -> dict[str, np.ndarray]:
    """The memory queue's label statistics after every training step, rebuilt from the batch order.

    Only labels enter the statistics, and the queue receives the labelled batch after each step
    in the order the loop draws it (:func:`merkit.training.loop.epoch_generator`), so the queue's
    content at every step follows from ``y_train`` (the training part's classes in recorded
    order) alone. Returns ``step`` (1-based), ``entropy`` (of the label histogram / log C, as
    :meth:`MemoryQueue.stats`), ``coverage``, ``fill``, ``epoch_end_step`` and ``final_labels``
    (the slot contents after the last step, -1 for empty slots, to check against the checkpoint).
    """
    import torch

    from ..training.loop import batch_starts, epoch_generator

    y_train = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    n = len(y_train)
    pushed, sizes, ends = [], [], []
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=epoch_generator(seed, epoch))
        starts = batch_starts(n, batch_size)
        for s, e in zip(starts[:-1], starts[1:]):
            batch = y_train[perm[s:e]]
            pushed.append(batch)
            sizes.append(len(batch))
        ends.append(len(sizes))
    seq = torch.cat(pushed).numpy() if pushed else np.zeros(0, dtype=np.int64)
    # counts in the queue after step j = labels pushed in (cum_j - K, cum_j]
    onehot = np.zeros((len(seq) + 1, n_classes), dtype=np.int64)
    onehot[np.arange(1, len(seq) + 1), seq] = 1
    cum_counts = np.cumsum(onehot, axis=0)
    cum = np.cumsum(sizes, dtype=np.int64)
    counts = (cum_counts[cum] - cum_counts[np.maximum(cum - queue_size, 0)]).astype(np.float64)
    total = counts.sum(axis=1, keepdims=True)
    p = counts / np.maximum(total, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1) / math.log(n_classes)
    final = np.full(queue_size, -1, dtype=np.int64)
    last = np.arange(max(len(seq) - queue_size, 0), len(seq))
    final[last % queue_size] = seq[last]
    return {"step": np.arange(1, len(sizes) + 1), "entropy": ent, "coverage": (counts > 0).mean(axis=1),
            "fill": np.minimum(cum, queue_size) / queue_size, "epoch_end_step": np.array(ends),
            "final_labels": final}


def centroid_distances(keys, labels, n_classes: int) -> dict[str, np.ndarray]:
    """L2 distances of queued keys ``(K, D)`` (labels ``(K,)``, -1 = empty slot) to the mean key
    of their own class (``own``, one per key) and of every other class present (``other``)."""
    keys = np.asarray(keys, dtype=np.float64)
    labels = np.asarray(labels)
    ok = labels >= 0
    keys, labels = keys[ok], labels[ok]
    present = [c for c in range(n_classes) if (labels == c).any()]
    if not present:
        return {"own": np.zeros(0), "other": np.zeros(0)}
    centroids = np.stack([keys[labels == c].mean(axis=0) for c in present])  # (C', D)
    d = np.linalg.norm(keys[:, None, :] - centroids[None], axis=-1)  # (K, C')
    own_col = np.searchsorted(present, labels)
    own_mask = np.zeros_like(d, dtype=bool)
    own_mask[np.arange(len(keys)), own_col] = True
    return {"own": d[own_mask], "other": d[~own_mask]}


# -- Fig. 7: fused features before and after training ---------------------------------------------
def initial_model(ckpt: dict):
    """The model exactly as :func:`merkit.training.fit` initialised it for the checkpoint's seed.

    ``fit`` seeds the global torch RNG with the run's seed right before ``build_model``, then
    stores the training part's band statistics in the model's buffers (which training never
    changes). So: the same seed and config, and the buffers copied from the checkpoint. The
    caller's RNG state is left as it was.
    """
    import torch

    cfg = from_dict(ModelConfig, ckpt["model_config"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(ckpt["train_config"]["seed"]))
        model = build_model(cfg.name, cfg)
    state = ckpt["state_dict"]
    with torch.no_grad():
        for name, buf in model.named_buffers():
            buf.copy_(state[name])
    return model.eval()


def fused_features(model, mel, coch, *, batch_size: int = 256) -> np.ndarray:
    """``z_fuse (N, D_f)`` of raw features ``mel (N, n_mels, T)``, ``coch (N, n_coch, T)``, eval mode."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(mel), batch_size):
            # np.array copies: a read-only memory map cannot back a tensor
            m = torch.from_numpy(np.array(mel[s:s + batch_size], dtype=np.float32))
            c = torch.from_numpy(np.array(coch[s:s + batch_size], dtype=np.float32))
            out.append(model(m, c).z_fuse.float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def tsne_2d(x: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """``(N, D) -> (N, 2)`` with scikit-learn's t-SNE (PCA initialisation, fixed seed)."""
    from sklearn.manifold import TSNE

    n = len(x)
    if n < TSNE_MIN_POINTS:
        raise ValueError(f"t-SNE needs at least {TSNE_MIN_POINTS} points, got {n}")
    perplexity = min(TSNE_PERPLEXITY, (n - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        np.asarray(x, dtype=np.float64))


# -- one seed folder, a whole run ----------------------------------------------------------------------
def plot_seed(seed_dir: str | Path, out_dir: str | Path, *, data: str | None = None, tsne: bool = True,
              subset: str = "test", max_points: int = MAX_POINTS) -> list[Path]:
    """Write the figures of one seed folder into ``out_dir``; the paths written."""
    from .. import plots
    from ..checkpoint import load_checkpoint

    seed_dir, out_dir = Path(seed_dir), Path(out_dir)
    if not (seed_dir / "results.json").is_file():
        log.warning("%s: no results.json, so the run is unfinished; plotting the epochs so far", seed_dir)
    history = read_history(seed_dir)
    last = load_checkpoint(seed_dir / "last.pt")
    tcfg, info = last["train_config"], last["data_info"]
    n_classes = int(info.get("n_classes") or last["model_config"]["n_classes"])
    written = [plots.save_figure(plots.figure_training(history, title=f"Training curves: {seed_dir}"),
                                 out_dir / "training.png")]
    if tcfg.get("use_pcl", True) and "pcl_conf_mean" in history:
        written.append(plots.save_figure(plots.figure_pcl(history), out_dir / "fig5_pcl.png"))
    fs = None
    state = last["train_state"]
    # DAMER's queue: in the objective's state (older runs kept it at the top level)
    queue = state.get("objective", state).get("queue")
    needs_data = tsne or (tcfg.get("use_saml", True) and queue is not None)
    if needs_data:
        fs = _resolve_data(seed_dir, last, data)
        if fs is None:
            log.warning("%s: the feature folder it was trained on is not found (pass --data); "
                        "drawing the per-epoch queue statistics and no t-SNE", seed_dir)

    if tcfg.get("use_saml", True) and queue is not None:
        trace = None
        if fs is not None:
            _, y_train = _task_positions(fs, info, "train")
            trace = queue_trace(y_train, seed=int(tcfg["seed"]), batch_size=int(tcfg["batch_size"]),
                                epochs=len(history["epoch"]), queue_size=int(tcfg["queue_size"]),
                                n_classes=n_classes)
            saved = queue["labels"].numpy()
            if not np.array_equal(trace["final_labels"], saved):
                log.warning("%s: the queue rebuilt from the batch order does not match the checkpoint's "
                            "(has the training loop changed?); drawing the per-epoch statistics", seed_dir)
                trace = None
        dist = centroid_distances(queue["keys"].numpy(), queue["labels"].numpy(), n_classes)
        written.append(plots.save_figure(plots.figure_saml(trace, dist, history=history), out_dir / "fig6_saml.png"))

    fused = getattr(get_spec(last["kind"]).model_class(), "fused_features", False)
    if tsne and fs is not None and not fused:
        log.info("%s: a %s network has no fused features (z_fuse); no t-SNE", seed_dir, last["kind"])
    elif tsne and fs is not None:
        if not (seed_dir / "best.pt").is_file():
            log.warning("%s: no best.pt; no t-SNE", seed_dir)
        else:
            written.append(_tsne_figure(seed_dir, fs, info, subset, max_points, out_dir, n_classes))
    return written


def _tsne_figure(seed_dir: Path, fs, info: dict, subset: str, max_points: int, out_dir: Path,
                 n_classes: int) -> Path:
    from .. import plots
    from ..checkpoint import load_checkpoint

    best = load_checkpoint(seed_dir / "best.pt")
    seed = int(best["train_config"]["seed"])
    idx, y = _task_positions(fs, info, subset)
    if len(idx) > max_points:  # a fixed random subset, so before and after show the same tracks
        keep = np.sort(np.random.default_rng(seed).choice(len(idx), size=max_points, replace=False))
        idx, y = idx[keep], y[keep]
    order = np.argsort(idx, kind="stable")  # sorted reads are fast on a memory map
    idx, y = idx[order], y[order]
    mel, coch = np.asarray(fs.mel[idx]), np.asarray(fs.coch[idx])
    z0 = fused_features(initial_model(best), mel, coch)
    z1 = fused_features(load_model(seed_dir / "best.pt"), mel, coch)
    names = plots.class_names(info.get("task", ""), n_classes)
    fig = plots.figure_tsne(tsne_2d(z0, seed=seed), tsne_2d(z1, seed=seed), y, names=names,
                            title=f"t-SNE of z_fuse, {len(idx)} {subset} tracks (Fig. 7)")
    return plots.save_figure(fig, out_dir / "fig7_tsne.png")


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None, **kwargs) -> dict:
    """Figures of every seed folder in ``run_dir`` (mirrored under ``out_dir``, default
    ``run_dir/plots``) and, for an ablation, of its table. A seed folder that fails is reported
    and skipped. Returns ``{"written": [paths], "failed": {seed_dir: error}}``."""
    from .. import plots

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / PLOTS_DIR
    written, failed = [], {}
    for seed_dir in find_seed_dirs(run_dir):
        if out_dir in seed_dir.parents:
            continue
        rel = seed_dir.relative_to(run_dir)
        try:
            written += plot_seed(seed_dir, out_dir / rel, **kwargs)
        except (ValueError, FileNotFoundError, KeyError) as e:
            log.error("%s: skipped (%s)", seed_dir, e)
            failed[str(seed_dir)] = str(e)
    res_path = run_dir / "results.json"
    if res_path.is_file():
        try:
            res = json.loads(res_path.read_text())
        except json.JSONDecodeError as e:
            res = {}
            failed[str(res_path)] = f"not valid JSON ({e})"
        if "rows" in res:  # an ablation
            written.append(plots.save_figure(plots.figure_ablation(res), out_dir / "ablation.png"))
    return {"written": [str(p) for p in written], "failed": failed}


FIGURES = ("training.png", "fig5_pcl.png", "fig6_saml.png", "fig7_tsne.png")


def check_plot_outputs(run_dir: Path, out_dir: Path | None) -> None:
    """Before any figure is drawn: the output folder is usable and no PNG of the run would
    replace an image merkit did not make (:mod:`merkit.outputs`)."""

    out_dir = Path(out_dir) if out_dir is not None else Path(run_dir) / PLOTS_DIR
    check_folder(out_dir, flag="-o")
    targets = [out_dir / "ablation.png"]
    for seed_dir in find_seed_dirs(Path(run_dir)):
        if out_dir not in seed_dir.parents:
            targets += [out_dir / seed_dir.relative_to(run_dir) / f for f in FIGURES]
    for t in targets:
        check_figure(t, flag="-o")


def run(args) -> int:
    if args.max_points < TSNE_MIN_POINTS:
        raise ValueError(f"--max-points must be at least {TSNE_MIN_POINTS}, got {args.max_points}")
    check_plot_outputs(Path(args.run_dir), args.output)
    out = plot_run(args.run_dir, args.output, data=args.data, tsne=args.tsne, subset=args.subset,
                   max_points=args.max_points)
    for p in out["written"]:
        print(p)
    if out["failed"]:
        print(f"{len(out['failed'])} folder(s) failed: " + "; ".join(f"{k}: {v}" for k, v in out["failed"].items()))
        return 1
    return 0
