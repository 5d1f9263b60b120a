"""The CNN baselines' objective (residual CNN, short-chunk ResNet): the supervised loss on
augmented batches."""
from __future__ import annotations

import torch

from .augment import augment
from .objective import Batch, Objective, supervised_loss


class CNNObjective(Objective):
    """Supervised loss (:func:`supervised_loss`: CE, or MSE for one output) on batches
    augmented by :func:`merkit.training.augment.augment` (a circular time shift, a time mask and
    a frequency mask) when ``cfg.augment`` and the model is in training mode."""

    terms = ("loss",)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        mel, coch = batch.mel, batch.coch
        if self.cfg.augment and self.model.training:
            mel, coch = augment(mel, coch, self.model.norm)
        logits = self.forward(mel, coch).head_logits()
        total = sum(supervised_loss(z, batch.y) for z in logits.values())
        return total, total.detach().float().reshape(1), logits


__all__ = ["CNNObjective"]
