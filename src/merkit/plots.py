"""Figures of a training run: ``plot_*(data, ax=None) -> Axes`` draw one panel each, and
``figure_*`` put the panels of one paper figure together.

* :func:`figure_training` - losses and validation metrics per epoch
* :func:`figure_pcl` - paper Fig. 5: PCL confidence and reliability (mean ± std), mask ratio,
  pseudo-label strength, temperature tau and threshold theta per epoch
* :func:`figure_saml` - paper Fig. 6: memory-queue label entropy and class coverage per step,
  L2 distances of the queued keys to the class centroids
* :func:`figure_tsne` - paper Fig. 7: t-SNE of the fused features before and after training
* :func:`plot_ablation` - the ablation table (Table V) as bars

Figures are plain :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas: pyplot's
global state and display backends are never touched, so plotting works headless and in threads.
``history`` arguments map a column name of a run's ``log.csv`` to its values per epoch (missing
columns are left out of a panel). What the figures are computed from is in
:mod:`merkit.commands.plot`.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .data.manifest import QUADRANT_WORDS
from .results import FileResult, Prediction, quadrant_point
from .outputs import atomic_path, check_figure, png_metadata

# Screen-and-print size: 150 dpi keeps 7-inch-wide panels sharp in a PDF and small on disk.
DPI = 150
PANEL_SIZE = (5.0, 3.6)  # inches per panel
LOSS_COLUMNS = {"loss": "total (Eq. 22)", "loss_cls": "L_cls", "loss_pl": "L_PL", "loss_js": "JS views",
                "loss_cont": "L_cont", "val_loss": "val NLL (inference head)"}
VAL_COLUMNS = {"train_acc": "train ACC", "val_acc": "val ACC", "val_f1": "val F1", "val_auc": "val AUC"}
CLASS_NAMES = {"a": ("low arousal", "high arousal"), "v": ("negative valence", "positive valence"),
               "quadrant": ("Q1 (+V +A)", "Q2 (-V +A)", "Q3 (-V -A)", "Q4 (+V -A)")}


def _ax(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    return Figure(figsize=PANEL_SIZE, layout="constrained").add_subplot()


def _xy(history: Mapping[str, Sequence[float]], key: str, x: str = "epoch") -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(history[key], dtype=np.float64)
    xs = np.asarray(history[x], dtype=np.float64) if x in history else np.arange(1, len(y) + 1, dtype=np.float64)
    return xs, y


def _finish(ax: Axes, title: str, xlabel: str, ylabel: str, *, legend: bool = True) -> Axes:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return ax


def _integer_epochs(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def class_names(task: str, n_classes: int) -> list[str]:
    names = CLASS_NAMES.get(task, ())
    return list(names) if len(names) == n_classes else [f"class {k}" for k in range(n_classes)]


# -- training curves -------------------------------------------------------------------------------
def plot_lines(history: Mapping[str, Sequence[float]], columns: Mapping[str, str], ax: Axes | None = None, *,
               title: str = "", ylabel: str = "", x: str = "epoch", mark_best: bool = False) -> Axes:
    """One line per column of ``history`` that is present (label: ``columns[name]``) over ``x``.
    ``mark_best``: a dotted vertical line at the selected epoch (last ``best_epoch`` value)."""
    ax = _ax(ax)
    for key, label in columns.items():
        if key in history:
            ax.plot(*_xy(history, key, x), marker="o", markersize=3, label=label)
    if mark_best and "best_epoch" in history and len(history["best_epoch"]):
        best = float(history["best_epoch"][-1])
        if math.isfinite(best) and best > 0:
            ax.axvline(best, color="0.4", linestyle=":", label=f"selected epoch {best:g}")
    _integer_epochs(ax)
    return _finish(ax, title, x, ylabel)


def plot_losses(history, ax: Axes | None = None) -> Axes:
    """Training losses per epoch (the total of Eq. 22 and its unweighted terms) and the
    validation NLL of the inference head."""
    return plot_lines(history, LOSS_COLUMNS, ax, title="Training losses", ylabel="loss (mean per sample)")


def plot_metrics(history, ax: Axes | None = None) -> Axes:
    """Training accuracy and validation ACC / F1 / AUC of the inference head per epoch."""
    ax = plot_lines(history, VAL_COLUMNS, ax, title="Accuracy and validation metrics", ylabel="score",
                    mark_best=True)
    return ax


# -- Fig. 5: PCL dynamics --------------------------------------------------------------------------
def plot_band(history, mean_key: str, std_key: str, ax: Axes | None = None, *, label: str = "",
              color=None, clip: tuple[float, float] | None = None) -> Axes:
    """``history[mean_key]`` as a line with a ± ``history[std_key]`` band, cut to ``clip`` (the
    quantity's range) when given."""
    ax = _ax(ax)
    x, m = _xy(history, mean_key)
    (line,) = ax.plot(x, m, marker="o", markersize=3, label=f"{label} (mean)", color=color)
    if std_key in history:
        s = np.asarray(history[std_key], dtype=np.float64)
        lo, hi = m - s, m + s
        if clip is not None:
            lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, label=f"{label} (± std)")
    return ax


