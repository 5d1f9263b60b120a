"""DAMER: Dual-view Adaptive Music Emotion Recogniser (Memo2496 paper, §IV-A and §IV-B).

::

    mel  (B, 128, T) -> normalise -> tokens (B, 128, D) --+-- L x DSAF layer --> mean --> z_mel  -> head_mel
    coch (B,  84, T) -> normalise -> tokens (B,  84, D) --+   (cross-view)   --> mean --> z_coch -> head_coch
                                                         FusionMLP([z_mel || z_coch]) --> z_fuse -> head_fused

The model only maps features to logits and embeddings; the losses, pseudo-labels and the memory
queue live in :mod:`merkit.training`. Feature normalisation (per-band mean and standard
deviation of the training part) is stored as buffers, so a loaded model takes raw features.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from .blocks import BandNormalisation, DualViewLayer, FusionMLP, TokenEmbedding, head_outputs

# Checkpoints written before the normalisation became a shared block kept its buffers at the
# top level of the state dict (``mel_mean``); they load under their new names (``norm.mel_mean``).
_LEGACY_NORM_KEYS = ("mel_mean", "mel_std", "coch_mean", "coch_std")


@dataclass
class DamerOutput:
    """Logits of the three heads ``(B, C)`` and the pooled embeddings."""

    logits_mel: torch.Tensor  # (B, C)
    logits_coch: torch.Tensor  # (B, C)
    logits_fused: torch.Tensor  # (B, C)
    z_mel: torch.Tensor  # (B, D)
    z_coch: torch.Tensor  # (B, D)
    z_fuse: torch.Tensor  # (B, D_f)

    def head_logits(self) -> dict[str, torch.Tensor]:
        return {"mel": self.logits_mel, "coch": self.logits_coch, "fused": self.logits_fused}

    def features(self) -> dict[str, torch.Tensor]:
        """The pooled embeddings, keyed like :meth:`head_logits`."""
        return {"mel": self.z_mel, "coch": self.z_coch, "fused": self.z_fuse}


def head_probabilities(out: DamerOutput) -> dict[str, torch.Tensor]:
    """Per head (``mel``, ``coch``, ``fused``) and their mean (``ensemble``): softmax
    probabilities ``(B, C)``, or the regression values ``(B,)`` of a one-output model."""
    return head_outputs(out.head_logits())


class DAMER(nn.Module):
    heads = ("mel", "coch", "fused", "ensemble")
    default_head = "ensemble"
    fused_features = True  # its output carries z_fuse (merkit plot's t-SNE, Fig. 7)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.norm = BandNormalisation(cfg.n_mels, cfg.n_coch)
        self._register_load_state_dict_pre_hook(_rename_legacy_norm)
        self.embed_mel = TokenEmbedding(cfg.n_mels, cfg.n_frames, d, mode=cfg.token_mode,
                                        pos_embedding=cfg.pos_embedding)
        self.embed_coch = TokenEmbedding(cfg.n_coch, cfg.n_frames, d, mode=cfg.token_mode,
                                         pos_embedding=cfg.pos_embedding)
        self.layers = nn.ModuleList([
            DualViewLayer(d, cfg.n_heads, cfg.ffn_mult, cfg.dropout, cross=cfg.use_dsaf,
                          fast_dropout=cfg.fast_dropout)
            for _ in range(cfg.n_layers)
        ])
        self.fusion = FusionMLP(2 * d, cfg.fusion_dim, cfg.dropout, fast_dropout=cfg.fast_dropout)
        self.head_mel = nn.Linear(d, cfg.n_classes)
        self.head_coch = nn.Linear(d, cfg.n_classes)
        self.head_fused = nn.Linear(cfg.fusion_dim, cfg.n_classes)

    def set_normalisation(self, mel_mean, mel_std, coch_mean, coch_std) -> None:
        """Store per-band statistics (each ``(bands,)``) that ``forward`` applies to raw input."""
        self.norm.set(mel_mean, mel_std, coch_mean, coch_std)

    def _check(self, mel: torch.Tensor, coch: torch.Tensor) -> None:
        c = self.cfg
        if mel.ndim != 3 or mel.shape[1:] != (c.n_mels, c.n_frames):
            raise ValueError(f"mel must be (B, {c.n_mels}, {c.n_frames}), got {tuple(mel.shape)}")
        if coch.ndim != 3 or coch.shape[1:] != (c.n_coch, c.n_frames):
            raise ValueError(f"coch must be (B, {c.n_coch}, {c.n_frames}), got {tuple(coch.shape)}")
        if mel.shape[0] != coch.shape[0]:
            raise ValueError(f"mel and coch batch sizes differ: {mel.shape[0]} vs {coch.shape[0]}")

    def forward(self, mel: torch.Tensor, coch: torch.Tensor) -> DamerOutput:
        """mel: (B, n_mels, T), coch: (B, n_coch, T) raw features -> :class:`DamerOutput`."""
        self._check(mel, coch)
        mel, coch = self.norm(mel, coch)
        h_mel, h_coch = self.embed_mel(mel), self.embed_coch(coch)  # (B, N, D), (B, M, D)
        for layer in self.layers:
            h_mel, h_coch = layer(h_mel, h_coch)
        z_mel, z_coch = h_mel.mean(dim=1), h_coch.mean(dim=1)  # (B, D) each
        z_fuse = self.fusion(torch.cat([z_mel, z_coch], dim=-1))  # (B, D_f)
        return DamerOutput(self.head_mel(z_mel), self.head_coch(z_coch), self.head_fused(z_fuse),
                           z_mel, z_coch, z_fuse)

    @torch.no_grad()
    def predict_proba(self, mel: torch.Tensor, coch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Class probabilities ``(B, C)`` per head (``mel``, ``coch``, ``fused``, ``ensemble``).

        Call ``eval()`` first for deterministic predictions (dropout off)."""
        return head_probabilities(self(mel, coch))


def _rename_legacy_norm(state_dict, prefix, *args) -> None:
    for key in _LEGACY_NORM_KEYS:
        if prefix + key in state_dict:
            state_dict[prefix + "norm." + key] = state_dict.pop(prefix + key)
