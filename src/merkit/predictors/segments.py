"""The timeline's audio in segments, so that its memory does not grow with the track.

A timeline covers up to ``--timeline-max-minutes`` of audio (200 minutes if a user asks). Holding
that audio, its encoder frames and every window's spectrogram at once took 10.5 GB for a 3-hour
MP3. Instead the decoded blocks (:func:`merkit.audio.iter_mono`) are gathered into segments of
:data:`SEGMENT_WINDOWS` window starts, each with :data:`MARGIN_SECONDS` of audio on both sides
(clipped at the ends of the track), and the predictor reduces each segment to its windows' small
network inputs before the next is read. Only one segment's audio is held at a time.

The margin lets an encoder that runs over the whole track (musicnn's frames, which see ±73 frames
of context, 1.2 s) give each window the frames it would have had from one pass over the whole
track; ``align`` puts each segment's first sample on a whole number of encoder hops at the
encoder's sample rate, so those frames line up with the whole track's (tests/test_timeline_stream.py
checks the two agree). A track no longer than one segment is one segment: the same work as before.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

# Window starts per segment: 60 at the default 5 s hop = 5 minutes of timeline (~26 MB of Mel and
# ~17 MB of cochleagram at a time), long enough that per-segment overheads do not show.
SEGMENT_WINDOWS = 60
# Audio kept on each side of a segment's windows: more than musicnn's receptive field (73 frames
# of 16 ms = 1.2 s) plus the resampler's filter (a few ms)
MARGIN_SECONDS = 2.0


# A tail shorter than this after the last regular window gets no window of its own: one flush
# with the end would nearly repeat the last window (a 60.03 s clip gave 50.0-60.0 twice).
MIN_TAIL_SECONDS = 1.0


def timeline_starts(n_samples: int, sr: int, window: float, hop: float) -> list[int]:
    """Start samples of the timeline windows: every ``hop`` seconds while a full window fits,
    plus one final window flush with the end when at least :data:`MIN_TAIL_SECONDS` would
    otherwise be left out; a single window at 0 for audio no longer than one window."""
    w, h = int(round(window * sr)), int(round(hop * sr))
    if h <= 0 or w <= 0:
        raise ValueError(f"timeline window and hop must be > 0, got {window} and {hop}")
    if n_samples <= w:
        return [0]
    starts = list(range(0, n_samples - w + 1, h))
    if n_samples - (starts[-1] + w) >= MIN_TAIL_SECONDS * sr:
        starts.append(n_samples - w)
    return starts


@dataclass(frozen=True)
class Segment:
    """Audio ``y`` = samples ``[offset, offset + len(y))`` of the track, holding the windows
    that start at ``starts`` (absolute samples) and ``MARGIN_SECONDS`` around them;
    ``n_total``: the track's length in samples."""

    y: np.ndarray
    offset: int
    starts: list[int]
    n_total: int

    def local_starts(self) -> list[int]:
        return [s - self.offset for s in self.starts]


def encoder_align(sr: int, encoders) -> int:
    """The smallest step (samples at ``sr``) that is a whole number of hops of every encoder at
    its own rate (musicnn at 16 kHz, hop 256, from 44.1 kHz: 3528 samples = 80 ms)."""
    step = 1
    for enc in encoders:
        r, hop = int(enc.sample_rate), int(enc.front_end.hop_length)
        s = hop * sr // math.gcd(r, hop * sr)
        step = step * s // math.gcd(step, s)
    return step


def timeline_segments(blocks: Iterable[np.ndarray], sr: int, window: float, hop: float, *,
                      per_segment: int = SEGMENT_WINDOWS, margin: float = MARGIN_SECONDS,
                      align: int = 1) -> Iterator[Segment]:
    """Segments of the timeline of the audio given as consecutive ``blocks``: the windows of
    :func:`merkit.predictors.base.timeline_starts` on the whole audio, in order, each in exactly
    one segment. The window starts that fit (``k * hop`` with a whole window and the margin
    read) are given as soon as they are read; the rest, the final window flush with the end
    included, once the audio ends."""
    if per_segment < 1:
        raise ValueError(f"per_segment must be >= 1, got {per_segment}")
    w, h, m = int(round(window * sr)), int(round(hop * sr)), int(round(margin * sr))
    buf, buf_start, total, k = np.zeros(0, dtype=np.float32), 0, 0, 0

    def cut(starts: list[int], end: int, n_total: int) -> Segment:
        lo = max(0, starts[0] - m) // align * align
        hi = min(end, starts[-1] + w + m)
        return Segment(buf[lo - buf_start:hi - buf_start], lo, starts, n_total)

    for block in blocks:
        buf = np.concatenate([buf, np.asarray(block, dtype=np.float32)])
        total += len(block)
        while (k + per_segment - 1) * h + w + m <= total:  # a full group is read, margin included
            yield cut([j * h for j in range(k, k + per_segment)], total, -1)
            k += per_segment
            # what the next segment may start at: the next regular start, or the final window
            # flush with the end (at least total - w, since the track is at least this long)
            keep = max(0, min(k * h, total - w) - m) // align * align
            buf, buf_start = buf[keep - buf_start:], keep
    if total == 0:
        return
    rest = timeline_starts(total, sr, window, hop)[k:]  # the first k are the regular starts given
    for i in range(0, len(rest), per_segment):
        yield cut(rest[i:i + per_segment], total, total)


__all__ = ["MARGIN_SECONDS", "MIN_TAIL_SECONDS", "SEGMENT_WINDOWS", "Segment", "encoder_align", "timeline_segments",
           "timeline_starts"]
