"""MuseFuse's training objective: ProtoAlign, ReliaPseudo and TriDistill beside the three
branches' supervised losses (the formulas and the choices MuseFuse's README leaves open are in
:mod:`merkit.models.musefuse`, which holds the network)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.musefuse import BRANCHES
from .augment import augment
from .distributed import all_gather_rows, all_reduce_sum, batch_mean, global_denominator
from .objective import Batch, Objective, supervised_loss


# =================================================================================================
# ProtoAlign
# =================================================================================================
class PrototypeBank(nn.Module):
    """One L2-normalised prototype ``(E,)`` per class, updated by exponential moving average.

    For each class ``c`` present in a batch, with ``mu_c`` the mean of the batch's L2-normalised
    features of class ``c``::

        p_c <- normalise(m p_c + (1 - m) mu_c)      (normalise(mu_c) on the class's first batch)

    Classes absent from the batch keep their prototype. All state is in buffers (saved with
    ``state_dict``); updates need no host synchronisation.
    """

    def __init__(self, n_classes: int, dim: int, momentum: float):
        super().__init__()
        if n_classes < 1 or dim < 1:
            raise ValueError(f"need n_classes >= 1 and dim >= 1, got {n_classes} and {dim}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"prototype momentum must be in [0, 1), got {momentum}")
        self.n_classes, self.dim, self.momentum = n_classes, dim, momentum
        self.register_buffer("prototypes", torch.zeros(n_classes, dim))
        self.register_buffer("initialised", torch.zeros(n_classes, dtype=torch.bool))

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Fold a batch of ``features (B, E)`` with int ``labels (B,)`` into the prototypes.

        Rows with a non-finite feature are ignored, so one diverged step cannot poison a
        prototype for the rest of the run."""
        if features.ndim != 2 or features.shape[1] != self.dim or labels.shape != features.shape[:1]:
            raise ValueError(f"update needs features (B, {self.dim}) and labels (B,), got "
                             f"{tuple(features.shape)} and {tuple(labels.shape)}")
        f = features.detach().to(self.prototypes.dtype)
        finite = torch.isfinite(f).all(dim=1)
        f = F.normalize(torch.where(finite[:, None], f, torch.zeros_like(f)), dim=-1)
        onehot = F.one_hot(labels.long(), self.n_classes).to(f.dtype) * finite[:, None]  # (B, C)
        counts = onehot.sum(0)  # (C,)
        mean = (onehot.t() @ f) / counts.clamp_min(1.0)[:, None]  # (C, E)
        m = self.momentum
        ema = torch.where(self.initialised[:, None], m * self.prototypes + (1.0 - m) * mean, mean)
        present = counts > 0
        self.prototypes.copy_(torch.where(present[:, None], F.normalize(ema, dim=-1), self.prototypes))
        self.initialised |= present

    @torch.no_grad()
    def separation(self) -> float:
        """Mean cosine similarity between the prototypes of distinct initialised classes (lower
        means better separated classes); NaN when fewer than two classes have a prototype."""
        p = self.prototypes[self.initialised]
        k = p.shape[0]
        if k < 2:
            return math.nan
        sim = p @ p.t()
        return ((sim.sum() - sim.diagonal().sum()) / (k * (k - 1))).item()


def prototype_alignment_loss(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor,
                             valid: torch.Tensor | None = None) -> torch.Tensor:
    """ProtoAlign's pull: mean of ``1 - cos(f_i, p_{y_i})`` over the samples (our choice of
    distance: on L2-normalised vectors it is half the squared Euclidean distance, bounded in
    [0, 2], and needs no temperature).

    Parameters
    ----------
    features : (B, E) branch features (L2-normalised here).
    labels : (B,) int class of each sample.
    prototypes : (C, E) L2-normalised class prototypes; treated as constants.
    valid : (C,) bool, False for classes without a prototype yet; their samples are left out of
        the mean. ``None``: all valid.

    Returns 0 (with a gradient path) when no sample has a valid prototype.
    """
    f = F.normalize(features.float(), dim=-1)
    p = prototypes.detach().float()[labels]  # (B, E)
    dist = 1.0 - (f * p).sum(-1)
    keep = (torch.ones_like(dist) if valid is None else valid[labels].to(dist.dtype))
    return (dist * keep).sum() / global_denominator(keep.sum(), floor=1.0)


# =================================================================================================
# ReliaPseudo
# =================================================================================================
def entropy_weights(probs: torch.Tensor) -> torch.Tensor:
    """Reliability ``w = 1 - H(p) / log C`` in [0, 1] of each row of ``probs (B, C)``, ``C >= 2``:
    1 for a one-hot prediction, 0 for the uniform one. Carries no gradient."""
    c = probs.shape[-1]
    if c < 2:
        raise ValueError(f"entropy weights need at least 2 classes, got {c}")
    p = probs.detach().float()
    h = -torch.special.xlogy(p, p).sum(-1)  # 0 log 0 = 0
    return (1.0 - h / math.log(c)).clamp(0.0, 1.0)


def reliability_threshold(epoch: int, n_epochs: int, start: float, end: float) -> float:
    """The ReliaPseudo curriculum: ``start`` at epoch 1, linearly to ``end`` at epoch
    ``n_epochs`` (1-based; a one-epoch run uses ``start``)."""
    if not 1 <= epoch <= n_epochs:
        raise ValueError(f"epoch must be in 1..{n_epochs}, got {epoch}")
    rho = (epoch - 1) / (n_epochs - 1) if n_epochs > 1 else 0.0
    return start + rho * (end - start)


@dataclass
class ReliaPseudoResult:
    """The ReliaPseudo loss and its per-sample quantities (all ``(B,)`` and detached)."""

    loss: torch.Tensor  # scalar
    labels: torch.Tensor  # long, argmax p
    weights: torch.Tensor  # w = 1 - H(p) / log C
    mask: torch.Tensor  # bool, w >= theta


def reliability_pseudo_loss(logits: torch.Tensor, theta: float) -> ReliaPseudoResult:
    """``L_rp = sum_{i: w_i >= theta} w_i CE(z_i, argmax p_i) / B`` with ``p = softmax(z)``
    detached, for the fused logits ``z (B, C)``.

    Dividing by the batch size rather than by the number selected (our choice) makes the term
    grow as the curriculum admits more samples, instead of giving the few earliest
    pseudo-labels the weight of a full batch.
    """
    z = logits.float()
    p = F.softmax(z.detach(), dim=-1)
    w = entropy_weights(p)
    pseudo = p.argmax(-1)
    mask = w >= theta
    ce = F.cross_entropy(z, pseudo, reduction="none")
    loss = (w * mask.to(ce.dtype) * ce).sum() / global_denominator(torch.tensor(float(z.shape[0]), device=z.device),
                                                                   floor=1.0)
    return ReliaPseudoResult(loss, pseudo, w, mask)


# =================================================================================================
# TriDistill
# =================================================================================================
def symmetric_distill_loss(logits_a: torch.Tensor, logits_b: torch.Tensor,
                           temperature: float) -> torch.Tensor:
    """``T^2 * (KL(p_a || p_b) + KL(p_b || p_a)) / 2`` with ``p = softmax(z / T)``, mean over the
    batch. In each direction the target distribution is detached (Hinton et al. 2015's
    distillation), so ``KL(p_a || p_b)`` trains ``b`` towards ``a`` and the other term ``a``
    towards ``b``; ``T^2`` keeps the gradient scale independent of ``T`` (ibid., §2)."""
    log_a = F.log_softmax(logits_a.float() / temperature, -1)
    log_b = F.log_softmax(logits_b.float() / temperature, -1)
    # F.kl_div(input, target) = KL(target || input); summed over classes, the true KL per sample.
    kl_ab = batch_mean(F.kl_div(log_b, log_a.detach(), reduction="none", log_target=True).sum(-1))
    kl_ba = batch_mean(F.kl_div(log_a, log_b.detach(), reduction="none", log_target=True).sum(-1))
    return 0.5 * (kl_ab + kl_ba) * temperature ** 2


def tri_distill_loss(logits_fused: torch.Tensor, logits_mel: torch.Tensor, logits_coch: torch.Tensor,
                     *, temperature: float) -> torch.Tensor:
    """TriDistill: :func:`symmetric_distill_loss` of each of the three branch pairs, averaged.
    Symmetric in its three arguments and exactly 0 when all branches agree."""
    if temperature <= 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature}")
    pairs = ((logits_fused, logits_mel), (logits_fused, logits_coch), (logits_mel, logits_coch))
    return sum(symmetric_distill_loss(a, b, temperature) for a, b in pairs) / len(pairs)