def plot_pcl_confidence(history, ax: Axes | None = None) -> Axes:
    """Fig. 5a: confidence ``c = r max p_fuse`` (Eq. 15) and reliability ``r = exp(-JS)`` (Eq. 13)."""
    ax = _ax(ax)
    # c is in [0, 1] and r = exp(-JS) in [1/2, 1] (JS <= log 2): bands stay inside.
    plot_band(history, "pcl_conf_mean", "pcl_conf_std", ax, label="confidence c", clip=(0.0, 1.0))
    plot_band(history, "pcl_rel_mean", "pcl_rel_std", ax, label="reliability r", clip=(0.5, 1.0))
    _integer_epochs(ax)
    return _finish(ax, "PCL confidence and reliability", "epoch", "value")


def plot_pcl_selection(history, ax: Axes | None = None) -> Axes:
    """Fig. 5b: share of samples with ``c >= theta`` and the mean pseudo-label weight ``r [c >= theta]``."""
    ax = plot_lines(history, {"pcl_mask_ratio": "mask ratio (c ≥ θ)",
                              "pcl_strength": "pseudo-label strength (mean r·[c ≥ θ])"}, ax,
                    title="PCL selection", ylabel="share of samples")
    ax.set_ylim(-0.02, 1.02)
    return ax


def plot_pcl_schedule(history, ax: Axes | None = None) -> Axes:
    """Fig. 5c: temperature tau and threshold theta of each epoch (Algorithm 1, lines 3-5)."""
    return plot_lines(history, {"tau": "temperature τ", "theta": "threshold θ"}, ax,
                      title="PCL schedule", ylabel="value")


# -- Fig. 6: SAML ----------------------------------------------------------------------------------
def plot_queue_trace(trace: Mapping[str, Sequence[float]], key: str, ax: Axes | None = None, *,
                     epoch_values: Sequence[float] | None = None, title: str = "", ylabel: str = "") -> Axes:
    """``trace[key]`` per optimisation step (``trace["step"]``), with dotted epoch boundaries
    (``trace["epoch_end_step"]``) and, when given, the per-epoch values logged by the run drawn
    as markers at the epoch ends (they must sit on the line)."""
    ax = _ax(ax)
    steps = np.asarray(trace["step"], dtype=np.float64)
    ax.plot(steps, np.asarray(trace[key], dtype=np.float64), linewidth=1.2, label="per step")
    ends = np.asarray(trace.get("epoch_end_step", []), dtype=np.float64)
    for s in ends:
        ax.axvline(s, color="0.85", linewidth=0.8, zorder=0)
    if epoch_values is not None and len(ends):
        ax.plot(ends[:len(epoch_values)], np.asarray(epoch_values, dtype=np.float64)[:len(ends)], "o",
                markersize=4, label="end of epoch (log.csv)")
    return _finish(ax, title, "training step", ylabel)


