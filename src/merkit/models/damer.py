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
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .blocks import DualViewLayer, FusionMLP, TokenEmbedding

# Bands whose training-set standard deviation is below this are constant (e.g. clamped at the
# log floor); dividing by a tiny std would only amplify rounding noise.
NORM_STD_FLOOR = 1e-5


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


def head_probabilities(out: DamerOutput) -> dict[str, torch.Tensor]:
    """Softmax probabilities ``(B, C)`` of each head and their mean (``"ensemble"``)."""
    probs = {k: F.softmax(v.float(), dim=-1) for k, v in out.head_logits().items()}
    probs["ensemble"] = (probs["mel"] + probs["coch"] + probs["fused"]) / 3.0
    return probs


class DAMER(nn.Module):
    heads = ("mel", "coch", "fused", "ensemble")
    default_head = "ensemble"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.embed_mel = TokenEmbedding(cfg.n_mels, cfg.n_frames, d, mode=cfg.token_mode,
                                        pos_embedding=cfg.pos_embedding)
        self.embed_coch = TokenEmbedding(cfg.n_coch, cfg.n_frames, d, mode=cfg.token_mode,
                                         pos_embedding=cfg.pos_embedding)
        self.layers = nn.ModuleList([
            DualViewLayer(d, cfg.n_heads, cfg.ffn_mult, cfg.dropout, cross=cfg.use_dsaf)
            for _ in range(cfg.n_layers)
        ])
        self.fusion = FusionMLP(2 * d, cfg.fusion_dim, cfg.dropout)
        self.head_mel = nn.Linear(d, cfg.n_classes)
        self.head_coch = nn.Linear(d, cfg.n_classes)
        self.head_fused = nn.Linear(cfg.fusion_dim, cfg.n_classes)
        for name, n in (("mel", cfg.n_mels), ("coch", cfg.n_coch)):
            self.register_buffer(f"{name}_mean", torch.zeros(n))
            self.register_buffer(f"{name}_std", torch.ones(n))

    @torch.no_grad()
    def set_normalisation(self, mel_mean, mel_std, coch_mean, coch_std) -> None:
        """Store per-band statistics (each ``(bands,)``) that ``forward`` applies to raw input."""
        for name, value in (("mel_mean", mel_mean), ("mel_std", mel_std),
                            ("coch_mean", coch_mean), ("coch_std", coch_std)):
            buf = getattr(self, name)
            value = torch.as_tensor(value, dtype=buf.dtype, device=buf.device)
            if value.shape != buf.shape:
                raise ValueError(f"{name} must have shape {tuple(buf.shape)}, got {tuple(value.shape)}")
            if name.endswith("std"):
                value = value.clamp_min(NORM_STD_FLOOR)
            buf.copy_(value)

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
        mel = (mel - self.mel_mean[:, None]) / self.mel_std[:, None]
        coch = (coch - self.coch_mean[:, None]) / self.coch_std[:, None]
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