# =================================================================================================
# The objective
# =================================================================================================
class MuseFuseObjective(Objective):
    """CE over the three heads + ProtoAlign + ReliaPseudo + TriDistill (module docstring).

    - ProtoAlign uses the labelled samples only (it needs true classes); the prototypes are
      updated in :meth:`after_step` from the features of the step's forward pass (detached),
      so the loss of a step pulls towards the prototypes of the steps before it. Samples of a
      class that has no prototype yet are left out.
    - ReliaPseudo labels the unlabelled batch when one is given; without an unlabelled pool it
      labels the labelled batch itself, as DAMER's Algorithm 1 does (self-training on the fused
      head's own confident predictions, a sharpening term).
    - TriDistill needs no labels and runs on every sample of the step.
    """

    terms = ("loss", "cls", "proto", "rp", "kd")
    semi_supervised = True

    def __init__(self, model, cfg, *, n_classes, device, forward=None):
        super().__init__(model, cfg, n_classes=n_classes, device=device, forward=forward)
        # Regression has no classes: the modules are off, so an unlabelled pool has no use.
        self.semi_supervised = not self.regression
        self.theta = reliability_threshold(1, cfg.epochs, cfg.rp_theta_start, cfg.rp_theta_end)
        self.banks: dict[str, PrototypeBank] = {}
        if not self.regression:
            dims = {"mel": model.cfg.dim, "coch": model.cfg.dim, "fused": model.cfg.fusion_dim}
            self.banks = {b: PrototypeBank(n_classes, dims[b], cfg.proto_momentum).to(device)
                          for b in BRANCHES}
        self._features: dict[str, torch.Tensor] | None = None
        self._reset_stats()

    def _reset_stats(self) -> None:
        # [selected, sum of weights] summed on the device (no host sync per step), and the
        # number of candidates
        self._rp_sums: torch.Tensor | None = None
        self._rp_count = 0

    def start_epoch(self, epoch: int) -> dict[str, float]:
        super().start_epoch(epoch)
        self._reset_stats()
        if self.regression:
            return {}
        self.theta = reliability_threshold(epoch, self.cfg.epochs, self.cfg.rp_theta_start,
                                           self.cfg.rp_theta_end)
        return {"rp_theta": self.theta}

    def loss(self, batch: Batch):
        cfg, n = self.cfg, batch.n
        mel, coch = batch.mel, batch.coch
        if cfg.augment and self.model.training:  # off by default (MuseFuse's README has none)
            mel, coch = augment(mel, coch, self.model.norm)
        unlabelled = batch.mel_u is not None and not self.regression
        if unlabelled:
            # One forward pass for both parts: the encoders act per sample (LayerNorm, no
            # BatchNorm), so concatenating changes nothing but the cost.
            mel, coch = torch.cat([mel, batch.mel_u]), torch.cat([coch, batch.coch_u])
        out = self.forward(mel, coch)
        all_logits = out.head_logits()
        logits = {k: v[:n] for k, v in all_logits.items()}
        l_cls = sum(supervised_loss(z, batch.y) for z in logits.values())
        zero = l_cls.new_zeros(())
        l_proto = l_rp = l_kd = zero
        if not self.regression:
            feats = {k: v[:n] for k, v in out.features().items()}
            l_proto = sum(prototype_alignment_loss(feats[b], batch.y, self.banks[b].prototypes,
                                                   self.banks[b].initialised)
                          for b in BRANCHES) / len(BRANCHES)
            self._features = {k: v.detach() for k, v in feats.items()}
            src = slice(n, None) if unlabelled else slice(0, n)
            rp = reliability_pseudo_loss(all_logits["fused"][src], self.theta)
            l_rp = rp.loss
            row = torch.stack([rp.mask.float().sum(), rp.weights.sum()])
            self._rp_sums = row if self._rp_sums is None else self._rp_sums + row
            self._rp_count += rp.mask.numel()
            l_kd = tri_distill_loss(all_logits["fused"], all_logits["mel"], all_logits["coch"],
                                    temperature=cfg.kd_temperature)
        total = l_cls + cfg.w_proto * l_proto + cfg.w_rp * l_rp + cfg.w_kd * l_kd
        terms = torch.stack([total, l_cls, l_proto, l_rp, l_kd]).detach().float()
        return total, terms, logits

    def after_step(self, batch: Batch) -> None:
        """ProtoAlign's EMA: fold the step's labelled features into the prototypes."""
        if self.regression:
            return
        if self._features is None:
            raise RuntimeError("MuseFuseObjective.after_step called before loss()")
        # Under DDP every rank folds in the features of the whole global batch, in rank order,
        # so the prototypes stay the same on all ranks and equal to one process's.
        y = all_gather_rows(batch.y)
        for b in BRANCHES:
            self.banks[b].update(all_gather_rows(self._features[b]), y)
        self._features = None

    def epoch_stats(self) -> dict[str, float]:
        """``rp_mask_ratio``: share of pseudo-label candidates selected; ``rp_weight``: their mean
        reliability weight; ``proto_sep``: mean cosine between the fused branch's prototypes of
        distinct classes."""
        if self.regression:
            return {}
        out = {"rp_mask_ratio": math.nan, "rp_weight": math.nan}
        if self._rp_sums is not None:
            sums = all_reduce_sum(torch.cat([self._rp_sums.double(),
                                             self._rp_sums.new_tensor([self._rp_count], dtype=torch.float64)]))
            selected, weight, count = sums.tolist()
            if count > 0:
                out = {"rp_mask_ratio": selected / count, "rp_weight": weight / count}
        out["proto_sep"] = self.banks["fused"].separation()
        self._reset_stats()
        return out

    def state_dict(self) -> dict:
        return {"prototypes": {b: bank.state_dict() for b, bank in self.banks.items()}}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("prototypes", {})
        if set(saved) != set(self.banks):
            raise ValueError(f"objective state holds prototypes for {sorted(saved)}, "
                             f"expected {sorted(self.banks)}")
        for b, bank in self.banks.items():
            try:
                bank.load_state_dict(saved[b])
            except RuntimeError as e:
                raise ValueError(f"prototypes of the {b} branch do not fit: {e}") from None
