"""musicnn (Pons & Serra 2019) in PyTorch: a pretrained music-tagging CNN used as an encoder.

Ported from the ``musicnn`` package (version 0.1.0, ``models.py``: ``build_musicnn``), whose
weights ship inside its PyPI wheel as TensorFlow 1 checkpoints. ``tools/convert_musicnn.py``
reads those checkpoints with :mod:`merkit.encoders.tf_bundle` (no TensorFlow) and writes the
state dicts that merkit ships in ``merkit/assets/musicnn/``.

    Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019. Code developed by
    Jordi Pons (www.jordipons.me). ISC licence: permission to use, copy, modify, and/or
    distribute this software for any purpose with or without fee is hereby granted, provided
    that the above copyright notice and this permission notice appear in all copies.
    (Full text: ``merkit/assets/musicnn/LICENSE``.)

Architecture (787 159 trainable parameters), for a patch of T = 187 frames × 96 Mel bands::
    log-Mel (B, T, 96) ─BN─┬─ timbral: conv (7, 38) × 204, conv (7, 67) × 204  ─┐ ReLU, BN,
                           └─ temporal: conv (128|64|32, 1) × 51 each, "same"  ─┘ max over freq
                                           → front end (B, T, 561)
    mid end: 3 × [conv (7, ·) × 64 over the whole feature axis, ReLU, BN], the last two residual
    dense connection: [front end, mid 1, mid 2, mid 3] → (B, T, 753)
    back end: max and mean over time, interleaved [max_0, mean_0, max_1, ...] (1506), BN,
              dense 200 + ReLU + BN  ("penultimate", the embedding), dense 50 (tag logits)

Details that decide whether the port matches the original: TF's "same" padding puts the extra
row of an even kernel at the end (63 before, 64 after for 128); batch-norm epsilon is 1e-3
(TF1 layers' default); every BN follows its ReLU; the (7, ·) convolutions pad time by 3 on both
sides and are "valid" otherwise.

Front end (``musicnn.extractor.batch_data``): 16 kHz, 512-point STFT with a periodic Hann
window and hop 256, centred frames, power, 96 Slaney Mel bands, ``log10(1 + 10000 x)``.
Two things differ from musicnn's own code on purpose: the log is taken in float32 (musicnn
casts to float16 first; under NumPy ≥ 2 ``10000 * float16`` stays float16 and overflows to inf
in 0.2-4 % of bins), and its ``extractor.py`` bug that appends the first batch's mid-end
features again for every later batch is not reproduced (each patch gets its own).

Size: one module over ~400 lines on purpose: the port (network, front end, weight loading)
reads side by side with musicnn's own ``models.py``; the encoder wrapper is its only user.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..features.mel import mel_filterbank
from .base import Embedding
from ..cpu_memory import reuse_freed_memory


ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "musicnn"
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default

# musicnn.configuration: the tag vocabularies of the two checkpoints, in output order
MTT_LABELS = ('guitar', 'classical', 'slow', 'techno', 'strings', 'drums', 'electronic', 'rock',
              'fast', 'piano', 'ambient', 'beat', 'violin', 'vocal', 'synth', 'female', 'indian',
              'opera', 'male', 'singing', 'vocals', 'no vocals', 'harpsichord', 'loud', 'quiet',
              'flute', 'woman', 'male vocal', 'no vocal', 'pop', 'soft', 'sitar', 'solo', 'man',
              'classic', 'choir', 'voice', 'new age', 'dance', 'male voice', 'female vocal',
              'beats', 'harp', 'cello', 'no voice', 'weird', 'country', 'metal', 'female voice',
              'choral')
MSD_LABELS = ('rock', 'pop', 'alternative', 'indie', 'electronic', 'female vocalists', 'dance',
              '00s', 'alternative rock', 'jazz', 'beautiful', 'metal', 'chillout',
              'male vocalists', 'classic rock', 'soul', 'indie rock', 'Mellow', 'electronica',
              '80s', 'folk', '90s', 'chill', 'instrumental', 'punk', 'oldies', 'blues',
              'hard rock', 'ambient', 'acoustic', 'experimental', 'female vocalist', 'guitar',
              'Hip-Hop', '70s', 'party', 'country', 'easy listening', 'sexy', 'catchy', 'funk',
              'electro', 'heavy metal', 'Progressive rock', '60s', 'rnb', 'indie pop', 'sad',
              'House', 'happy')
CHECKPOINTS = {"MSD_musicnn": MSD_LABELS, "MTT_musicnn": MTT_LABELS}


@dataclass(frozen=True)
class MusicnnDims:
    """Layer sizes of ``build_musicnn`` (the shipped checkpoints use the defaults)."""

    n_mels: int = 96
    n_tags: int = 50
    timbral_filters: int = 204  # int(1.6 * 128)
    timbral_widths: tuple[float, ...] = (0.4, 0.7)  # kernel widths as fractions of n_mels
    temporal_filters: int = 51  # int(1.6 * 32)
    temporal_lengths: tuple[int, ...] = (128, 64, 32)
    midend_filters: int = 64
    backend_units: int = 200

    @property
    def frontend_channels(self) -> int:
        return (self.timbral_filters * len(self.timbral_widths)
                + self.temporal_filters * len(self.temporal_lengths))

    @property
    def midend_channels(self) -> int:  # the dense connection's width
        return self.frontend_channels + 3 * self.midend_filters


@dataclass
class MusicnnOutput:
    """Per-patch outputs; B patches of T frames.

    logits (B, n_tags), penultimate (B, 200): the embedding after dense + ReLU + BN;
    mean_pool / max_pool (B, 753): the back end's temporal pooling of the mid end;
    midend (B, T, 753): the dense-connected frame sequence (front end + mid end).
    """

    logits: torch.Tensor
    penultimate: torch.Tensor
    mean_pool: torch.Tensor
    max_pool: torch.Tensor
    midend: torch.Tensor

    @property
    def taggram(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)


def _bn(n: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(n, eps=BN_EPS)


class Musicnn(nn.Module):
    """``build_musicnn`` with TF's layer order. Input: log-Mel patches ``(B, T, n_mels)``."""

    def __init__(self, dims: MusicnnDims = MusicnnDims()):
        super().__init__()
        self.dims = dims
        d = dims
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        self.timbral = nn.ModuleList(
            nn.Conv2d(1, d.timbral_filters, (7, int(w * d.n_mels))) for w in d.timbral_widths)
        self.timbral_bn = nn.ModuleList(_bn(d.timbral_filters) for _ in d.timbral_widths)
        self.temporal = nn.ModuleList(
            nn.Conv2d(1, d.temporal_filters, (k, 1)) for k in d.temporal_lengths)
        self.temporal_bn = nn.ModuleList(_bn(d.temporal_filters) for _ in d.temporal_lengths)
        widths = (d.frontend_channels, d.midend_filters, d.midend_filters)
        self.midend = nn.ModuleList(nn.Conv1d(w, d.midend_filters, 7) for w in widths)
        self.midend_bn = nn.ModuleList(_bn(d.midend_filters) for _ in widths)
        self.pool_bn = _bn(2 * d.midend_channels)
        self.dense = nn.Linear(2 * d.midend_channels, d.backend_units)
        self.dense_bn = _bn(d.backend_units)
        self.out = nn.Linear(d.backend_units, d.n_tags)

    def _pool_freq(self, x: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
        """``max_freq(BN(ReLU(x)))`` for x (B, C, T, F') -> (B, C, T).

        In eval mode BN is a per-channel affine map and ReLU is monotonic, so the maximum over
        frequency is BN(ReLU(max x)) for channels with a positive BN scale and BN(ReLU(min x))
        for the others: exact, and it skips two passes over the largest tensors of the network
        (the timbral maps are ~45 M values per 60 s).
        """
        if self.training:
            b, c, t, f = x.shape
            return bn(F.relu(x).reshape(b, c, t * f)).reshape(b, c, t, f).amax(dim=3)
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # (C,)
        hi, lo = x.amax(dim=3), x.amin(dim=3)
        return bn(F.relu(torch.where(scale[:, None] >= 0, hi, lo)))

    # frames of context one output frame of the mid end depends on, either side: the longest
    # temporal convolution reaches 64 frames ahead, the three (7, .) mid-end convolutions 3 each
    CONTEXT = 64 + 3 * 3

    def forward(self, x: torch.Tensor) -> MusicnnOutput:
        return self.head(self.frames(x))

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """The dense-connected frame sequence (front end + mid end), ``(B, 753, T)``, of log-Mel
        ``(B, T, n_mels)``."""
        if x.ndim != 3 or x.shape[2] != self.dims.n_mels:
            raise ValueError(f"expected (B, T, {self.dims.n_mels}) log-Mel patches, got {tuple(x.shape)}")
        x = self.input_bn(x[:, None])  # (B, 1, T, F)
        feats = []
        x7 = F.pad(x, (0, 0, 3, 3))  # time only: the pooling over frequency follows
        for conv, bn in zip(self.timbral, self.timbral_bn):
            feats.append(self._pool_freq(conv(x7), bn))
        for conv, bn in zip(self.temporal, self.temporal_bn):
            k = conv.kernel_size[0]
            # TF "same": (k - 1) rows of padding, the odd one at the end
            feats.append(self._pool_freq(conv(F.pad(x, (0, 0, (k - 1) // 2, k // 2))), bn))
        front = torch.cat(feats, dim=1)  # (B, 561, T)

        m1 = self.midend_bn[0](F.relu(self.midend[0](F.pad(front, (3, 3)))))
        m2 = self.midend_bn[1](F.relu(self.midend[1](F.pad(m1, (3, 3))))) + m1
        m3 = self.midend_bn[2](F.relu(self.midend[2](F.pad(m2, (3, 3))))) + m2
        return torch.cat([front, m1, m2, m3], dim=1)  # (B, 753, T)

    def head(self, mid: torch.Tensor) -> MusicnnOutput:
        """The back end: temporal pooling of mid-end frames ``(B, 753, T)``, dense layers."""
        max_pool = mid.amax(dim=2)
        # The mean about the first frame: exact for a channel that is constant over time, which
        # ~170 of the 753 are (dead ReLUs give BN's constant). A plain mean of a constant is off
        # by an ulp depending on the summation order, which differs between torch and
        # onnxruntime, and the unified model divides these features by a std floored at 1e-6
        # (they were constant in training too): one ulp moved its outputs by 1.5e-4.
        x0 = mid[:, :, :1]
        mean_pool = x0[:, :, 0] + (mid - x0).mean(dim=2)
        # tf.concat([max, mean], axis=2) on (B, 753, 1) then flatten interleaves the two
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # (B, 1506)
        pen = self.dense_bn(F.relu(self.dense(self.pool_bn(flat))))
        return MusicnnOutput(logits=self.out(pen), penultimate=pen, mean_pool=mean_pool,
                             max_pool=max_pool, midend=mid.transpose(1, 2))


# ---- the front end: numpy only (librosa is a test reference) ----------------------------

@dataclass(frozen=True)
class MusicnnFrontEnd:
    """musicnn's log-Mel input. ``pad_mode`` is how centred frames pad the signal's ends
    (``"constant"``: zeros, librosa ≥ 0.10's default; musicnn was trained with librosa 0.6/0.7,
    whose default was ``"reflect"``: it changes the first and last frame only)."""

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    log_scale: float = 10000.0  # log10(1 + log_scale * power)
    pad_mode: str = "constant"

    def __post_init__(self):
        if self.pad_mode not in ("constant", "reflect"):
            raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {self.pad_mode!r}")

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_length

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """``(n,)`` float audio at ``sample_rate`` → ``(frames, n_mels)`` float32 log-Mel."""
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1:
            raise ValueError(f"expected mono (n,) audio, got shape {y.shape}")
        pad = self.n_fft // 2
        if self.pad_mode == "reflect" and len(y) <= pad:
            raise ValueError(f"reflect padding needs more than {pad} samples")
        y = np.pad(y, pad, mode=self.pad_mode)
        n = 1 + (len(y) - self.n_fft) // self.hop_length
        frames = np.lib.stride_tricks.as_strided(
            y, shape=(n, self.n_fft), strides=(y.strides[0] * self.hop_length, y.strides[0]))
        spec = np.fft.rfft(frames * _hann(self.n_fft), axis=1)
        power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
        fb = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels)
        mel = np.asarray(fb @ power.T, dtype=np.float32).T  # (frames, n_mels)
        return np.log10(np.float32(1.0) + np.float32(self.log_scale) * mel)


@lru_cache(maxsize=4)
def _hann(n: int) -> np.ndarray:
    # periodic Hann (scipy.signal.get_window("hann", n), librosa's STFT window)
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def patches(spec: np.ndarray, n_frames: int = 187, hop: int | None = None) -> np.ndarray:
    """Cut ``(frames, n_mels)`` into ``(P, n_frames, n_mels)`` patches every ``hop`` frames
    (default: no overlap, musicnn's ``input_overlap=False``). A spectrogram shorter than one
    patch is repeated to fill it (musicnn's training used ``pad_short="repeat-pad"``); a tail
    shorter than a patch is dropped, as in musicnn's extractor."""
    hop = n_frames if hop is None else hop
    if len(spec) == 0:
        raise ValueError("empty spectrogram")
    if len(spec) < n_frames:
        spec = np.tile(spec, (-(-n_frames // len(spec)), 1))[:n_frames]
    starts = range(0, len(spec) - n_frames + 1, hop)
    return np.stack([spec[s:s + n_frames] for s in starts])


def torch_module_of(model) -> nn.Module:
    """The torch :class:`Musicnn` behind an encoder's ``model``: the module itself, or the one a
    stand-in (:class:`OnDevice`, :class:`merkit.onnx_backend.OnnxMusicnn`) holds."""
    return getattr(model, "torch_module", model)


class OnDevice:
    """Stands in for a :class:`Musicnn` module that lives on an accelerator: the same three calls
    (``frames``, ``head``, the forward pass) with CPU tensors in and out, so the encoder's own
    code (patches, batching, chunked frames, segment pooling) is unchanged. Float32: prediction
    is cheap next to decoding, and mixed precision would move the shipped model's outputs.
    The forward pass also serves :class:`~merkit.encoders.musicnn_vgg.MusicnnVgg` (it has no
    ``frames``/``head``), whose encoder the predictors place the same way."""

    def __init__(self, module: nn.Module, device: torch.device):
        self.torch_module = module.to(device)
        self.device = device
        self.dims = module.dims

    def __repr__(self) -> str:
        return f"OnDevice({type(self.torch_module).__name__}, {self.device})"

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        return self.torch_module.frames(x.to(self.device)).float().cpu()

    def head(self, mid: torch.Tensor) -> MusicnnOutput:
        return _to_cpu(self.torch_module.head(mid.to(self.device)))

    def __call__(self, x: torch.Tensor):
        return _to_cpu(self.torch_module(x.to(self.device)))


def _to_cpu(o):
    """A network's output dataclass with every field as a float32 CPU tensor."""
    return type(o)(*(getattr(o, f.name).float().cpu() for f in dataclasses.fields(o)))


def read_checkpoint(checkpoint: str, known, path: str | Path | None, kind: str = "musicnn") -> dict:
    """The converted blob ``{"dims": ..., "state_dict": ...}`` of ``checkpoint`` from merkit's
    package data (one of ``known``), or of the converted file ``path``."""
    if path is None:
        if checkpoint not in known:
            raise ValueError(f"unknown {kind} checkpoint {checkpoint!r}; known: {sorted(known)}")
        path = ASSET_DIR / f"{checkpoint}.pt"
    return torch.load(path, map_location="cpu", weights_only=True)


def with_weights(model: nn.Module, blob: dict) -> nn.Module:
    """``model`` with the blob's (float16 or float32) weights as float32, in eval mode."""
    model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    return model.eval()


def load_musicnn(checkpoint: str = "MSD_musicnn", *, path: str | Path | None = None) -> Musicnn:
    """The pretrained network from merkit's package data (or a converted file ``path``), in
    eval mode. ``checkpoint``: ``"MSD_musicnn"`` (Million Song Dataset, 50 tags incl. moods) or
    ``"MTT_musicnn"`` (MagnaTagATune)."""
    blob = read_checkpoint(checkpoint, CHECKPOINTS, path)
    return with_weights(Musicnn(MusicnnDims(**{k: tuple(v) if isinstance(v, list) else v
                                                for k, v in blob["dims"].items()})), blob)


def dims_dict(dims: MusicnnDims) -> dict:
    return dataclasses.asdict(dims)


class PatchEncoder:
    """What musicnn's taggers share as merkit encoders: 16 kHz audio, musicnn's log-Mel front
    end, 3 s patches through a network :attr:`batch` patches at a time, a level, tag names.
    Subclasses set ``model``, ``dim`` and ``seq_dim`` and write ``embed``."""

    sample_rate = 16000
    patch_frames = 187  # 3 s: librosa.time_to_frames(3, sr=16000, hop_length=256, n_fft=512) + 1
    batch = 8
    extra_info: dict = {}

    def __init__(self, checkpoint: str, name: str, model: nn.Module, *, tag_names, target_lufs: float | None,
                 front_end: MusicnnFrontEnd | None):
        self.checkpoint = checkpoint
        self.name = name
        self.model = model
        self.front_end = front_end or MusicnnFrontEnd()
        self.target_lufs = target_lufs
        self.tag_names = tag_names
        self.hop_seconds = self.patch_frames * self.front_end.hop_length / self.front_end.sample_rate

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.checkpoint!r}, dim={self.dim}, target_lufs={self.target_lufs})"

    def info(self) -> dict:
        return {"encoder": self.name, "checkpoint": self.checkpoint, "target_lufs": self.target_lufs,
                "patch_frames": self.patch_frames, "front_end": dataclasses.asdict(self.front_end),
                "dim": self.dim, "seq_dim": self.seq_dim, **self.extra_info}

    def n_patches(self, n_samples: int) -> int:
        return max(1, self.front_end.n_frames(n_samples) // self.patch_frames)

    @torch.inference_mode()
    def forward_patches(self, x: np.ndarray):
        """The network's output dataclass on patches ``(P, 187, 96)``, :attr:`batch` at a time."""
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        outs = [self.model(x[i:i + self.batch]) for i in range(0, len(x), self.batch)]
        return type(outs[0])(*(torch.cat([getattr(o, f.name) for o in outs]) for f in dataclasses.fields(outs[0])))


class MusicnnEncoder(PatchEncoder):
    """musicnn as a merkit :class:`~merkit.encoders.Encoder`.

    ``embed(y)`` takes mono audio at 16 kHz, cuts its log-Mel spectrogram into non-overlapping
    3 s patches (187 frames; a clip shorter than one patch is repeated to fill it) and returns:
    * ``sequence``: the 200-d penultimate embedding of every patch (3 s apart);
    * ``pooled``: mean and std over patches of the penultimate embedding and of the mid end's
      temporal mean pool, ``[mean(pen) 200, std(pen) 200, mean(mid) 753, std(mid) 753]``;
    * ``tags``: the taggram (sigmoid of the 50 tag logits per patch).

    ``target_lufs``: the loudness at which the front end feeds this encoder (musicnn's
    log10(1 + 10000 x) compression depends on level, and it was trained on commercial
    recordings, which are far louder than EBU R128's -23 LUFS); ``None`` keeps the level of
    the analysis window.
    """

    # Patches per forward pass. The timbral maps of one patch are ~9 MB; with 8 patches a call
    # stays near 0.1 GB, and freed blocks are kept for reuse (merkit.cpu_memory):
    # without that, every call page-faulted its maps in afresh and extraction workers spent
    # most of their time in the kernel (100 % system time, ~2x slower).
    batch = 8

    def __init__(self, checkpoint: str = "MSD_musicnn", *, target_lufs: float | None = -14.0,
                 path: str | Path | None = None, front_end: MusicnnFrontEnd | None = None):
        reuse_freed_memory()
        super().__init__(checkpoint, {"MSD_musicnn": "musicnn", "MTT_musicnn": "musicnn_mtt"}.get(checkpoint, checkpoint),
                         load_musicnn(checkpoint, path=path), tag_names=CHECKPOINTS.get(checkpoint, ()),
                         target_lufs=target_lufs, front_end=front_end)
        d = self.model.dims
        self.seq_dim = d.backend_units
        self.dim = 2 * d.backend_units + 2 * d.midend_channels


    @torch.inference_mode()
    def frame_sequence(self, y: np.ndarray, *, chunk: int = 2048) -> np.ndarray:
        """Mid-end frames ``(753, frames)`` of a whole signal (16 kHz), computed ``chunk``
        frames at a time with :attr:`Musicnn.CONTEXT` frames of overlap on each side, which
        gives exactly the frames of one pass over the whole signal with bounded memory."""
        spec = self.front_end(y)
        n = len(spec)
        ctx = Musicnn.CONTEXT
        out = np.empty((self.model.dims.midend_channels, n), dtype=np.float32)
        for c in range(0, n, chunk):
            lo, hi = max(0, c - ctx), min(n, c + chunk + ctx)
            mid = self.model.frames(torch.from_numpy(np.ascontiguousarray(spec[lo:hi]))[None])[0]
            out[:, c:min(n, c + chunk)] = mid[:, c - lo:c - lo + min(chunk, n - c)].float().numpy()
        return out

    @torch.inference_mode()
    def embed_segments(self, frames: np.ndarray, starts: list[int], n_frames: int) -> list["Embedding"]:
        """Embeddings of windows of ``n_frames`` frames starting at ``starts`` (frame indices),
        from one :meth:`frame_sequence`: each window's 3 s patches are pooled from the shared
        frames instead of being run through the network again. A patch then sees its real
        neighbours at its edges where :meth:`embed` zero-pads; everything else is the same."""
        p = self.patch_frames
        per = max(1, n_frames // p)
        segs, owners = [], []
        for k, s in enumerate(starts):
            s = max(0, min(int(s), frames.shape[1] - 1))
            for j in range(per):
                a = s + j * p
                seg = frames[:, a:a + p]
                if seg.shape[1] < p:  # a window running past the end: repeat what there is
                    seg = frames[:, s:s + n_frames] if j == 0 else frames[:, max(s, frames.shape[1] - p):]
                segs.append(seg)
                owners.append(k)
        outs = []
        for i in range(0, len(segs), 64):  # the back end on patches of equal length, batched
            group = segs[i:i + 64]
            same = all(g.shape == group[0].shape for g in group)
            if same:
                outs.append(self.model.head(torch.from_numpy(np.stack(group))))
            else:
                outs += [self.model.head(torch.from_numpy(g[None].copy())) for g in group]
        pen = torch.cat([o.penultimate for o in outs]).numpy()
        mid = torch.cat([o.mean_pool for o in outs]).numpy()
        tags = torch.cat([o.taggram for o in outs]).numpy()
        owners = np.array(owners)
        res = []
        for k in range(len(starts)):
            m = owners == k
            pooled = np.concatenate([pen[m].mean(0), pen[m].std(0), mid[m].mean(0), mid[m].std(0)])
            res.append(Embedding(pooled=pooled.astype(np.float32), sequence=pen[m].astype(np.float32),
                                 hop_seconds=self.hop_seconds, tags=tags[m].astype(np.float32)))
        return res

    def embed(self, y: np.ndarray) -> "Embedding":
        x = patches(self.front_end(y), self.patch_frames)
        o = self.forward_patches(x)
        pen = o.penultimate.numpy()
        mid = o.mean_pool.numpy()
        pooled = np.concatenate([pen.mean(0), pen.std(0), mid.mean(0), mid.std(0)]).astype(np.float32)
        return Embedding(pooled=pooled, sequence=pen.astype(np.float32), hop_seconds=self.hop_seconds,
                         tags=o.taggram.numpy().astype(np.float32))
