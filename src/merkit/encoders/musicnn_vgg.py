"""The VGG baselines of the ``musicnn`` wheel (``MSD_vgg``, ``MTT_vgg``) in PyTorch: a second
pretrained tagger, with musicnn's front end and 3 s patches (:mod:`merkit.encoders.musicnn`;
same wheel, same ISC licence, ``merkit/assets/musicnn/LICENSE``).

Architecture (605 748 trainable parameters), for a patch of 187 frames × 96 Mel bands::

    log-Mel (B, 1, 187, 96) ─BN─ 5 × [conv 3×3 "same" × 128, ReLU, BN, max pool] ─ pool5
    pool5 (B, 128, 2, 1) ─flatten in TF's (time, freq, channel) order─ dense 50 (tag logits)

The max pools differ between the checkpoints, and this is the detail that decides whether the
port matches. musicnn's ``models.py`` (``vgg``) pools (4, 1) with stride 2, then 2×2, 2×2,
2×2, 4×4; that is ``MTT_vgg``'s stored graph. ``MSD_vgg``'s stored graph (its ``.meta``, the
graph its weights were trained in) pools (4, 1) with stride (4, 1) and then (1, 4) with stride
(1, 4) instead of the first two, which gives the same (2, 1) pool5 and so loads into either
graph; musicnn's own extractor rebuilds the graph from ``models.py`` and so runs ``MSD_vgg``
with the wrong pooling. The port follows each checkpoint's stored graph (``VggDims.pools``);
tests/test_musicnn_vgg.py checks both against the stored graphs' outputs. BN epsilon is 1e-3
and each BN follows its ReLU, as in musicnn; dropout is off at inference.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cpu_memory import reuse_freed_memory
from .base import Embedding
from .musicnn import (BN_EPS, MSD_LABELS, MTT_LABELS, MusicnnFrontEnd, PatchEncoder, patches, read_checkpoint,
                      with_weights)

# (time, freq) kernel, (time, freq) stride of the five max pools, from each stored graph
MODELS_PY_POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))
MSD_VGG_POOLS = (((4, 1), (4, 1)), ((1, 4), (1, 4))) + MODELS_PY_POOLS[2:]
CHECKPOINTS = {"MSD_vgg": MSD_LABELS, "MTT_vgg": MTT_LABELS}
POOLS = {"MSD_vgg": MSD_VGG_POOLS, "MTT_vgg": MODELS_PY_POOLS}
NAMES = {"MSD_vgg": "musicnn_vgg", "MTT_vgg": "musicnn_vgg_mtt"}


@dataclass(frozen=True)
class VggDims:
    n_mels: int = 96
    n_frames: int = 187  # fixed: the dense layer reads a flattened map of one patch length
    n_tags: int = 50
    filters: int = 128
    pools: tuple = MODELS_PY_POOLS

    @property
    def pool5_shape(self) -> tuple[int, int]:
        t, f = self.n_frames, self.n_mels
        for (kt, kf), (st, sf) in self.pools:
            t, f = (t - kt) // st + 1, (f - kf) // sf + 1  # TF "valid" pooling = torch's floor mode
        return t, f


@dataclass
class VggOutput:
    """Per-patch outputs. logits (B, n_tags); pool5 (B, 2, 1, 128) in TF's (time, freq,
    channel) layout, as musicnn's extractor returns it; embedding (B, 128): pool5's maximum
    over its two time positions (see :class:`MusicnnVggEncoder`)."""

    logits: torch.Tensor
    pool5: torch.Tensor
    embedding: torch.Tensor

    @property
    def taggram(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)


class MusicnnVgg(nn.Module):
    """``models.vgg`` with each checkpoint's pooling. Input: log-Mel patches ``(B, 187, 96)``."""

    def __init__(self, dims: VggDims = VggDims()):
        super().__init__()
        self.dims = d = dims
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else d.filters, d.filters, 3, padding=1)
                                   for i in range(len(d.pools)))  # TF "same" for 3×3: one each side
        self.bns = nn.ModuleList(nn.BatchNorm2d(d.filters, eps=BN_EPS) for _ in d.pools)
        t, f = d.pool5_shape
        self.out = nn.Linear(d.filters * t * f, d.n_tags)

    def pools(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each block's output ``(B, 128, t, f)``, pool1 .. pool5 (musicnn's extractor's features)."""
        d = self.dims
        if x.ndim != 3 or x.shape[1:] != (d.n_frames, d.n_mels):
            raise ValueError(f"expected (B, {d.n_frames}, {d.n_mels}) log-Mel patches, got {tuple(x.shape)}")
        x = self.input_bn(x[:, None])  # (B, 1, T, F)
        out = []
        for conv, bn, (k, s) in zip(self.convs, self.bns, d.pools):
            x = F.max_pool2d(bn(F.relu(conv(x))), k, s)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> VggOutput:
        x = self.pools(x)[-1]
        pool5 = x.permute(0, 2, 3, 1)  # (B, t, f, C): the order tf.layers.flatten reads
        return VggOutput(logits=self.out(pool5.flatten(1)), pool5=pool5, embedding=x.amax(dim=(2, 3)))


def load_musicnn_vgg(checkpoint: str = "MSD_vgg", *, path: str | Path | None = None) -> MusicnnVgg:
    """The pretrained network from merkit's package data (or a converted file ``path``), in
    eval mode."""
    blob = read_checkpoint(checkpoint, CHECKPOINTS, path, kind="musicnn VGG")
    dims = dict(blob["dims"])
    dims["pools"] = tuple((tuple(k), tuple(s)) for k, s in dims["pools"])
    return with_weights(MusicnnVgg(VggDims(**dims)), blob)


class MusicnnVggEncoder(PatchEncoder):
    """A musicnn VGG checkpoint as a merkit :class:`~merkit.encoders.Encoder`; the input, the
    patches and the level are :class:`~merkit.encoders.musicnn.MusicnnEncoder`'s.

    * ``sequence``: per 3 s patch, the 128 channels of pool5 (the last conv block's output, which
      the tag layer reads) max-pooled over its two time positions. The tag layer weights the two
      halves of a patch separately, but where a sound falls inside an arbitrary 3 s cut says
      nothing about the music; the maximum keeps the network's own pooling rule and halves the
      width (the 256 flattened values are stored in :class:`VggOutput` ``.pool5``).
    * ``pooled``: ``[mean, std]`` over patches of that (256 values).
    * ``tags``: the taggram (sigmoid of the 50 tag logits per patch).

    No ``frame_sequence``: unlike musicnn the network is not frame-wise (its dense layer reads a
    whole patch), so a timeline embeds each window on its own.
    """

    # Patches per forward pass: conv 1's map is 9 MB per patch, and ReLU and BN copy it.
    batch = 4
    extra_info = {"embedding": "pool5 max over time"}

    def __init__(self, checkpoint: str = "MSD_vgg", *, target_lufs: float | None = -14.0,
                 path: str | Path | None = None, front_end: MusicnnFrontEnd | None = None):
        reuse_freed_memory()
        # trained on the same recordings as musicnn: its level
        super().__init__(checkpoint, NAMES.get(checkpoint, checkpoint), load_musicnn_vgg(checkpoint, path=path),
                         tag_names=CHECKPOINTS.get(checkpoint, ()), target_lufs=target_lufs, front_end=front_end)
        self.seq_dim = self.model.dims.filters
        self.dim = 2 * self.seq_dim

    def embed(self, y: np.ndarray) -> Embedding:
        o = self.forward_patches(patches(self.front_end(y), self.patch_frames))
        emb = o.embedding.numpy().astype(np.float32)
        pooled = np.concatenate([emb.mean(0), emb.std(0)]).astype(np.float32)
        return Embedding(pooled=pooled, sequence=emb, hop_seconds=self.hop_seconds,
                         tags=o.taggram.numpy().astype(np.float32))
