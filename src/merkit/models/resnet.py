"""CNN baselines on the Mel spectrogram: a residual CNN and the short-chunk ResNet.

::

    ResNetMER         mel (B, 128, 87) -> normalise -> 7x7/2 stem -> max-pool/2
                      -> 4 residual stages (w, 2w, 4w, 8w; stride 1, 2, 2, 2)
                      -> global average -> z (B, 8w) -> dropout -> linear -> (B, C)
    ShortChunkResNet  mel (B, 128, 87) -> normalise -> chunks of 16 frames
                      -> 7 residual blocks (stride 2 until a 1x1 map) -> global max -> z (B, 4n)
                      -> dense + BN + ReLU + dropout -> linear -> (B, C); chunk logits averaged

Both ignore the cochleagram (they still take it: the training loop passes both views). Feature
normalisation (per-band mean and std of the training part) lives in a :class:`BandNormalisation`
submodule, so a saved model takes raw features. :class:`CNNObjective` trains either with the
supervised loss on batches augmented by a random circular time shift, a time mask and a
frequency mask (SpecAugment, Park et al. 2019).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .blocks import BandNormalisation

# --- ResNetMER: He et al. 2016 ("Deep residual learning", Table 1), one BasicBlock per stage --
STEM_KERNEL = 7  # the 7x7 stride-2 stem convolution
STAGE_WIDTHS = (1, 2, 4, 8)  # stage channels as multiples of cfg.width (64-128-256-512 at 64)
STAGE_STRIDES = (1, 2, 2, 2)  # the first stage follows the max-pool, so it keeps the resolution
# --- ShortChunkResNet: Won et al. 2020 (ISMIR-SMC, "Evaluation of CNN-based automatic music
# tagging models"), the released sota-music-tagging-models ShortChunkCNN_Res --------------------
CHUNK_WIDTHS = (1, 1, 2, 2, 2, 2, 4)  # the 7 blocks' channels as multiples of n = 2 * cfg.width
CHUNK_WIDTH_MULT = 2  # n = 2 * cfg.width = 128 at the default width, Won et al.'s n_channels
CHUNK_HOP_DIVISOR = 2  # inference chunks overlap by half: hop = chunk_frames // 2


@dataclass
class CNNOutput:
    """Logits of the single head ``(B, C)`` and the pooled embedding ``(B, E)``."""

    logits: torch.Tensor  # (B, C)
    z: torch.Tensor  # (B, E)

    def head_logits(self) -> dict[str, torch.Tensor]:
        return {"out": self.logits}


def _halve(n: int) -> int:
    """Output size of a stride-2 convolution or pooling with ``padding = kernel // 2`` on an
    odd kernel: ``ceil(n / 2)``, so it never reaches 0 (a size 1 stays 1)."""
    return (n + 1) // 2


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with a ReLU between and after the sum (He et al. 2016, Fig. 2).

    ``stride`` is ``(freq, time)`` and applies to the first convolution. When the stride or the
    channel count changes, the shortcut is a strided ``shortcut_kernel`` convolution + BN (1x1:
    He et al.'s projection, option B; 3x3: Won et al.'s ``Res_2d``); otherwise the identity.
    Convolutions have no bias: the following BN's shift makes it redundant.
    """

    def __init__(self, c_in: int, c_out: int, stride: int | tuple[int, int] = 1, *,
                 shortcut_kernel: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
        if stride != (1, 1) or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, shortcut_kernel, stride=stride,
                          padding=shortcut_kernel // 2, bias=False),
                nn.BatchNorm2d(c_out))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c_in, F, T) -> (B, c_out, ceil(F / s_f), ceil(T / s_t))."""
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


def _init_weights(module: nn.Module) -> None:
    # He initialisation for ReLU networks (He et al. 2015, "Delving deep into rectifiers"), as
    # in the reference ResNet implementations; BN starts as the identity.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _MelCNN(nn.Module):
    """What both CNNs share: the normalisation, the input checks, ``predict_proba``."""

    heads: tuple[str, ...] = ("out",)
    default_head: str = "out"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.norm = BandNormalisation(cfg.n_mels, cfg.n_coch)

    def set_normalisation(self, mel_mean, mel_std, coch_mean, coch_std) -> None:
        """Store per-band statistics (each ``(bands,)``) that ``forward`` applies to raw input."""
        self.norm.set(mel_mean, mel_std, coch_mean, coch_std)

    def _normalised_mel(self, mel: torch.Tensor, coch: torch.Tensor | None) -> torch.Tensor:
        """Check the raw views and return the standardised Mel view ``(B, n_mels, T)``.

        Any ``T >= 1`` is accepted (the networks pool over time); the cochleagram is only
        checked for a consistent batch, as these models do not read it."""
        c = self.cfg
        if mel.ndim != 3 or mel.shape[1] != c.n_mels or mel.shape[2] < 1:
            raise ValueError(f"mel must be (B, {c.n_mels}, T) with T >= 1, got {tuple(mel.shape)}")
        if coch is not None:
            if coch.ndim != 3 or coch.shape[1] != c.n_coch:
                raise ValueError(f"coch must be (B, {c.n_coch}, T), got {tuple(coch.shape)}")
            if coch.shape[0] != mel.shape[0]:
                raise ValueError(f"mel and coch batch sizes differ: {mel.shape[0]} vs {coch.shape[0]}")
        return (mel - self.norm.mel_mean[:, None]) / self.norm.mel_std[:, None]

    @torch.no_grad()
    def predict_proba(self, mel: torch.Tensor,
                      coch: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Softmax probabilities ``(B, C)`` of the single head, under ``"out"`` and under
        ``"ensemble"`` (the mean over one head is that head). Call ``eval()`` first."""
        p = F.softmax(self(mel, coch).logits.float(), dim=-1)
        return {"out": p, "ensemble": p}


