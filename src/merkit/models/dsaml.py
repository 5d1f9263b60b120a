"""DSAML-style dynamic emotion model: valence and arousal every 0.5 s (Zhang et al., AAAI 2025).

::

    frames (B, T, 953) ──Linear──> local tokens (B, T, d)  ─┬─ windowed self-attention (|i - j| <= w)
    global (B, 1906) ──adapter──> global token (B, 1, d)  ──┴─ full self-attention over [global; tokens]
                                       fused: local + global streams, LayerNorm ──> BiLSTM ──> (V, A) per frame

* **Dual scale.** The local stream attends within ``window`` frames (default 8: ±4 s), the
  global stream over the whole sequence plus the track's global token (DSAML's ImageBind
  adapter; here the pooled musicnn embedding through a two-layer adapter). They are summed.
* **Diagonal attention loss** (optional, ``diag_weight``): the attention-weighted distance
  ``sum_j A_ij |i - j| / T`` of the global stream, averaged over rows and heads, added to the
  loss; it keeps the global stream's attention near each frame's own time.
* **Padding.** Frames past a track's end (NaN in ``frames.npy``; always a tail) are masked as
  keys, skipped by the BiLSTM (packed sequences) and get no loss; the model never sees NaN.
* **Output**: ``tanh`` of a linear map of the BiLSTM states, (B, T, 2) = (valence, arousal) on
  [-1, 1], the scale of the labels.

``DSAMLConfig(local=False, global_=False)`` is the "BiLSTM without attention" baseline.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DSAMLConfig:
    frame_dim: int = 953
    global_dim: int = 1906
    d_model: int = 128
    heads: int = 4
    window: int = 8
    lstm_hidden: int = 64
    dropout: float = 0.5  # chosen on validation medleys (bench/dynamic_grid.py)
    local: bool = True
    global_: bool = True
    diag_weight: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def local_mask(T: int, window: int, device=None) -> torch.Tensor:
    """(T, T) bool, True where attention is *not* allowed (|i - j| > window)."""
    i = torch.arange(T, device=device)
    return (i[:, None] - i[None, :]).abs() > window


class DSAML(nn.Module):
    def __init__(self, cfg: DSAMLConfig = DSAMLConfig()):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.register_buffer("f_mean", torch.zeros(cfg.frame_dim))
        self.register_buffer("f_std", torch.ones(cfg.frame_dim))
        self.register_buffer("g_mean", torch.zeros(cfg.global_dim))
        self.register_buffer("g_std", torch.ones(cfg.global_dim))
        self.frame_in = nn.Sequential(nn.Linear(cfg.frame_dim, d), nn.GELU(), nn.Dropout(cfg.dropout))
        self.adapter = nn.Sequential(nn.Linear(cfg.global_dim, d), nn.GELU(), nn.Linear(d, d))
        if cfg.local:
            self.local_attn = nn.MultiheadAttention(d, cfg.heads, dropout=cfg.dropout, batch_first=True)
        if cfg.global_:
            self.global_attn = nn.MultiheadAttention(d, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.lstm = nn.LSTM(d, cfg.lstm_hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * cfg.lstm_hidden, 2)

    def set_normalisation(self, frames: torch.Tensor, globals_: torch.Tensor) -> None:
        """Standardise inputs with training statistics (frames: (N, T, D) with NaN padding)."""
        f = frames.reshape(-1, frames.shape[-1])
        f = f[torch.isfinite(f).all(1)]
        self.f_mean.copy_(f.mean(0))
        self.f_std.copy_(f.std(0).clamp_min(1e-6))
        self.g_mean.copy_(globals_.mean(0))
        self.g_std.copy_(globals_.std(0).clamp_min(1e-6))

    def forward(self, frames: torch.Tensor, globals_: torch.Tensor, *, need_attention: bool = False):
        """frames (B, T, D) (NaN rows = padding), globals (B, G) -> (B, T, 2) and, with
        ``need_attention``, the global stream's (B, T, T) attention over frames."""
        valid = torch.isfinite(frames).all(-1)  # (B, T)
        x = torch.where(valid[..., None], (frames - self.f_mean) / self.f_std, torch.zeros_like(frames))
        h = self.frame_in(x)
        B, T, _ = h.shape
        pad = ~valid
        # a track with no valid frame would make every key masked: keep its first one (its loss is 0)
        pad = pad & valid.any(1, keepdim=True)
        streams, attn = [], None
        if self.cfg.local:
            y, _ = self.local_attn(h, h, h, attn_mask=local_mask(T, self.cfg.window, h.device),
                                   key_padding_mask=pad, need_weights=False)
            streams.append(y)
        if self.cfg.global_:
            g = self.adapter((globals_ - self.g_mean) / self.g_std)[:, None]  # (B, 1, d)
            kv = torch.cat([g, h], dim=1)
            kpad = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=h.device), pad], dim=1)
            y, w = self.global_attn(h, kv, kv, key_padding_mask=kpad, need_weights=need_attention,
                                    average_attn_weights=True)
            streams.append(y)
            attn = w[:, :, 1:] if w is not None else None
        z = self.norm(h + sum(streams)) if streams else self.norm(h)
        # padded frames (a track's tail) must not reach its frames through the backward LSTM
        z = torch.nan_to_num(z).masked_fill(pad[..., None], 0.0)
        lengths = valid.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(z, lengths, batch_first=True, enforce_sorted=False)
        z, _ = self.lstm(packed)
        z, _ = nn.utils.rnn.pad_packed_sequence(z, batch_first=True, total_length=T)
        out = torch.tanh(self.out(z))
        return (out, attn) if need_attention else out

    def diagonal_loss(self, attn: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Attention-weighted |i - j| / T of the global stream, mean over valid rows."""
        T = attn.shape[-1]
        i = torch.arange(T, device=attn.device, dtype=attn.dtype)
        dist = (i[:, None] - i[None, :]).abs() / T
        per_row = (attn * dist).sum(-1)  # (B, T)
        return (per_row * valid).sum() / valid.sum().clamp_min(1)


__all__ = ["DSAML", "DSAMLConfig", "local_mask"]
