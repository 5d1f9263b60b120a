"""What a model family optimises: the interface between the generic training loop and a model.

The loop (:mod:`merkit.training.loop`) owns the model, the optimiser, the learning-rate schedule,
the batch order, validation, model selection and checkpoints. An :class:`Objective` owns the
loss of one step and whatever state that loss carries from step to step (DAMER's memory queue,
MuseFuse's class prototypes). Adding a model means writing its ``nn.Module`` and, when plain
cross-entropy / MSE is not enough, an ``Objective`` subclass, then registering both in
:data:`merkit.models.MODELS`; the loop does not change.

Models take raw features ``(mel (B, n_mels, T), coch (B, n_coch, T))`` and return an object with
``head_logits() -> {head: (B, C)}``, where ``C = 1`` for regression.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from .distributed import batch_mean


@dataclass
class Batch:
    """One training step's data on the training device."""

    mel: torch.Tensor  # (B, n_mels, T) raw features of the labelled samples
    coch: torch.Tensor  # (B, n_coch, T)
    y: torch.Tensor  # (B,) int64 classes, or float32 targets for regression
    mel_u: torch.Tensor | None = None  # unlabelled samples (semi-supervised regime) or None
    coch_u: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return self.mel.shape[0]


def supervised_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classes (``y`` int64), MSE for one continuous output (``y`` float);
    means over the global batch (:mod:`merkit.training.distributed`)."""
    if logits.shape[-1] == 1:
        return batch_mean(F.mse_loss(logits.squeeze(-1).float(), y.float(), reduction="none"))
    return batch_mean(F.cross_entropy(logits.float(), y, reduction="none"))


class Objective:
    """Plain supervised training: the sum over heads of :func:`supervised_loss`.

    Subclasses override :meth:`loss` and, when they keep state, :meth:`after_step`,
    :meth:`epoch_stats`, :meth:`state_dict` and :meth:`load_state_dict`. ``forward`` is the
    callable that runs the model (the model itself, or a compiled wrapper of it).
    """

    #: names of the logged loss terms, "loss" (the total) first
    terms: tuple[str, ...] = ("loss",)
    #: whether the objective can use an unlabelled pool (``Batch.mel_u``)
    semi_supervised: bool = False

    def __init__(self, model: nn.Module, cfg: TrainConfig, *, n_classes: int,
                 device: torch.device, forward=None):
        self.model, self.cfg, self.n_classes, self.device = model, cfg, n_classes, device
        self.forward = forward if forward is not None else model
        self.epoch, self.n_epochs = 1, cfg.epochs

    @property
    def regression(self) -> bool:
        return self.n_classes == 1

    def start_epoch(self, epoch: int) -> dict[str, float]:
        """Called before epoch ``epoch`` (1-based, of ``cfg.epochs``); returns schedule values
        to log for the epoch (e.g. a temperature)."""
        self.epoch = epoch
        return {}

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``(total, terms, logits)``: the scalar loss to back-propagate, the detached float32
        values of :attr:`terms` ``(len(terms),)``, and the head logits of the labelled samples
        (for the training accuracy)."""
        out = self.forward(batch.mel, batch.coch)
        logits = out.head_logits()
        total = sum(supervised_loss(z, batch.y) for z in logits.values())
        return total, total.detach().float().reshape(1), logits

    def after_step(self, batch: Batch) -> None:
        """Called after each optimiser step (e.g. to update a memory queue or prototypes)."""

    def epoch_stats(self) -> dict[str, float]:
        """Statistics of the epoch just finished, for the log (then reset)."""
        return {}

    def state_dict(self) -> dict:
        """Everything needed to continue training exactly (saved in ``last.pt``)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