class ResNetMER(_MelCNN):
    """Residual CNN on the Mel spectrogram (He et al. 2016, one BasicBlock per stage).

    Downsampling: the stem (stride 2), the max-pool (stride 2) and stages 2-4 (stride 2 each)
    divide both axes by 32 with ceiling rounding, so the paper input ``128 x 87`` ends as a
    ``4 x 3`` map (64x44 -> 32x22 -> 32x22 -> 16x11 -> 8x6 -> 4x3). Every step maps ``n`` to
    ``ceil(n / 2)``, so no input collapses to an empty map (a 1-frame input stays 1 frame wide);
    the standard strides are therefore kept. Global average pooling then gives ``z``.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        w = cfg.width
        self.stem = nn.Sequential(
            nn.Conv2d(1, w, STEM_KERNEL, stride=2, padding=STEM_KERNEL // 2, bias=False),
            nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1))
        widths = [w * m for m in STAGE_WIDTHS]
        self.stages = nn.Sequential(*[
            ResidualBlock(c_in, c_out, s, shortcut_kernel=1)
            for c_in, c_out, s in zip([w] + widths[:-1], widths, STAGE_STRIDES)])
        self.embed_dim = widths[-1]
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.embed_dim, cfg.n_classes)
        _init_weights(self)

    def output_size(self, n_mels: int, n_frames: int) -> tuple[int, int]:
        """``(freq, time)`` of the last stage's map for an ``n_mels x n_frames`` input."""
        f, t = _halve(_halve(n_mels)), _halve(_halve(n_frames))  # stem, max-pool
        for s in STAGE_STRIDES:
            if s == 2:
                f, t = _halve(f), _halve(t)
        return f, t

    def forward(self, mel: torch.Tensor, coch: torch.Tensor | None = None) -> CNNOutput:
        """mel: (B, n_mels, T) raw; coch: (B, n_coch, T), unused -> :class:`CNNOutput`
        with logits (B, C) and z (B, 8 * width)."""
        x = self._normalised_mel(mel, coch).unsqueeze(1)  # (B, 1, n_mels, T)
        h = self.stages(self.stem(x))  # (B, 8w, F', T')
        z = h.mean(dim=(2, 3))  # (B, 8w)
        return CNNOutput(self.head(self.drop(z)), z)


