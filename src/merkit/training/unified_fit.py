"""Training the unified model across corpora, with optional knowledge distillation.

Each step draws ``batch_per_corpus`` training clips from every corpus (balanced sampling: a
small corpus is cycled, not drowned), and sums per head the losses of the clips labelled in
that head (masked losses):

* ``va``: mean squared error on the corpus-scaled (valence, arousal) targets;
* ``quadrant``, ``mirex``: cross-entropy;
* ``gems``: binary cross-entropy against the vote shares (soft multi-label).

Distillation (Music2Emo): a teacher per corpus (the same network trained on that corpus
alone, its training part only) gives soft labels for the categorical heads a clip lacks;
the student adds ``kd_weight`` × the temperature-scaled KL divergence (``kd_temperature``²
× KL, Hinton et al. 2015) for softmax heads, or the BCE against the teacher's probabilities for
``gems``. The epoch is chosen by the mean validation :func:`selection_score` over corpora; the
test parts are never looked at here.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.multi_corpus import Corpus, CorpusSplit, va_scale
from ..evaluation.unified_eval import corpus_metrics, selection_score
from ..models.unified import HEAD_SPECS, UnifiedConfig, UnifiedMER
from .epochs import EarlyStopping, fit_epochs, optimiser_step


@dataclass(frozen=True)
class UnifiedTrainConfig:
    epochs: int = 200
    batch_per_corpus: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 25  # epochs without a better validation score before stopping (0: never)
    kd_weight: float = 0.0  # 0: no distillation
    kd_temperature: float = 2.0
    va_weight: float = 1.0
    class_weight: float = 1.0  # the categorical heads
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    model: UnifiedMER
    best_epoch: int
    val_score: float
    val_metrics: dict[str, dict[str, float]]
    history: list[dict]
    va_scales: dict[str, list[float]]


@torch.no_grad()
def predict_corpus(model: UnifiedMER, x: np.ndarray, batch: int = 4096) -> dict[str, np.ndarray]:
    outs = [model.predict(torch.from_numpy(x[i:i + batch])) for i in range(0, len(x), batch)]
    return {h: torch.cat([o[h] for o in outs]).numpy() for h in outs[0]}


@torch.no_grad()
def _teacher_logits(teachers: dict[str, UnifiedMER], corpora: list[Corpus]) -> dict[str, dict[str, np.ndarray]]:
    """{corpus: {head: (N, C) teacher logits}} for the heads each corpus lacks."""
    out = {}
    for c in corpora:
        out[c.name] = {}
        for owner, teacher in teachers.items():
            if owner == c.name:
                continue
            teacher.eval()
            logits = teacher(torch.from_numpy(c.x))
            for h, v in logits.items():
                if h != "va" and h not in c.heads:
                    out[c.name][h] = v.numpy()
    return out


def _losses(model_out: dict[str, torch.Tensor], tgt: dict[str, torch.Tensor], cfg: UnifiedTrainConfig,
            kd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    losses = {}
    va, va_t = model_out["va"], tgt["va"]
    ok = torch.isfinite(va_t)
    if ok.any():
        losses["va"] = cfg.va_weight * F.mse_loss(va[ok], va_t[ok])
    for h in ("quadrant", "mirex"):
        if h in model_out:
            y = tgt[h]
            m = y >= 0
            if m.any():
                losses[h] = cfg.class_weight * F.cross_entropy(model_out[h][m], y[m])
    if "gems" in model_out:
        g = tgt["gems"]
        m = torch.isfinite(g)
        if m.any():
            losses["gems"] = cfg.class_weight * F.binary_cross_entropy_with_logits(model_out["gems"][m], g[m])
    T = cfg.kd_temperature
    for h, teacher in kd.items():
        if h not in model_out:
            continue
        if HEAD_SPECS[h][1] == "softmax":
            loss = F.kl_div(F.log_softmax(model_out[h] / T, -1), F.softmax(teacher / T, -1),
                            reduction="batchmean") * T * T
        else:
            loss = F.binary_cross_entropy_with_logits(model_out[h] / T, torch.sigmoid(teacher / T))
        losses[f"kd_{h}"] = cfg.kd_weight * loss
    return losses


def fit_unified(corpora: list[Corpus], splits: dict[str, CorpusSplit], model_cfg: UnifiedConfig,
                cfg: UnifiedTrainConfig = UnifiedTrainConfig(), *,
                teachers: dict[str, UnifiedMER] | None = None, log=None) -> FitResult:
    """Train on the training parts of ``corpora``; choose the epoch on their validation parts."""
    if not corpora:
        raise ValueError("no corpora to train on")
    dims = {c.x.shape[1] for c in corpora}
    if dims != {model_cfg.input_dim}:
        raise ValueError(f"corpora have input widths {sorted(dims)}, the model takes {model_cfg.input_dim}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    # heads without labels in any corpus (nor a teacher for them) are left out
    used = {h for c in corpora for h in c.heads} | {h for t in (teachers or {}).values() for h in t.cfg.heads}
    model_cfg = UnifiedConfig.from_dict({**model_cfg.to_dict(),
                                         "heads": tuple(h for h in model_cfg.heads if h in used)})
    model = UnifiedMER(model_cfg)
    train_x = np.concatenate([c.x[splits[c.name].train] for c in corpora])
    model.set_normalisation(torch.from_numpy(train_x.mean(0)), torch.from_numpy(train_x.std(0)))
    scales = {c.name: va_scale(c, splits[c.name].train) for c in corpora}
    kd_logits = _teacher_logits(teachers, corpora) if teachers and cfg.kd_weight > 0 else {}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, math.ceil(max(len(splits[c.name].train) for c in corpora) / cfg.batch_per_corpus))
    order = {c.name: rng.permutation(splits[c.name].train) for c in corpora}
    cursor = {c.name: 0 for c in corpora}

    def draw(c: Corpus) -> np.ndarray:
        n = cfg.batch_per_corpus
        out = []
        while n > 0:
            o = order[c.name]
            take = o[cursor[c.name]:cursor[c.name] + n]
            out.append(take)
            n -= len(take)
            cursor[c.name] += len(take)
            if cursor[c.name] >= len(o):
                order[c.name] = rng.permutation(splits[c.name].train)
                cursor[c.name] = 0
        return np.concatenate(out)

    def train_epoch(epoch: int) -> dict:
        sums: dict[str, float] = {}
        for _ in range(steps):
            total = 0.0
            for c in corpora:
                idx = draw(c)
                t = c.targets(idx)
                tgt = {"va": torch.from_numpy((t["va"] / scales[c.name]).astype(np.float32)),
                       "quadrant": torch.from_numpy(t["quadrant"].astype(np.int64)),
                       "mirex": torch.from_numpy(t["mirex"].astype(np.int64)),
                       "gems": torch.from_numpy(t["gems"].astype(np.float32))}
                kd = {h: torch.from_numpy(v[idx]) for h, v in kd_logits.get(c.name, {}).items()}
                losses = _losses(model(torch.from_numpy(c.x[idx])), tgt, cfg, kd)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) / steps
                total = total + sum(losses.values())
            optimiser_step(opt, total)
        return {f"loss_{k}": v for k, v in sums.items()}

    def validate(epoch: int) -> tuple[float, dict]:
        val = {c.name: corpus_metrics(c, splits[c.name].val, predict_corpus(model, c.x[splits[c.name].val]))
               for c in corpora if len(splits[c.name].val)}
        return float(np.nanmean([selection_score(c, val[c.name]) for c in corpora if c.name in val])), val

    run = fit_epochs(model, epochs=cfg.epochs, train_epoch=train_epoch, validate=validate,
                     stopping=EarlyStopping(cfg.patience), log=log)
    best = run.history[run.best_epoch - 1]
    return FitResult(model=model, best_epoch=run.best_epoch, val_score=run.best_score, val_metrics=best["val"],
                     history=run.history, va_scales={k: v.tolist() for k, v in scales.items()})


def fit_teachers(corpora: list[Corpus], splits: dict[str, CorpusSplit], model_cfg: UnifiedConfig,
                 cfg: UnifiedTrainConfig) -> dict[str, UnifiedMER]:
    """One teacher per corpus that has a categorical head: the same network on that corpus alone."""
    teachers = {}
    for c in corpora:
        if any(h != "va" for h in c.heads):
            teachers[c.name] = fit_unified([c], {c.name: splits[c.name]}, model_cfg,
                                           UnifiedTrainConfig(**{**cfg.to_dict(), "kd_weight": 0.0})).model
    return teachers


__all__ = ["UnifiedTrainConfig", "FitResult", "fit_unified", "fit_teachers", "predict_corpus"]
