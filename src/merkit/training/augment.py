"""On-the-fly augmentation of feature batches: a circular time shift plus SpecAugment's masks.

Each labelled sample gets, from torch's global CPU generator (saved in checkpoints, so resume
stays exact; the same draws on any device):

* a circular time shift by ``s ~ U{-T/4..T/4}`` frames: the label is a property of the whole
  excerpt, so rolling the excerpt keeps it and moves the content each position sees (the seam
  is a cut, like the excerpt's own edges);
* one time mask of ``U{0..T/10}`` frames and one frequency mask of ``U{0..bands/8}`` bands
  (SpecAugment, Park et al. 2019, §2; its LibriSpeech policies use one or two masks of each).

Both views get the same shift and time mask; each view gets its own frequency mask (Mel and
gammatone bands lie on different scales). The masks act on the raw features and set them to
the per-band training mean (the model's normalisation buffers), so after normalisation a masked
cell is 0, the average input, not a loud or silent outlier.

The CNN baselines train with it by default; DAMER and MuseFuse can (``--augment``), the papers
do not.
"""
from __future__ import annotations

import torch

MAX_SHIFT_FRACTION = 1 / 4  # circular shift by up to T/4 frames either way (~15 s of 60 s)
MAX_TIME_MASK_FRACTION = 1 / 10  # one time mask of up to T/10 frames (8 of 87, ~6 s)
MAX_FREQ_MASK_FRACTION = 1 / 8  # one frequency mask of up to bands/8 (16 of 128 Mel bands)


def _time_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Roll each sample ``(B, bands, T)`` by ``shift[i]`` frames (``torch.roll`` per sample)."""
    t = x.shape[-1]
    idx = (torch.arange(t, device=x.device)[None, :] - shift[:, None]) % t  # (B, T)
    return x.gather(2, idx[:, None, :].expand(-1, x.shape[1], -1))


def _span_mask(n: int, width: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """(B, n) bool: True on ``[start[i], start[i] + width[i])``."""
    pos = torch.arange(n, device=width.device)[None, :]
    return (pos >= start[:, None]) & (pos < (start + width)[:, None])


def _draw_spans(b: int, n: int, max_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample a width ~ U{0..max_width} and a start ~ U{0..n - width} (SpecAugment's
    draw), from torch's global CPU generator."""
    width = torch.randint(0, max_width + 1, (b,))
    start = (torch.rand(b) * (n - width + 1)).floor().long()
    return width, start


def augment(mel: torch.Tensor, coch: torch.Tensor, norm) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw ``(B, n_mels, T)``, ``(B, n_coch, T)`` -> augmented copies (same shapes); ``norm``
    is the model's :class:`~merkit.models.blocks.BandNormalisation` (its band means fill the masks)."""
    b, n_mels, t = mel.shape
    n_coch = coch.shape[1]
    dev = mel.device
    max_shift = int(t * MAX_SHIFT_FRACTION)
    shift = torch.randint(-max_shift, max_shift + 1, (b,)).to(dev)
    t_width, t_start = _draw_spans(b, t, int(t * MAX_TIME_MASK_FRACTION))
    m_width, m_start = _draw_spans(b, n_mels, int(n_mels * MAX_FREQ_MASK_FRACTION))
    c_width, c_start = _draw_spans(b, n_coch, int(n_coch * MAX_FREQ_MASK_FRACTION))
    time_mask = _span_mask(t, t_width.to(dev), t_start.to(dev))[:, None, :]  # (B, 1, T)
    out = []
    for x, mean, width, start in ((mel, norm.mel_mean, m_width, m_start),
                                  (coch, norm.coch_mean, c_width, c_start)):
        x = _time_shift(x, shift)
        band_mask = _span_mask(x.shape[1], width.to(dev), start.to(dev))[:, :, None]  # (B, bands, 1)
        fill = mean.to(x.dtype)[None, :, None].expand_as(x)
        out.append(torch.where(time_mask | band_mask, fill, x))
    return out[0], out[1]