class ShortChunkResNet(_MelCNN):
    """Short-chunk ResNet, EMOPIA's audio baseline (Hung et al. 2021, after Won et al. 2020).

    Won et al.'s network: seven 3x3 residual blocks whose first convolution and 3x3 shortcut
    have stride 2 (the "2x2 pooling"), channels ``n, n, 2n, 2n, 2n, 2n, 4n`` with ``n = 128``,
    global max pooling, then a dense layer with BN, ReLU and dropout, and the output layer. Here
    ``n = 2 * cfg.width`` (128 at the default width) and the dropout is ``cfg.dropout`` (Won et
    al. use 0.5); Won's input BatchNorm on the spectrogram is replaced by the per-band
    normalisation every merkit model uses.

    Chunks: Won et al. train on 3.69 s chunks of 16 kHz audio (231 frames of hop 256). The
    paper preset's 87 frames cover 60 s (about 0.69 s per frame), so 3.69 s would be only 5
    frames; ``cfg.chunk_frames = 16`` frames (about 11 s) leaves room for four stride-2 steps in
    time and gives 10 half-overlapping chunks per 87-frame excerpt. In training mode each sample contributes
    one chunk at a random start drawn from torch's global (CPU) generator, so a resumed run
    draws the same chunks. In eval mode every chunk with hop ``chunk_frames // 2`` is scored,
    the last one flush with the end, and the *logits* are averaged across chunks (``z`` too):
    ``head_logits`` must be logits, and a mean of logits is the geometric mean of the chunk
    probabilities up to normalisation (EMOPIA averages chunk predictions). Inputs shorter than a
    chunk are padded with zeros after normalisation, i.e. with the training-set band means.

    Strides per block are ``(2 if freq > 1 else 1, 2 if time > 1 else 1)``, so an axis stops
    shrinking at 1 and never reaches 0: a 128 x 16 chunk goes 64x8, 32x4, 16x2, 8x1, 4x1, 2x1,
    1x1. Whatever map remains (more Mel bands, longer chunks) is max-pooled, as in Won's code.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        n = CHUNK_WIDTH_MULT * cfg.width
        widths = [n * m for m in CHUNK_WIDTHS]
        f, t = cfg.n_mels, cfg.chunk_frames
        blocks = []
        for c_in, c_out in zip([1] + widths[:-1], widths):
            stride = (2 if f > 1 else 1, 2 if t > 1 else 1)
            blocks.append(ResidualBlock(c_in, c_out, stride, shortcut_kernel=3))
            f, t = (_halve(f) if stride[0] == 2 else f), (_halve(t) if stride[1] == 2 else t)
        self.blocks = nn.Sequential(*blocks)
        self.map_size = (f, t)  # (freq, time) of the last block's map for one chunk
        self.embed_dim = widths[-1]
        self.dense = nn.Sequential(
            nn.Linear(self.embed_dim, self.embed_dim), nn.BatchNorm1d(self.embed_dim),
            nn.ReLU(inplace=True), nn.Dropout(cfg.dropout))
        self.head = nn.Linear(self.embed_dim, cfg.n_classes)
        _init_weights(self)

    @property
    def hop(self) -> int:
        return max(1, self.cfg.chunk_frames // CHUNK_HOP_DIVISOR)

    def chunk_starts(self, n_frames: int) -> list[int]:
        """Start frames of the inference chunks: every ``hop`` frames, plus one flush with the
        end when the hop does not land there; ``[0]`` for inputs of at most one chunk."""
        c = self.cfg.chunk_frames
        if n_frames <= c:
            return [0]
        starts = list(range(0, n_frames - c + 1, self.hop))
        if starts[-1] != n_frames - c:
            starts.append(n_frames - c)
        return starts

    def encode_chunks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised chunks (N, n_mels, chunk_frames) -> (logits (N, C), z (N, 4n))."""
        h = self.blocks(x.unsqueeze(1))  # (N, 4n, F', T')
        z = h.amax(dim=(2, 3))  # (N, 4n): global max pooling
        return self.head(self.dense(z)), z

    def forward(self, mel: torch.Tensor, coch: torch.Tensor | None = None) -> CNNOutput:
        """mel: (B, n_mels, T) raw; coch: (B, n_coch, T), unused -> :class:`CNNOutput`.

        Training mode: one random chunk per sample. Eval mode: the mean over all chunks."""
        x = self._normalised_mel(mel, coch)  # (B, n_mels, T)
        b, n_mels, t = x.shape
        c = self.cfg.chunk_frames
        if t < c:
            x, t = F.pad(x, (0, c - t)), c
        if self.training:
            if b < 2:  # BN on the final 1x1 map and in the dense layer needs two samples
                raise ValueError("ShortChunkResNet needs training batches of >= 2 samples "
                                 "(batch norm over a 1x1 map); got 1")
            start = torch.randint(0, t - c + 1, (b,)).to(x.device)  # global CPU generator
            idx = start[:, None] + torch.arange(c, device=x.device)  # (B, c)
            chunks = x.gather(2, idx[:, None, :].expand(b, n_mels, c))  # (B, n_mels, c)
            logits, z = self.encode_chunks(chunks)
            return CNNOutput(logits, z)
        starts = self.chunk_starts(t)
        # One pass per chunk position rather than one (B * n_chunks) batch: the first block's
        # activations of all chunks of a 512-track evaluation batch would need gigabytes.
        logits = z = 0.0
        for s in starts:
            lg, zz = self.encode_chunks(x[:, :, s:s + c])
            logits, z = logits + lg, z + zz
        return CNNOutput(logits / len(starts), z / len(starts))
