"""Style-Anchored Memory Learning state (SAML, paper §IV-D): the memory queue and its key encoder.

The queue holds the last ``K = 512`` L2-normalised fused features with their labels, written
through a circular pointer after each optimisation step (Eq. 18, Algorithm 1 line 18); the
supervised InfoNCE against it is :func:`merkit.training.losses.supervised_contrastive_loss`.

**What "momentum 0.95" means here.** The paper gives the momentum without defining it. We read it
as in MoCo (He et al. 2020), the design a queue of past features comes from: the keys pushed
into the queue are computed by a *key encoder*, an exponential moving average of the trained
model, ``theta_k <- m * theta_k + (1 - m) * theta`` with ``m = 0.95`` after every step. Keys
then change slowly from step to step, so features enqueued several steps apart stay comparable,
which is what lets a queue stand in for a large batch. ``m = 0`` gives keys from the online
model itself (detached), at no extra cost. The key encoder runs in eval mode (no dropout).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


class MemoryQueue(nn.Module):
    """A circular buffer of ``size`` L2-normalised ``dim``-dimensional keys and their labels.

    Slots ``0 .. filled-1`` are valid; writing starts at slot 0 and wraps around. All state is in
    buffers, so it is saved with ``state_dict`` and pushing needs no host synchronisation.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dim must be >= 1, got {size} and {dim}")
        self.size, self.dim = size, dim
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @property
    def valid(self) -> torch.Tensor:
        """(K,) bool, True where a slot holds a key."""
        return torch.arange(self.size, device=self.keys.device) < self.filled

    @torch.no_grad()
    def push(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Enqueue ``keys`` (n, dim) with ``labels`` (n,), overwriting the oldest entries.

        Keys are L2-normalised here. When ``n > size`` only the last ``size`` rows are kept (as
        if they had been pushed one by one).
        """
        if keys.ndim != 2 or keys.shape[1] != self.dim or labels.shape != keys.shape[:1]:
            raise ValueError(f"push needs keys (n, {self.dim}) and labels (n,), got "
                             f"{tuple(keys.shape)} and {tuple(labels.shape)}")
        n = keys.shape[0]
        start = self.ptr + max(n - self.size, 0)
        keys, labels = keys[-self.size:], labels[-self.size:]
        idx = (start + torch.arange(keys.shape[0], device=self.keys.device)) % self.size
        self.keys.index_copy_(0, idx, F.normalize(keys.detach().to(self.keys.dtype), dim=-1))
        self.labels.index_copy_(0, idx, labels.detach().to(torch.long))
        self.ptr.copy_((self.ptr + n) % self.size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.size))

    @torch.no_grad()
    def stats(self, n_classes: int) -> dict[str, float]:
        """``queue_entropy``: entropy of the label histogram of the valid slots divided by
        ``log n_classes`` (1 = balanced, 0 = one class); ``queue_coverage``: share of the classes
        present; ``queue_fill``: share of valid slots."""
        valid = self.valid
        counts = torch.bincount(self.labels[valid], minlength=n_classes)[:n_classes].double()
        total = counts.sum().item()
        if total == 0:
            return {"queue_entropy": math.nan, "queue_coverage": 0.0, "queue_fill": 0.0,
                    "queue_dist_own": math.nan, "queue_dist_other": math.nan}
        p = counts / total
        entropy = -(torch.special.xlogy(p, p)).sum().item() / math.log(n_classes)
        return {"queue_entropy": entropy, "queue_coverage": (counts > 0).double().mean().item(),
                "queue_fill": total / self.size, **self.centroid_distances(n_classes)}

    @torch.no_grad()
    def centroid_distances(self, n_classes: int) -> dict[str, float]:
        """Mean L2 distance of the queued keys to their own class centroid (``queue_dist_own``)
        and to the centroids of the other classes present (``queue_dist_other``): SAML should
        pull the first down and keep the second up (Fig. 6c, per epoch)."""
        keys, labels = self.keys[self.valid].double(), self.labels[self.valid]
        present = torch.unique(labels)
        centroids = torch.stack([keys[labels == c].mean(0) for c in present])  # (C', D)
        d = torch.cdist(keys, centroids)  # (K, C')
        own = labels[:, None] == present[None, :]
        other = d[~own]
        return {"queue_dist_own": d[own].mean().item(),
                "queue_dist_other": other.mean().item() if other.numel() else math.nan}


class MomentumEncoder(nn.Module):
    """An EMA copy of a model that computes the queue's keys (see the module docstring)."""

    def __init__(self, model: nn.Module, momentum: float):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.encoder = copy.deepcopy(model).eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "MomentumEncoder":
        # The key encoder always runs without dropout, whatever mode the trainer sets.
        super().train(mode)
        self.encoder.eval()
        return self

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``theta_k <- m * theta_k + (1 - m) * theta``; buffers (normalisation) are copied."""
        # One multi-tensor kernel instead of ~100 small ones (the same lerp per element).
        torch._foreach_lerp_(list(self.encoder.parameters()), [p.detach() for p in model.parameters()],
                             1.0 - self.momentum)
        for bk, b in zip(self.encoder.buffers(), model.buffers()):
            bk.copy_(b)

    @torch.no_grad()
    def forward(self, *inputs):
        return self.encoder(*inputs)