def plot_queue_entropy(trace, ax: Axes | None = None, *, epoch_values=None) -> Axes:
    """Fig. 6a: entropy of the queue's label histogram / log C (1 = balanced) per step."""
    ax = plot_queue_trace(trace, "entropy", ax, epoch_values=epoch_values,
                          title="Memory-queue label entropy", ylabel="normalised entropy")
    ax.set_ylim(-0.02, 1.02)
    return ax


def plot_queue_coverage(trace, ax: Axes | None = None, *, epoch_values=None) -> Axes:
    """Fig. 6b: share of the classes present in the queue, and the share of filled slots."""
    ax = plot_queue_trace(trace, "coverage", ax, epoch_values=epoch_values,
                          title="Memory-queue class coverage", ylabel="share")
    if "fill" in trace:
        ax.plot(np.asarray(trace["step"], dtype=np.float64), np.asarray(trace["fill"], dtype=np.float64),
                linestyle="--", linewidth=1.0, label="filled slots")
        ax.legend(fontsize="small")
    ax.set_ylim(-0.02, 1.05)
    return ax


def plot_centroid_distances(dist: Mapping[str, Sequence[float]], ax: Axes | None = None, *,
                            bins: int = 30) -> Axes:
    """Fig. 6c: histograms of the L2 distances of the queued keys to their own class centroid
    (``dist["own"]``) and to the other classes' centroids (``dist["other"]``)."""
    ax = _ax(ax)
    own = np.asarray(dist["own"], dtype=np.float64)
    other = np.asarray(dist["other"], dtype=np.float64)
    both = np.concatenate([own, other])
    edges = np.histogram_bin_edges(both, bins=bins) if both.size else bins
    for values, label in ((own, "to own class centroid"), (other, "to other classes' centroids")):
        if values.size:
            ax.hist(values, bins=edges, alpha=0.55, label=f"{label} (mean {values.mean():.3f})")
    return _finish(ax, "Queue keys: L2 distance to class centroids", "L2 distance", "keys")


# -- Fig. 7: t-SNE ---------------------------------------------------------------------------------
def plot_embedding(points, labels, ax: Axes | None = None, *, names: Sequence[str] | None = None,
                   title: str = "") -> Axes:
    """2-D points ``(N, 2)`` coloured by integer class ``labels (N,)`` (one scatter per class)."""
    ax = _ax(ax)
    points = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"points must be (N, 2) with one label each, got {points.shape} and {labels.shape}")
    for k in np.unique(labels):
        sel = labels == k
        name = names[int(k)] if names is not None and 0 <= int(k) < len(names) else f"class {k}"
        ax.scatter(points[sel, 0], points[sel, 1], s=10, alpha=0.75, label=f"{name} (n={sel.sum()})")
    ax.set_xticks([])
    ax.set_yticks([])
    return _finish(ax, title, "t-SNE 1", "t-SNE 2")


