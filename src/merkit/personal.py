"""Personalised emotion: tasks per listener group, first-order MAML, and head fine-tuning.

DSAML adapts to one listener from a few annotated examples, with MAML tasks built per
annotator. Emotify's rows are one listener's votes on one track, with the listener's age,
gender and mother tongue but no listener id, so a task here is a **listener group** (age band
of 10 years × gender × mother tongue): the group's own GEMS vote shares per track, mapped to
valence/arousal by :func:`merkit.data.emotify.gems_to_va`. Groups with fewer than
``min_tracks`` annotated tracks are dropped.

* :func:`listener_groups` builds the tasks from ``annotations.csv``.
* :class:`Head`: a small MLP on standardised track embeddings (musicnn) → (valence, arousal).
* :func:`fomaml`: first-order MAML (Finn et al. 2017, the first-order variant of §5.2): the
  inner loop takes ``inner_steps`` SGD steps on a task's support tracks, the outer update
  moves the initialisation along the query gradient at the adapted weights.
* :func:`adapt`: k-shot SGD from any initialisation (the population model's, or MAML's).
"""
from __future__ import annotations

import copy
import csv
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from .data.manifest import check_utf8


def _age_band(age: str) -> str | None:
    try:
        a = int(float(age))
    except ValueError:
        return None
    return f"{min(a // 10 * 10, 60)}s" if 5 <= a <= 100 else None


def listener_groups(path: str | os.PathLike, *, min_tracks: int = 40) -> dict[str, dict[int, tuple[float, float]]]:
    """group name -> {track id: (valence, arousal) of that group's votes}; groups as above."""
    from .data.emotify import GEMS, gems_to_va

    path = Path(path)
    check_utf8(path)
    votes: dict[tuple, np.ndarray] = defaultdict(lambda: np.zeros(len(GEMS)))
    counts: dict[tuple, int] = defaultdict(int)
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, skipinitialspace=True):
            band = _age_band(row.get("age", ""))
            tongue = (row.get("mother tongue") or "").strip()
            gender = (row.get("gender") or "").strip()
            if band is None or not tongue or gender not in ("0", "1"):
                continue
            try:
                v = np.array([int(row[g]) for g in GEMS], dtype=np.float64)
                tid = int(row["track id"])
            except (KeyError, ValueError):
                continue
            key = (f"{band}/{'female' if gender == '1' else 'male'}/{tongue}", tid)
            votes[key] += v
            counts[key] += 1
    groups: dict[str, dict[int, tuple[float, float]]] = defaultdict(dict)
    for (g, tid), v in votes.items():
        va = gems_to_va(dict(zip(GEMS, v / counts[(g, tid)])))
        if np.isfinite(va).all():
            groups[g][tid] = va
    return {g: t for g, t in sorted(groups.items()) if len(t) >= min_tracks}


class Head(nn.Module):
    """Standardised embedding -> (valence, arousal) in [-1, 1]."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 2), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass(frozen=True)
class MetaConfig:
    inner_steps: int = 5
    inner_lr: float = 0.1
    outer_lr: float = 1e-3
    meta_steps: int = 1500
    tasks_per_step: int = 4
    support: int = 5
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(x) - y) ** 2).mean()


def adapt(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 5, lr: float = 0.1) -> nn.Module:
    """A copy of ``model`` after ``steps`` full-batch SGD steps on (x, y)."""
    m = copy.deepcopy(model)
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        _loss(m, x, y).backward()
        opt.step()
    return m


def fit_population(x: torch.Tensor, y: torch.Tensor, *, epochs: int = 300, lr: float = 3e-3,
                   weight_decay: float = 1e-3, seed: int = 0) -> Head:
    """The population model: the head trained on every listener's labels (Adam, full batch)."""
    torch.manual_seed(seed)
    m = Head(x.shape[1])
    opt = torch.optim.Adam(m.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        _loss(m, x, y).backward()
        opt.step()
    return m


def fomaml(init: nn.Module, tasks: list[tuple[torch.Tensor, torch.Tensor]], cfg: MetaConfig = MetaConfig()) -> nn.Module:
    """First-order MAML from ``init`` over ``tasks`` [(x, y) of one group's training tracks]."""
    rng = np.random.default_rng(cfg.seed)
    meta = copy.deepcopy(init)
    opt = torch.optim.Adam(meta.parameters(), lr=cfg.outer_lr)
    for _ in range(cfg.meta_steps):
        grads = [torch.zeros_like(p) for p in meta.parameters()]
        for t in rng.choice(len(tasks), size=cfg.tasks_per_step):
            x, y = tasks[t]
            idx = rng.permutation(len(x))
            s, q = idx[:cfg.support], idx[cfg.support:]
            fast = adapt(meta, x[s], y[s], steps=cfg.inner_steps, lr=cfg.inner_lr)
            fast.zero_grad()
            _loss(fast, x[q], y[q]).backward()
            for g, p in zip(grads, fast.parameters()):
                g += p.grad / cfg.tasks_per_step
        opt.zero_grad()
        for p, g in zip(meta.parameters(), grads):
            p.grad = g
        opt.step()
    return meta


__all__ = ["listener_groups", "Head", "MetaConfig", "adapt", "fit_population", "fomaml"]
