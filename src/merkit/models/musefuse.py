"""MuseFuse: Mel / cochleagram / fused branches trained with ProtoAlign, ReliaPseudo and TriDistill.

MuseFuse is the Memo2496 authors' second framework. Its public README describes the three
training modules but gives no code, loss weights or equations, so the formulas below are the
README's descriptions written out, and every choice it leaves open is marked "(our choice)".

::

    mel  (B, 128, T) -> normalise -> tokens (B, 128, D) -> L x self-attention -> mean -> z_mel  -> head_mel
    coch (B,  84, T) -> normalise -> tokens (B,  84, D) -> L x self-attention -> mean -> z_coch -> head_coch
                                                 FusionMLP([z_mel || z_coch]) -> z_fuse -> head_fused

Unlike DAMER, each view is encoded on its own (no cross-view attention; ``cfg.use_dsaf`` is
ignored): the branches meet only in the FusionMLP and through the training objective.

Objective (:class:`merkit.training.musefuse_objective.MuseFuseObjective`)::

    L = sum_{b in mel, coch, fused} CE(z_b, y) + w_proto L_proto + w_rp L_rp + w_kd L_kd

- **ProtoAlign** (:class:`PrototypeBank`, :func:`prototype_alignment_loss`): one prototype per
  class and branch, an exponential moving average of the batch's L2-normalised class means;
  ``L_proto`` pulls each labelled feature towards its class prototype.
- **ReliaPseudo** (:func:`entropy_weights`, :func:`reliability_threshold`,
  :func:`reliability_pseudo_loss`): entropy-based reliability weights and a curriculum threshold
  pick the pseudo-labels of the fused branch.
- **TriDistill** (:func:`tri_distill_loss`): symmetric distillation among the three branches.

The README gives no weights; ``w_proto``, ``w_rp`` and ``w_kd`` are :class:`merkit.config.TrainConfig`
fields (our choices, documented there). With one output per head (regression) the three heads
regress the label with MSE and the three modules are off: prototypes, pseudo-labels and
softmax distillation are defined for classes only.
"""
from __future__ import annotations

from dataclasses import replace

from ..config import ModelConfig
from .damer import DAMER, DamerOutput

BRANCHES = ("mel", "coch", "fused")


# =================================================================================================
# The network
# =================================================================================================
# The same output as DAMER's: three heads' logits and the pooled branch embeddings
# (``features()`` are what ProtoAlign works on).
MuseFuseOutput = DamerOutput


class MuseFuse(DAMER):
    """Two per-view band-token encoders, a FusionMLP and three linear heads: DAMER's network
    with self-attention within each view instead of cross-view attention (``cfg.use_dsaf`` is
    ignored), so that the views meet only in the fusion MLP, as in MuseFuse.

    ``forward(mel, coch)`` takes raw features ``(B, n_mels, T)`` and ``(B, n_coch, T)``.
    """

    # MuseFuse predicts from its fused branch; the Mel and cochleagram heads are there to be
    # distilled with it and to give each encoder its own supervision.
    default_head: str = "fused"

    def __init__(self, cfg: ModelConfig):
        super().__init__(replace(cfg, use_dsaf=False))
        self.cfg = cfg


__all__ = ["BRANCHES", "MuseFuse", "MuseFuseOutput"]
