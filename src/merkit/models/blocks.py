"""Small building blocks shared by the models: token embedding, attention layers, pooling.

Shapes use ``B`` batch, ``N`` tokens of one view, ``M`` tokens of the other view, ``D`` model
dimension, ``H`` heads, ``d = D / H`` head size.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Band-position embeddings start at unit scale (nn.Embedding's N(0, 1)), the scale of the
# projected band tokens. Attention and mean pooling are blind to token order, so the position
# embedding is the only way DAMER can tell *which* band carries energy (what a major/minor mode
# changes). With the usual Transformer initialisation N(0, 0.02^2) (BERT/GPT-2) the bands stay
# indistinguishable for the few hundred steps a small corpus gives. Measured on the synthetic
# corpus' valence task (`merkit quickstart` data, validation split only, 20 epochs, batch 64,
# seeds 0-2): best validation accuracy 0.69 +- 0.01 -> 0.75 +- 0.01, last-epoch accuracy
# 0.66 +- 0.02 -> 0.75 +- 0.01.
POS_INIT_STD = 1.0


class TokenEmbedding(nn.Module):
    """Turn one view ``(B, bands, T)`` into tokens ``(B, N, D)`` (paper Eqs. 1-2).

    ``mode="band"``: each frequency band is a token whose features are its ``T`` frames
    (``N = bands``, a ``T -> D`` projection); ``mode="frame"``: each time frame is a token
    (``N = T``, a ``bands -> D`` projection).
    """

    def __init__(self, n_bands: int, n_frames: int, dim: int, *, mode: str = "band",
                 pos_embedding: bool = True):
        super().__init__()
        if mode not in ("band", "frame"):
            raise ValueError(f"token mode must be 'band' or 'frame', got {mode!r}")
        self.mode = mode
        self.n_bands, self.n_frames = n_bands, n_frames
        n_tokens, n_in = (n_bands, n_frames) if mode == "band" else (n_frames, n_bands)
        self.n_tokens = n_tokens
        self.proj = nn.Linear(n_in, dim)
        self.pos = nn.Parameter(torch.randn(n_tokens, dim) * POS_INIT_STD) if pos_embedding else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, bands, T) -> (B, N, D)."""
        if self.mode == "frame":
            x = x.transpose(1, 2)  # (B, T, bands)
        h = self.proj(x)
        return h if self.pos is None else h + self.pos


# Lanes of 15 random bits: a mask element is dropped when its lane is below round(p * 2^15).
_LANE_BITS = 15
_LANE_MASK = (1 << _LANE_BITS) - 1


