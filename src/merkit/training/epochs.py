"""The epoch loop every torch family shares: train an epoch, score validation, keep the best
epoch, stop after ``patience`` epochs without improvement.

* :class:`EarlyStopping` is the one selection rule: the DAMER training loop
  (:mod:`.loop`, which also checkpoints, resumes and runs under DDP), the unified model
  (:mod:`.unified_fit`) and DSAML (:mod:`.dynamic_fit`) all use it. An epoch improves when its
  validation key beats the best by more than ``min_delta``; training stops once ``patience``
  epochs have passed since the best one (0: never).
* :func:`fit_epochs` runs the epochs of a family that trains in memory (minutes on a CPU, so no
  per-epoch checkpoint and no resume: a killed run is rerun) and returns the model with its best
  epoch's weights.
* :func:`optimiser_step` is one optimisation step (zero the gradients, backward, optional
  clipping, step) for the loops that do not need :class:`~merkit.training.loop.Trainer`'s AMP
  scaler.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn


@dataclass
class EarlyStopping:
    """Selection on validation: the best epoch so far and when to stop."""

    patience: int = 0  # epochs without improvement before stopping; 0: never stop early
    min_delta: float = 0.0  # a key must beat the best by more than this (first element of a tuple key)
    keep_state: bool = False  # copy the model's weights at each improvement (in-memory families)
    best_key: tuple | None = None
    best_epoch: int = 0
    best_state: dict | None = field(default=None, repr=False)

    def update(self, epoch: int, key, model: nn.Module | None = None) -> bool:
        """Record ``epoch``'s validation ``key`` (a number or a tuple compared in order, higher is
        better); True when it is the new best."""
        key = tuple(key) if isinstance(key, (tuple, list)) else (float(key),)
        if self.best_key is None:
            improved = True
        elif self.min_delta:
            improved = key[0] > self.best_key[0] + self.min_delta
        else:
            improved = key > self.best_key
        if improved:
            self.best_key, self.best_epoch = key, epoch
            if self.keep_state and model is not None:
                self.best_state = copy.deepcopy(model.state_dict())
        return improved

    def should_stop(self, epoch: int) -> bool:
        """Whether training should end before ``epoch`` (1-based) is run."""
        return bool(self.patience and self.best_key is not None and epoch - self.best_epoch > self.patience)

    def state_dict(self) -> dict:
        return {"best_key": list(self.best_key) if self.best_key is not None else None, "best_epoch": self.best_epoch}

    def load_state_dict(self, st: dict) -> None:
        self.best_key = tuple(st["best_key"]) if st.get("best_key") is not None else None
        self.best_epoch = int(st.get("best_epoch", 0))


def optimiser_step(opt: torch.optim.Optimizer, loss: torch.Tensor, *, clip: float | None = None,
                   params=None) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


@dataclass
class EpochsRun:
    best_epoch: int  # 1-based
    best_score: float
    history: list[dict]


def fit_epochs(model: nn.Module, *, epochs: int, train_epoch: Callable[[int], dict],
               validate: Callable[[int], tuple[float, dict]], stopping: EarlyStopping,
               log: Callable[[str], None] | None = None) -> EpochsRun:
    """Run up to ``epochs`` epochs: ``train_epoch(epoch)`` (model in train mode) returns the
    epoch's record (losses), ``validate(epoch)`` its validation score (higher is better) and
    metrics. Ends with the best epoch's weights loaded and the model in eval mode."""
    stopping.keep_state = True
    history: list[dict] = []
    for epoch in range(1, epochs + 1):
        if stopping.should_stop(epoch):
            break
        model.train()
        rec = {"epoch": epoch, **train_epoch(epoch)}
        score, metrics = validate(epoch)
        rec.update(score=score, val=metrics)
        history.append(rec)
        improved = stopping.update(epoch, score if math.isfinite(score) else -math.inf, model)
        if log:
            log(f"epoch {epoch}: " + " ".join(f"{k} {v:.3f}" for k, v in rec.items() if k.startswith("loss"))
                + f" | val {score:.4f}" + ("  *" if improved else ""))
    if stopping.best_state is not None:
        model.load_state_dict(stopping.best_state)
    model.eval()
    return EpochsRun(best_epoch=stopping.best_epoch, best_score=stopping.best_key[0] if stopping.best_key else -math.inf,
                     history=history)


__all__ = ["EarlyStopping", "EpochsRun", "fit_epochs", "optimiser_step"]
