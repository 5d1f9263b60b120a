"""The 2 Hz timeline of the unified model (:mod:`merkit.models.curve`), as a part of its
predictor: musicnn's frames every half second, read a few minutes at a time, turned into the
curve by the fitted change detector and the model's own head. :class:`UnifiedModel` mixes it
in; it reads the predictor's front end, head (``outputs``), calibration and silence rule.
"""
from __future__ import annotations

import numpy as np

from ..dynamic_features import frame_features
from ..loudness import integrated_loudness_batch
from ..models import curve as curvemod
from ..models.curve import CurveConfig
from . import segments
from .segments import encoder_align


class CurveTimeline:
    """The 2 Hz timeline's methods of a unified predictor (``self.curve``: its detector, or None;
    ``timeline_mode``: "curve" once one is set, "windows" otherwise)."""

    # the 2 Hz timeline reads this many half-second cells (5 minutes) of audio at a time
    curve_segment_frames = 600
    curve: CurveConfig | None = None
    timeline_mode = "windows"

    def set_curve(self, cfg: CurveConfig | None) -> "CurveTimeline":
        """Give the model a fitted 2 Hz timeline (``merkit.models.curve``), which becomes its
        timeline; None: back to the sliding windows."""
        if cfg is not None and tuple(self.net.cfg.inputs) not in (("musicnn",), ("musicnn", "tonal")):
            raise ValueError(f"the 2 Hz timeline pools musicnn's frames into the musicnn view; this model's inputs "
                             f"are {self.net.cfg.inputs}")
        self.curve = cfg
        self.timeline_mode = "curve" if cfg is not None else "windows"
        return self

    def _curve_features(self, blocks, info, x_track: np.ndarray) -> tuple[dict, list[str | None]]:
        """The 2 Hz timeline (:mod:`merkit.models.curve`) of the audio ``blocks``: the eased
        head outputs per frame, the band, the part starts, the frames and the track's tonal view,
        and per frame the reason it holds no music (a silent half second)."""
        f, times, lufs = self.curve_frames(blocks, info)
        tonal = x_track[2 * f.shape[1]:] if "tonal" in self.net.cfg.inputs else None
        curve = self.curve_of_frames(f, tonal)
        curve.update(times=times, frames=f, tonal=tonal)  # the last two for fitting (merkit.recipes.fit_timeline)
        return curve, self._window_flags(lufs)

    def curve_frames(self, blocks, info) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frames (T, 953), their times (s), loudness of each half second (LUFS)) of the audio
        ``blocks`` (44.1 kHz mono, consecutive): musicnn's 3 s patch centred on each half second,
        from one pass over the track at the track window's level (as the sliding windows hear
        it), read :attr:`curve_segment_frames` cells at a time."""
        if isinstance(blocks, np.ndarray):
            blocks = [blocks]
        front = self._front(self.config.audio)
        enc = front.encoders["musicnn"]
        sr = self.config.audio.sample_rate
        hop = curvemod.HOP_SECONDS
        gain = float(10.0 ** (info.gain_db / 20.0))
        frames, times, lufs = [], [], []
        # cells of one hop; 3 s of margin: a 3 s patch centred on a cell plus the encoder's 1.2 s
        for seg in segments.timeline_segments(blocks, sr, hop, hop, per_segment=self.curve_segment_frames,
                                              margin=3.0, align=encoder_align(sr, [enc])):
            y_enc = front.encoder_input(seg.y, info, enc, gain=gain)
            local = [(s + hop * sr / 2) / sr for s in seg.local_starts()]  # cell centres, s into seg.y
            frames.append(frame_features(enc, y_enc, np.array(local)))
            times += [seg.offset / sr + t for t in local]
            w = int(round(hop * sr))
            cells = np.stack([np.pad(seg.y[s:s + w], (0, max(0, w - len(seg.y[s:s + w])))) for s in seg.local_starts()])
            lufs.append(integrated_loudness_batch(cells, sr))
        return np.concatenate(frames), np.array(times), np.concatenate(lufs)

    def curve_of_frames(self, f: np.ndarray, tonal: np.ndarray | None, cfg: CurveConfig | None = None) -> dict:
        """The curve of 2 Hz frames ``f`` (:meth:`curve_frames`) with the track's ``tonal`` view:
        ``{"outputs": eased head outputs per frame, "band": (T, 2) valence/arousal band,
        "starts": the parts' first frames}``; ``cfg``: another detector setting (default: the model's)."""
        cfg = cfg or self.curve
        pen = self.encoder_seq_dim("musicnn")
        starts = curvemod.pick_changes(curvemod.change_probability(f, cfg), cfg.threshold, cfg.min_part)
        parts = self.outputs(curvemod.part_inputs(f, starts, tonal, pen))
        T = len(f)
        # the band: how much the 10 s windows inside each part disagree (P of each dimension)
        local = self.outputs(curvemod.with_tonal(curvemod.local_pooled(f, 5.0, pen), tonal))["va"]
        probs = self.va_probabilities(local)
        return {"outputs": {k: curvemod.follow(v, starts, T, cfg) for k, v in parts.items()},
                "band": curvemod.follow(curvemod.part_spread(probs, starts), starts, T, cfg), "starts": starts}

    def encoder_seq_dim(self, name: str) -> int:
        """The size of an encoder's penultimate layer (musicnn: 200)."""
        return int(self._front(self.config.audio).encoders[name].seq_dim)


__all__ = ["CurveTimeline"]