# -- ablation --------------------------------------------------------------------------------------
def plot_ablation(results: Mapping, ax: Axes | None = None, *, metrics: Sequence[str] = ("acc", "f1", "auc")) -> Axes:
    """Grouped bars of mean ± std per combination (``results`` as written by
    :func:`merkit.training.ablation.run_ablation`)."""
    ax = _ax(ax)
    rows = results["rows"]
    x = np.arange(len(rows), dtype=np.float64)
    width = 0.8 / len(metrics)
    for i, m in enumerate(metrics):
        means = [r["summary"][m]["mean"] for r in rows]
        stds = [r["summary"][m]["std"] for r in rows]
        ax.bar(x + (i - (len(metrics) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=m.upper())
    ax.set_xticks(x, [r["combo"].upper().replace("+", "+\n") for r in rows], fontsize="small")
    finite = [r["summary"][m]["mean"] for r in rows for m in metrics if math.isfinite(r["summary"][m]["mean"])]
    if finite:  # zoom on the range where the rows differ
        lo = min(finite)
        ax.set_ylim(max(0.0, lo - 0.1), min(1.0, max(finite) + 0.05) + 0.02)
    head = results.get("inference_head", "")
    return _finish(ax, f"Module ablation, Table V (task {results.get('task', '?')}, {head} head, "
                       f"{len(results.get('seeds', []))} seed(s))", "modules on", "test score")


# -- whole figures ---------------------------------------------------------------------------------
def _figure(n_panels: int, title: str, *, width: float | None = None) -> tuple[Figure, list[Axes]]:
    w = width if width is not None else PANEL_SIZE[0] * n_panels
    fig = Figure(figsize=(w, PANEL_SIZE[1]), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    if title:
        fig.suptitle(title)
    return fig, list(axes)


def figure_training(history, *, title: str = "Training curves") -> Figure:
    fig, (a, b) = _figure(2, title)
    plot_losses(history, a)
    plot_metrics(history, b)
    return fig


def figure_pcl(history, *, title: str = "Progressive Confidence Labelling (Fig. 5)") -> Figure:
    fig, (a, b, c) = _figure(3, title)
    plot_pcl_confidence(history, a)
    plot_pcl_selection(history, b)
    plot_pcl_schedule(history, c)
    return fig


def figure_saml(trace, distances, *, history=None, title: str = "Style-Anchored Memory Learning (Fig. 6)") -> Figure:
    """``trace``: per-step queue statistics (or None: the per-epoch values of ``history`` are
    drawn instead); ``distances``: ``{"own", "other"}`` (or None: panel left out)."""
    history = history or {}
    per_epoch = "queue_dist_own" in history
    n = 2 + (distances is not None) + per_epoch
    fig, axes = _figure(n, title)
    if trace is not None:
        plot_queue_entropy(trace, axes[0], epoch_values=history.get("queue_entropy"))
        plot_queue_coverage(trace, axes[1], epoch_values=history.get("queue_coverage"))
    else:
        plot_lines(history, {"queue_entropy": "label entropy / log C"}, axes[0],
                   title="Memory-queue label entropy (per epoch)", ylabel="normalised entropy")
        plot_lines(history, {"queue_coverage": "class coverage", "queue_fill": "filled slots"}, axes[1],
                   title="Memory-queue class coverage (per epoch)", ylabel="share")
    if distances is not None:
        plot_centroid_distances(distances, axes[2])
    if per_epoch:
        plot_lines(history, {"queue_dist_own": "to own class centroid",
                             "queue_dist_other": "to other classes' centroids"}, axes[-1],
                   title="Queue keys: mean L2 distance to class centroids (per epoch)",
                   ylabel="L2 distance")
    return fig


def figure_tsne(before, after, labels, *, names=None, title: str = "t-SNE of the fused features z_fuse (Fig. 7)") -> Figure:
    fig, (a, b) = _figure(2, title, width=2 * PANEL_SIZE[1] + 2.5)
    plot_embedding(before, labels, a, names=names, title="before training (initialisation)")
    plot_embedding(after, labels, b, names=names, title="after training (selected model)")
    return fig


def figure_ablation(results, *, title: str = "") -> Figure:
    """The ablation bars; the panel's own title names the task, head and seeds."""
    fig, (a,) = _figure(1, title, width=max(PANEL_SIZE[0], 1.1 * len(results["rows"]) + 1.5))
    plot_ablation(results, a)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG atomically (a temporary file, then a rename), marked as merkit's
    (:func:`merkit.outputs.png_metadata`), never over an image merkit did not make."""

    path = check_figure(path)  # never over an image merkit did not make
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata=png_metadata())
    return path


# -- the timeline of one prediction (merkit predict --timeline --plot) -----------------------------
def _level(p: Prediction, dim: str) -> float:
    """A dimension on [0, 1] for plotting: the probability, or (score + 1) / 2 without one."""
    prob, score = getattr(p, dim), getattr(p, f"{dim}_score")
    return prob if prob is not None else (score + 1) / 2 if score is not None else float("nan")


def plot_timeline(result: FileResult, path: str | os.PathLike | None = None, *, title: str | None = None):
    """Two panels: P(positive valence) and P(high arousal) over time, and the path of the
    timeline on the valence-arousal plane. Saves a PNG atomically when ``path`` is given;
    returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    tl = result.timeline or []
    if not tl:
        raise ValueError(f"{result.path}: no timeline to plot (run with timeline=True)")
    t = np.array([(p.start + p.end) / 2 for p in tl])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.8, 1]})
    probs = any(p.valence is not None or p.arousal is not None for p in tl)
    ms = 3 if len(tl) < 200 else 0
    banded = any(p.valence_band is not None for p in tl)  # the 2 Hz curve: a line with its band
    ms = 0 if banded else ms
    for dim, word, colour in (("valence", "P(positive)", "tab:green"), ("arousal", "P(high)", "tab:red")):
        level = np.array([_level(p, dim) for p in tl], float)
        ax1.plot(t, level, "-o", ms=ms, label=f"{dim} " + (word if probs else "(score + 1) / 2"), color=colour)
        if banded:
            band = np.array([getattr(p, f"{dim}_band") if getattr(p, f"{dim}_band") is not None else np.nan
                             for p in tl], float)
            ax1.fill_between(t, np.clip(level - band, 0, 1), np.clip(level + band, 0, 1), color=colour, alpha=0.15,
                             lw=0, label="bands: spread of the 10 s windows in the passage" if dim == "valence" else None)
    ax1.axhline(0.5, color="0.6", lw=0.8, ls="--")
    ax1.set(xlabel="time (s)" if banded else "time (s, window centre)", ylabel="probability" if probs else "score, mapped to [0, 1]", ylim=(0, 1))
    ax1.legend(loc="upper right", fontsize=8)
    xy = np.array([quadrant_point(p) for p in tl])
    ax2.add_patch(plt.Circle((0, 0), 1, fill=False, color="0.7"))
    ax2.axhline(0, color="0.7", lw=0.8)
    ax2.axvline(0, color="0.7", lw=0.8)
    for q, (x, y) in {1: (0.5, 0.5), 2: (-0.5, 0.5), 3: (-0.5, -0.5), 4: (0.5, -0.5)}.items():
        ax2.text(x, y, f"Q{q}\n{QUADRANT_WORDS[q]}", ha="center", va="center", fontsize=7, color="0.5")
    ax2.plot(xy[:, 0], xy[:, 1], "-", color="tab:blue", lw=1, alpha=0.6)
    sc = ax2.scatter(xy[:, 0], xy[:, 1], c=t, cmap="viridis", s=18, zorder=3)
    fig.colorbar(sc, ax=ax2, label="time (s)", fraction=0.046)
    ax2.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), xlabel="valence", ylabel="arousal", aspect="equal")
    fig.suptitle(title or Path(result.path).name, fontsize=10)
    fig.tight_layout()
    if path is not None:
        check_figure(path)  # never over an image merkit did not make
        try:
            with atomic_path(path, suffix=".png") as tmp:
                fig.savefig(tmp, dpi=110, format="png", metadata=png_metadata())
        finally:
            plt.close(fig)
    return fig


__all__ = ["class_names", "plot_lines", "plot_losses", "plot_metrics", "plot_band", "plot_pcl_confidence",
           "plot_pcl_selection", "plot_pcl_schedule", "plot_queue_trace", "plot_queue_entropy",
           "plot_queue_coverage", "plot_centroid_distances", "plot_embedding", "plot_ablation",
           "figure_training", "figure_pcl", "figure_saml", "figure_tsne", "figure_ablation", "save_figure", "plot_timeline"]
