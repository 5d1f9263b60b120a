"""Several corpora as one training set for the unified model: each clip's input vector and
the labels it has in each label space (the others masked), plus each corpus's splits.

Label spaces (the unified model's heads):

* ``va``: (valence, arousal), known for every corpus, each by its own map: EMOPIA's quadrant
  signs (exact), MIREX clusters by their circumplex position (:mod:`merkit.data.mirex_mood`),
  Emotify's GEMS heuristic (:mod:`merkit.data.emotify`), a V/A-rated corpus as rated. Each
  corpus's targets are divided by their standard deviation on its training part
  (:func:`va_scale`), so that one corpus's scale does not dominate the regression; the sign,
  and so the quadrant, is unchanged.
* ``quadrant``: EMOPIA's 4 quadrants; ``mirex``: the 5 MIREX clusters; ``gems``: Emotify's 9
  GEMS vote shares (soft multi-label targets).

Splits per seed (:func:`corpus_splits`): EMOPIA's official split; MIREX-like and 4Q: 5 artist-grouped
folds, fold ``seed % 5`` the test part; Emotify (no split) a 70/15/15 split stratified by
quadrant, grouped by track, drawn with the seed; other corpora their ``split`` field, else
like Emotify. Validation parts are carved from the training side only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .splits import stratified_group_split, track_groups
from .memo2496 import FeatureSet

GEMS_ORDER = ("amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power",
              "joyful_activation", "tension", "sadness")  # merkit.data.emotify.GEMS
MIREX_FOLDS = 5


@dataclass
class Corpus:
    """One corpus's inputs and labels, row-aligned with ``tracks``.

    va (N, 2) float (nan: unknown), quadrant (N,) int 0-3 (-1: none), mirex (N,) int 0-4 (-1),
    gems (N, 9) float vote shares (nan: none).
    """

    name: str
    x: np.ndarray
    va: np.ndarray
    quadrant: np.ndarray
    mirex: np.ndarray
    gems: np.ndarray
    tracks: list
    groups: np.ndarray
    feature_info: dict | None = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tracks)

    @property
    def heads(self) -> tuple[str, ...]:
        """The label spaces this corpus has labels in."""
        out = ["va"] if np.isfinite(self.va).any() else []
        if (self.quadrant >= 0).any():
            out.append("quadrant")
        if (self.mirex >= 0).any():
            out.append("mirex")
        if np.isfinite(self.gems).any():
            out.append("gems")
        return tuple(out)

    def targets(self, idx) -> dict[str, np.ndarray]:
        idx = np.asarray(idx)
        return {"va": self.va[idx], "quadrant": self.quadrant[idx], "mirex": self.mirex[idx],
                "gems": self.gems[idx]}


def assemble_inputs(views, inputs: tuple[str, ...], *, hop_seconds: float, features: dict | None = None) -> np.ndarray:
    """(N, D) float32 model input from stored views: the named views side by side.

    ``views(name)`` returns a view's (N, ...) array. ``"tonal"`` is computed from the
    ``"coch"`` view (:mod:`merkit.features.tonal`; ``hop_seconds`` is its frame hop, ``features``
    the FeatureConfig dict that made it); any other name is a pooled encoder view
    (``merkit extract --views``)."""
    parts = []
    for name in inputs:
        if name == "tonal":
            from ..features.tonal import tonal_features

            f = features or {}
            parts.append(tonal_features(np.asarray(views("coch")), hop_seconds, fmin=f.get("gt_fmin"),
                                        bins_per_octave=f.get("gt_bins_per_octave"),
                                        gt_power=f.get("gt_power", 1.0 / 3.0)))
        else:
            v = np.asarray(views(name), dtype=np.float32)
            if v.ndim != 2:
                raise ValueError(f"view {name!r} is not a pooled (N, dim) view: shape {v.shape}")
            parts.append(v)
    return np.concatenate(parts, axis=1).astype(np.float32)


def input_matrix(fs: FeatureSet, inputs: tuple[str, ...]) -> np.ndarray:
    """:func:`assemble_inputs` of a feature folder."""
    info = fs.feature_info or {}
    hop = 0.0
    if "tonal" in inputs:
        from ..features.tonal import hop_seconds_from_info

        hop = hop_seconds_from_info(info)
    return assemble_inputs(fs.view, inputs, hop_seconds=hop, features=info.get("features"))


def corpus_from_features(fs: FeatureSet, inputs: tuple[str, ...] = ("musicnn", "tonal"),
                         name: str | None = None) -> Corpus:
    """Read one feature folder's labels into the unified label spaces (see the module docstring)."""
    n = len(fs)
    sources = {t.source for t in fs.tracks}
    name = name or (sources.pop() if len(sources) == 1 else "corpus")
    va = np.stack([fs.label_v, fs.label_a], axis=1).astype(np.float64)
    quadrant = np.full(n, -1)
    mirex = np.full(n, -1)
    gems = np.full((n, len(GEMS_ORDER)), np.nan)
    for i, t in enumerate(fs.tracks):
        if t.source in ("emopia", "q4") and t.quadrant in (1, 2, 3, 4):  # manually validated quadrants
            quadrant[i] = t.quadrant - 1
        cluster = t.extra.get("cluster") if t.extra else None
        if cluster:
            mirex[i] = int(cluster) - 1
        shares = t.extra.get("gems") if t.extra else None
        if shares:
            gems[i] = [shares.get(g, np.nan) for g in GEMS_ORDER]
    return Corpus(name=name, x=input_matrix(fs, inputs), va=va, quadrant=quadrant, mirex=mirex, gems=gems,
                  tracks=list(fs.tracks), groups=track_groups(fs), feature_info=fs.feature_info)