def dropout_keep_mask(shape: tuple[int, ...], p: float, dtype: torch.dtype) -> torch.Tensor:
    """A dropout mask of ``shape``: 0 with probability ``p`` (rounded to a multiple of 2^-15),
    else ``1 / (1 - p)``, so that the expected output equals the input.

    On a CPU, torch's dropout draws one Bernoulli variate per element (``bernoulli_``: 34 ms for
    a 256 x 128 x 128 activation, a tenth of a DAMER training step). Here one 64-bit draw of
    torch's generator (seeded as usual) gives four 16-bit lanes, whose low 15 bits are compared
    with a threshold (the top lane's sign bit is always 0 in ``random_()``'s [0, 2^63) range,
    so only 15 bits per lane are used). ``bench/cpu_kernels.py`` measures it.
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_()
    lanes = words.view(torch.int16)[:n].view(shape)
    threshold = round(p * (1 << _LANE_BITS))
    keep = lanes.bitwise_and(_LANE_MASK) >= threshold
    return keep.to(dtype).mul_((1 << _LANE_BITS) / ((1 << _LANE_BITS) - threshold))


class Dropout(nn.Module):
    """``nn.Dropout`` whose CPU masks come from :func:`dropout_keep_mask` (``fast=True``, 3x
    faster forward + backward); other devices, and ``fast=False``, use ``F.dropout``. No
    parameters or buffers, so it is interchangeable with ``nn.Dropout`` in a state dict."""

    def __init__(self, p: float, *, fast: bool = True):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.fast = p, fast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if not self.fast or x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        return x * dropout_keep_mask(tuple(x.shape), self.p, x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}, fast={self.fast}"


class FeedForward(nn.Module):
    """Position-wise GELU MLP with ``mult``-fold expansion (paper Eqs. 7-8).

    Dropout acts on the output only ("residual dropout", Vaswani et al. 2017, §5.4), not on the
    ``mult * D`` hidden activations: on a CPU, drawing that 4x larger mask cost about a fifth of
    a training step.
    """

    def __init__(self, dim: int, mult: int, dropout: float, *, fast_dropout: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * mult)
        self.fc2 = nn.Linear(dim * mult, dim)
        self.drop = Dropout(dropout, fast=fast_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, N, D) -> (B, H, N, d)."""
    b, n, dim = x.shape
    return x.view(b, n, n_heads, dim // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, N, d) -> (B, N, D)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention, ``q (B, H, N, d)``, ``k, v (B, H, M, d)`` -> ``(B, H, N, d)``.

    On a CPU this is two batched matrix products around a softmax: for DAMER's shapes (B 256,
    H 4, N 128, M 84, d 32) forward + backward take 79 ms against 148 ms for
    ``F.scaled_dot_product_attention``'s flash kernel, as long as freed memory is reused
    (:func:`merkit.cpu_memory.reuse_freed_memory`; without it the 44 MB score matrix
    is page-faulted in on every call and the flash kernel is the faster, 127 vs 143 ms;
    ``bench/cpu_kernels.py``). Elsewhere (CUDA) the fused kernel is used.
    """
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v)
    b, h, n, d = q.shape
    m = k.shape[2]
    # Scaling q (N x d) is cheaper than scaling the scores (N x M), and the copy it makes is
    # the contiguous (B H, N, d) layout bmm wants anyway.
    q = (q * d ** -0.5).reshape(b * h, n, d)
    scores = torch.bmm(q, k.reshape(b * h, m, d).transpose(1, 2))  # (B H, N, M)
    return torch.bmm(scores.softmax(dim=-1), v.reshape(b * h, m, d)).view(b, h, n, d)


class DualViewLayer(nn.Module):
    """One DSAF layer (paper Eqs. 3-8) acting on both views at once.

    With ``cross=True`` the Mel tokens attend to the cochleagram tokens and vice versa (both
    directions read the layer's *inputs*, so the update is symmetric); with ``cross=False`` each
    view attends to itself (the ablation without DSAF, same parameter count). Each view has one
    fused ``D -> 3D`` projection giving its queries and the keys/values it offers; then
    residual + LayerNorm (post-norm, Eq. 6) and a GELU FFN with its own residual + LayerNorm.
    """

    def __init__(self, dim: int, n_heads: int, ffn_mult: int, dropout: float, *, cross: bool = True,
                 fast_dropout: bool = True):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.cross = cross
        self.qkv = nn.ModuleList([nn.Linear(dim, 3 * dim) for _ in range(2)])
        self.out = nn.ModuleList([nn.Linear(dim, dim) for _ in range(2)])
        self.norm_attn = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])
        self.ffn = nn.ModuleList([FeedForward(dim, ffn_mult, dropout, fast_dropout=fast_dropout)
                                  for _ in range(2)])
        self.norm_ffn = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])
        self.drop = Dropout(dropout, fast=fast_dropout)

    def forward(self, h_mel: torch.Tensor, h_coch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h_mel: (B, N, D), h_coch: (B, M, D) -> the updated pair, same shapes."""
        q, k, v = [], [], []
        for i, h in enumerate((h_mel, h_coch)):
            qi, ki, vi = self.qkv[i](h).chunk(3, dim=-1)
            q.append(split_heads(qi, self.n_heads))
            k.append(split_heads(ki, self.n_heads))
            v.append(split_heads(vi, self.n_heads))
        outs = []
        for i, h in enumerate((h_mel, h_coch)):
            src = 1 - i if self.cross else i  # whose keys/values this view reads
            a = attention(q[i], k[src], v[src])  # (B, H, N_i, d)
            h = self.norm_attn[i](h + self.drop(self.out[i](merge_heads(a))))
            outs.append(self.norm_ffn[i](h + self.ffn[i](h)))
        return outs[0], outs[1]


class FusionMLP(nn.Module):
    """``[z_mel || z_coch] (B, 2D) -> z_fuse (B, D_f)``: Linear, GELU, dropout, Linear."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float, *, fast_dropout: bool = True):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), Dropout(dropout, fast=fast_dropout),
                                 nn.Linear(out_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# Bands whose training-set standard deviation is below this are constant (e.g. clamped at the
# log floor); dividing by a tiny std would only amplify rounding noise.
NORM_STD_FLOOR = 1e-5


def head_outputs(head_logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What each head predicts: class probabilities ``(B, C)`` (softmax of its logits) or, for
    one output, the regression value ``(B,)``; with several heads also their mean
    (``"ensemble"``)."""
    out = {}
    for head, z in head_logits.items():
        z = z.float()
        out[head] = z.squeeze(-1) if z.shape[-1] == 1 else torch.softmax(z, dim=-1)
    if len(out) > 1:
        out["ensemble"] = sum(out.values()) / len(out)
    return out


class BandNormalisation(nn.Module):
    """Per-band standardisation of both views with statistics of the training part, stored as
    buffers so that a saved model takes raw features. The loop calls :meth:`set` once with
    :func:`merkit.training.loop.band_statistics` before training."""

    def __init__(self, n_mels: int, n_coch: int):
        super().__init__()
        for name, n in (("mel", n_mels), ("coch", n_coch)):
            self.register_buffer(f"{name}_mean", torch.zeros(n))
            self.register_buffer(f"{name}_std", torch.ones(n))

    @torch.no_grad()
    def set(self, mel_mean, mel_std, coch_mean, coch_std) -> None:
        for name, value in (("mel_mean", mel_mean), ("mel_std", mel_std),
                            ("coch_mean", coch_mean), ("coch_std", coch_std)):
            buf = getattr(self, name)
            value = torch.as_tensor(value, dtype=buf.dtype, device=buf.device)
            if value.shape != buf.shape:
                raise ValueError(f"{name} must have shape {tuple(buf.shape)}, got {tuple(value.shape)}")
            if name.endswith("std"):
                value = value.clamp_min(NORM_STD_FLOOR)
            buf.copy_(value)

    def forward(self, mel: torch.Tensor, coch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ``(B, n_mels, T)``, ``(B, n_coch, T)`` -> standardised, same shapes."""
        return ((mel - self.mel_mean[:, None]) / self.mel_std[:, None],
                (coch - self.coch_mean[:, None]) / self.coch_std[:, None])