def va_scale(corpus: Corpus, train: np.ndarray) -> np.ndarray:
    """(2,) per-dimension divisor of the corpus's V/A targets: their std on the training part
    (1 where unknown or constant)."""
    va = corpus.va[train]
    s = np.array([np.nanstd(va[:, j]) if np.isfinite(va[:, j]).sum() > 1 else 1.0 for j in range(2)])
    return np.where(np.isfinite(s) & (s > 1e-6), s, 1.0)


@dataclass
class CorpusSplit:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _strata(corpus: Corpus) -> np.ndarray:
    if (corpus.mirex >= 0).all():
        return corpus.mirex
    if (corpus.quadrant >= 0).all():
        return corpus.quadrant
    v, a = corpus.va[:, 0], corpus.va[:, 1]
    return np.where(np.isfinite(v) & np.isfinite(a), 2 * (a >= 0) + (v >= 0), -1)


def _fold_of_groups(groups: np.ndarray, y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Assign every group to one of ``k`` folds, balancing fold size and class mix greedily."""
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    rng.shuffle(uniq)
    classes = np.unique(y)
    counts = np.zeros((k, len(classes)))
    fold = {}
    # largest groups first, each to the fold that needs its classes most
    sizes = {g: np.sum(groups == g) for g in uniq}
    for g in sorted(uniq, key=lambda g: -sizes[g]):
        c = np.array([np.sum((groups == g) & (y == cl)) for cl in classes])
        score = (counts + c).sum(1) + 0.5 * np.abs(counts + c - (counts.sum(0) + c) / k).sum(1)
        f = int(np.argmin(score))
        counts[f] += c
        fold[g] = f
    return np.array([fold[g] for g in groups])


def corpus_splits(corpus: Corpus, seed: int, *, val_size: float = 0.15, test_size: float = 0.15) -> CorpusSplit:
    """Train / validation / test positions of one corpus for one seed (module docstring)."""
    n = len(corpus)
    y = _strata(corpus)
    splits = np.array([t.split for t in corpus.tracks])
    all_idx = np.arange(n)
    if corpus.name in ("mirex_mood", "q4") or ((corpus.mirex >= 0).all() and not (splits != "").any()):
        folds = _fold_of_groups(corpus.groups, y, MIREX_FOLDS, seed=0)  # folds fixed across seeds
        test = all_idx[folds == seed % MIREX_FOLDS]
        rest = all_idx[folds != seed % MIREX_FOLDS]
        tr, va = stratified_group_split(y[rest], corpus.groups[rest], val_size, seed)
        return CorpusSplit(rest[tr], rest[va], test)
    if {"train", "test"} <= set(splits):
        train, val, test = (all_idx[splits == s] for s in ("train", "val", "test"))
        if len(val) == 0:
            tr, va = stratified_group_split(y[train], corpus.groups[train], val_size, seed)
            train, val = train[tr], train[va]
        return CorpusSplit(train, val, test)
    rest, test = stratified_group_split(y, corpus.groups, test_size, seed)
    tr, va = stratified_group_split(y[rest], corpus.groups[rest], val_size / (1 - test_size), seed)
    return CorpusSplit(all_idx[rest][tr], all_idx[rest][va], all_idx[test])


__all__ = ["Corpus", "CorpusSplit", "assemble_inputs", "corpus_from_features", "corpus_splits", "input_matrix",
           "va_scale",
           "GEMS_ORDER", "MIREX_FOLDS"]
