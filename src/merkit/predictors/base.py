"""What every predictor behind ``merkit predict`` shares: the front end's windows (the track
window and the timeline's), decoding, the content check and the public API.

The track-level result uses the paper's analysis window (60 s from 15 s, §III-A). The timeline
uses windows of ``TIMELINE_WINDOW_S`` every ``TIMELINE_HOP_S``.

Before any emotion is given, the track window is checked for music (:mod:`merkit.content`):
silence, steady signals and noise raise :class:`~merkit.content.NotMusicError` (``predict*``) or
give a "not music" result (``analyse_file*``); a silent timeline window gets no emotion and a
``warning``.

Size: one module over ~400 lines on purpose: the public API (``predict*``, ``analyse*``) and the
paths a file takes to it (audio, MIDI rendered to disk, the streamed timeline, the self-check's
reference) share the windows and the content check defined here, and read best side by side.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import tempfile
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..audio import MIDI_EXTENSIONS, AudioError, AudioInfo, as_audio, iter_mono, load_window, prepare
from ..midi import midi_duration, render_midi
from ..config import AudioConfig, FeatureConfig, from_dict, to_dict
from ..content import ContentCheck, NotMusicError, check_window, sound_stats
from ..reference import REFERENCE_SR, reference_signal
from ..results import FileResult, Prediction
from .segments import timeline_segments, timeline_starts
from ..loudness import integrated_loudness, integrated_loudness_batch, normalize_loudness_batch

if TYPE_CHECKING:
    from ..onnx_backend import OnnxRunner

# Sliding windows of the timeline: 10 s every 5 s (issue #4's example). 10 s is long enough to
# hold a few bars at any common tempo and short enough to follow the sections of a song.
TIMELINE_WINDOW_S = 10.0
TIMELINE_HOP_S = 5.0
# The timeline of a longer file covers its first TIMELINE_MAX_MINUTES (and says so): its memory
# and time grow with the audio it covers (bench/reliability.py measures the peak at this cap).
TIMELINE_MAX_MINUTES = 10.0
# Timeline features are computed this many samples at a time (4 windows of 10 s at 44.1 kHz):
# measured fastest among 1-16 windows per call for a 5-minute track (bench/predict.py); the
# (frames x FFT) temporaries of a call stay at ~30-60 MB.
TIMELINE_CHUNK_SAMPLES = 4 * 441_000
# MIDI up to this long get their rendered release tail trimmed (in memory, as the training renders
# were); longer ones are read from disk in bounded pieces, tail and all
MIDI_TRIM_MAX_SECONDS = 600.0
PREDICTOR_KEY = "predictor"  # the checkpoint entry holding the front-end settings
# A float16 model file may move a probability by this much from its float32 original; the
# export refuses larger changes and EmotionModel.check verifies a loaded file against it.
FP16_TOLERANCE = 0.02


@dataclass(frozen=True)
class PredictorConfig:
    """The front end a model was trained with; saved in the model file (``"predictor"``)."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    timeline_window: float = TIMELINE_WINDOW_S
    timeline_hop: float = TIMELINE_HOP_S

    def to_dict(self) -> dict:
        return {"audio": to_dict(self.audio), "features": to_dict(self.features),
                "timeline_window": self.timeline_window, "timeline_hop": self.timeline_hop}

    @classmethod
    def from_dict(cls, d: dict) -> "PredictorConfig":
        return cls(audio=from_dict(AudioConfig, d.get("audio", {})),
                   features=from_dict(FeatureConfig, d.get("features", {})),
                   timeline_window=float(d.get("timeline_window", TIMELINE_WINDOW_S)),
                   timeline_hop=float(d.get("timeline_hop", TIMELINE_HOP_S)))

    @classmethod
    def from_feature_info(cls, info: dict | None) -> "PredictorConfig":
        """The front end of a feature folder (its ``features.json``), default timeline."""
        info = info or {}
        return cls(audio=from_dict(AudioConfig, info.get("audio", {})),
                   features=from_dict(FeatureConfig, info.get("features", {})))

    def timeline_audio(self) -> AudioConfig:
        """Front end of one timeline window: the window is cut by the caller, so it starts at 0."""
        return dataclasses.replace(self.audio, window_seconds=self.timeline_window, window_start=0.0,
                                   min_seconds=min(self.audio.min_seconds, self.timeline_window))




class Predictor:
    """What every model behind ``merkit predict`` shares: the front end's windows (the track
    window and the timeline's), decoding, and the public API. A subclass makes features of the
    windows (:meth:`_features_of`) and predictions of those features (:meth:`_results`)."""

    config: PredictorConfig
    # the not-music rules (merkit.content); a ContentCheck(enabled=False) turns them off
    content_check: ContentCheck = ContentCheck()

    # the timeline covers at most this much audio (its work and memory grow with it; the track
    # result does not): TIMELINE_MAX_MINUTES by default, ``merkit predict --timeline-max-minutes``
    timeline_max_seconds: float = TIMELINE_MAX_MINUTES * 60.0

    # the model files this predictor was loaded from (set by load_model; None: built in memory)
    source_files: tuple[str, ...] | None = None
    # the network part runs in torch, or, once use_onnx() attached them, in the exported graphs
    # (merkit.onnx_backend.OnnxRunner): each network call of a subclass asks this first
    onnx = None
    device = "cpu"  # where the torch networks run (to_device)

    def front_end(self, *, timeline: bool = False):
        """The :class:`~merkit.frontend.FrontEnd` this predictor makes its views with: the track
        window's, or (``timeline=True``) the timeline windows' (the same one where the model
        has no separate timeline windows)."""
        return self._front(self.config.timeline_audio() if timeline else self.config.audio)

    def _front(self, audio):
        raise NotImplementedError

    def set_encoder_once(self, once: bool) -> "Predictor":
        """Whether this loaded model's encoders hear a clip shorter than the window once
        (:attr:`AudioConfig.encoder_once`): in its config and in the front ends it has already
        built, which keep their encoders (and so the backend they run on)."""
        self.config = dataclasses.replace(self.config, audio=dataclasses.replace(self.config.audio, encoder_once=once))
        for front in getattr(self, "_fronts", {}).values():  # the setting is read per window
            front.audio = dataclasses.replace(front.audio, encoder_once=once)
        return self

    def _front_end_repr(self) -> str:
        """The window, timeline and backend part of a predictor's repr (and of the model
        description in `merkit predict`'s JSON)."""
        a = self.config.audio
        return (f"window={a.window_seconds:g} s from {a.window_start:g} s, timeline={self.config.timeline_window:g} s "
                f"every {self.config.timeline_hop:g} s, backend={self.backend}")

    @property
    def backend(self) -> str:
        return "torch" if self.onnx is None else "onnx"

    def use_onnx(self, path: "str | os.PathLike | OnnxRunner | None" = None) -> "Predictor":
        """Run the networks with onnxruntime from now on: the `merkit export` file ``path``
        (refused unless exported from this model), an ``OnnxRunner``, or (None) this model's
        export in the cache, made on first use (:func:`merkit.onnx_backend.cached_export`).
        The front end, calibration, content check and timeline stay the same code."""

        if str(self.device) != "cpu":
            raise ValueError("the ONNX backend runs on the CPU; use the torch backend for --device "
                             f"{self.device}")
        # deferred: the ONNX backend loads torch (for the export), which prediction with
        # onnxruntime alone does not need until then
        from ..onnx_backend import OnnxRunner, cached_export

        if not isinstance(path, OnnxRunner):
            path = OnnxRunner.open(cached_export(self) if path is None else path, self)
        self._swap_networks(path)
        self.onnx = path
        return self

    def use_torch(self) -> "Predictor":
        """Back to the torch networks (undoes :meth:`use_onnx`)."""
        if self.onnx is not None:
            self._swap_networks(None)
            self.onnx = None
        return self

    def to_device(self, device: str) -> "Predictor":
        """Run the torch networks on ``device`` (``cpu``, ``cuda``, ``cuda:1``) from now on, in
        float32; decoding and the front end stay on the CPU. (Prediction is cheap next to
        decoding, and mixed precision would move the shipped model's outputs off its card.)"""
        import torch

        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"--device {device}: CUDA is not available on this machine")
        if self.onnx is not None and dev.type != "cpu":
            raise ValueError(f"the ONNX backend runs on the CPU; use the torch backend for --device {device}")
        self._place(dev)
        self.device = dev
        return self

    def _place(self, device) -> None:
        """Move the torch networks to ``device`` (:meth:`to_device`)."""
        if device.type != "cpu":
            raise ValueError(f"{type(self).__name__} predicts on the CPU only")

    def _swap_networks(self, runner) -> None:
        """Point the network calls made outside the predictor's own methods (an encoder's) at
        ``runner``'s graphs, or back at torch (None). Nothing to do for most models."""

    # -- ONNX (merkit export, --backend onnx): each predictor exports its own networks ------------
    def onnx_modules(self) -> list:
        """``(name, torch module)`` of every network an export covers, in graph order."""
        raise ValueError(f"no ONNX export for {type(self).__name__}: `merkit export` covers the unified model "
                         "(the shipped model, `merkit train --arch unified`) and DAMER-style networks "
                         "(`merkit train` best.pt)")

    def onnx_graphs(self) -> tuple[list, dict]:
        """The :class:`merkit.onnx_backend.Graph` list to export and the kind-specific part of
        the sidecar."""
        return self.onnx_modules(), {}  # onnx_modules refuses for a predictor without an export

    def _features_of(self, track: tuple, timeline, name: str) -> dict:
        """Features of the track window ``track`` = (window, (start, end, looped), AudioInfo)
        (row 0) and of the timeline windows of the audio given as consecutive blocks
        ``timeline`` (44.1 kHz mono, an iterable read once: :meth:`_timeline_segments`; None: no
        timeline), plus ``"content"`` (:meth:`_check_track`), ``"window_flags"``
        (:meth:`_window_flags`) and ``"duration"``."""
        raise NotImplementedError

    def _results(self, feats: dict) -> tuple[Prediction, list[Prediction]]:
        raise NotImplementedError

    def _track_window(self, y: np.ndarray, name: str) -> tuple[np.ndarray, tuple[float, float, bool], "AudioInfo"]:
        """The paper's analysis window of ``y`` (44.1 kHz mono), its (start, end, looped) and
        the front end's :class:`~merkit.audio.AudioInfo`."""
        a = self.config.audio
        win, info = prepare(y, a.sample_rate, a, name=name)
        end = info.window_start + min(a.window_seconds, info.duration)
        return win, (info.window_start, end, info.repeated), info

    def _check_track(self, win: np.ndarray, info, log_mel: np.ndarray) -> tuple[str | None, dict]:
        """The not-music rules on the track window (:func:`merkit.content.check_window`)."""
        a = self.config.audio
        lufs = info.loudness_lufs
        if a.target_lufs is None:  # the front end did not measure it

            lufs = integrated_loudness(win, a.sample_rate)
        sound = sound_stats(win, a.sample_rate) if self.content_check.enabled else None
        return check_window(lufs, log_mel, a.silence_lufs, self.content_check, sound)

    def _window_flags(self, lufs: np.ndarray) -> list[str | None]:
        """Per timeline window: the reason it holds no music (silence only), or None."""
        return [check_window(x, None, self.config.audio.silence_lufs, self.content_check)[0] for x in lufs]

    def _predictions(self, feats: dict) -> tuple[Prediction, list[Prediction]]:
        """:meth:`_results`, after the not-music check: raises NotMusicError for the track;
        a timeline window without music gets :meth:`Prediction.no_music`."""
        reason, stats = feats.get("content") or (None, {})
        if reason:
            raise NotMusicError(reason, stats)
        track, tl = self._results(feats)
        flags = feats.get("window_flags") or []
        if flags:
            tl = [Prediction.no_music(p.start, p.end, p.looped, f) if f else p for p, f in zip(tl, flags)]
        return track, tl

    def _timeline_windows(self, y: np.ndarray, name: str) -> tuple[np.ndarray, list[tuple], np.ndarray]:
        """``(n_windows, L)`` loudness-normalised timeline windows of ``y``, their (start, end,
        looped) and their loudness (LUFS; ``-inf`` for digital silence): :meth:`_timeline_chunks`
        of every segment, joined (the models themselves take the chunks, so that the windows,
        which overlap, are never all in memory at once)."""
        wins, times, lufs = [], [], []
        for seg in self._timeline_segments([y]):
            for w, t, l in self._timeline_chunks(seg, name):
                wins.append(w)
                times += t
                lufs.append(l)
        return np.concatenate(wins), times, np.concatenate(lufs)

    def _timeline_segments(self, blocks, *, align: int = 1):
        """The timeline's audio, given as consecutive 44.1 kHz mono ``blocks``, in segments of
        a few minutes of windows (:func:`~merkit.predictors.segments.timeline_segments`): what a
        predictor holds at a time, so that its memory does not grow with the track."""
        a = self.config.timeline_audio()
        return timeline_segments(blocks, a.sample_rate, self.config.timeline_window, self.config.timeline_hop,
                                 align=align)

    def _timeline_chunks(self, seg, name: str):
        """Timeline windows of one segment (:meth:`_timeline_segments`) a few at a time
        (:data:`TIMELINE_CHUNK_SAMPLES` of audio per chunk): yields ``(windows (b, L), [(start,
        end, looped)], lufs (b,))``, times in seconds from the start of the track.

        Each window is what :func:`prepare` makes of its slice; the loudness of a chunk's
        windows is measured and applied in one batched pass (:mod:`merkit.loudness`), which
        gives the same windows as normalising them one at a time, ~10x faster.
        """

        a = self.config.timeline_audio()
        sr = a.sample_rate
        w = a.window_samples
        step = max(1, TIMELINE_CHUNK_SAMPLES // w)
        cut = dataclasses.replace(a, target_lufs=None)  # cut (and loop) only: loudness comes below
        y, starts = seg.y, seg.local_starts()
        for i in range(0, len(starts), step):
            wins, times = [], []
            for s in starts[i:i + step]:
                win, info = prepare(y[s:s + w], sr, cut, name=name)  # a view of y unless looped
                wins.append(win)
                times.append(((seg.offset + s) / sr, (seg.offset + min(s + w, len(y))) / sr, info.repeated))
            wins = np.stack(wins)
            if a.target_lufs is not None:
                _, lufs, _ = normalize_loudness_batch(wins, sr, target_lufs=a.target_lufs,
                                                      silence_lufs=a.silence_lufs, out=wins)
            else:
                lufs = integrated_loudness_batch(wins, sr)
            yield wins, times, lufs

    def features(self, y: np.ndarray, sr: int, *, name: str | None = None, timeline: bool = False) -> dict:
        """Features of the track window and (optionally) the timeline windows: row 0 is the
        track window, rows 1.. the timeline windows; ``"times"``: their (start, end, looped)."""
        a = self.config.audio
        y = as_audio(y, sr, sample_rate=a.sample_rate)
        name = name or "<array>"
        cap = int(round(self.timeline_max_seconds * a.sample_rate))
        feats = self._features_of(self._track_window(y, name), [y[:cap]] if timeline else None, name)
        return self._add_notes(feats, timeline)

    def _reference_features(self, *, timeline: bool = True) -> dict:
        """:meth:`features` of :func:`merkit.reference.reference_signal` without the not-music
        check: the self-check signal is one synthetic chord, which the check rightly calls a
        single sound, but it exercises the front end and the networks all the same."""
        check, self.content_check = self.content_check, ContentCheck(enabled=False)
        try:  # a self-check runs when a model is loaded or exported, before it serves requests
            return self.features(reference_signal(), REFERENCE_SR, timeline=timeline)
        finally:
            self.content_check = check

    def _file_features(self, path: str | os.PathLike, timeline: bool) -> dict:
        """Features of a file. Only the track window is decoded for the track result, and only
        the first :attr:`timeline_max_seconds` for the timeline, so that memory stays bounded
        for any file length (MIDI is rendered whole)."""
        a = self.config.audio
        if Path(path).suffix.lower() in MIDI_EXTENSIONS:
            # rendered to a WAV on disk (FluidSynth streams it), then read like any audio file:
            # only the track window and the timeline's minutes are held in memory, however long
            # the MIDI plays (a 1-hour MIDI decoded whole peaked at 3.3 GB)
            with tempfile.TemporaryDirectory(prefix="merkit-midi-") as tmp:
                # the release tail is trimmed in memory: only for MIDI short enough to hold (the
                # short clips whose window and looping it changes, as in training renders)
                short = midi_duration(path) <= MIDI_TRIM_MAX_SECONDS
                wav = render_midi(path, Path(tmp) / "render.wav", sample_rate=a.sample_rate, trim_tail=short)
                try:
                    return self._file_features(wav, timeline)
                except AudioError as e:
                    raise AudioError(str(e).replace(str(wav), str(path))) from None
        return self._decoded_features(path, load_window(path, a), timeline)

    def _decoded_features(self, path, decoded: tuple[np.ndarray, "AudioInfo"], timeline: bool) -> dict:
        """:meth:`_file_features` of an audio file whose track window :func:`load_window` has
        decoded (``decoded``: its window and info): the views and networks."""
        a = self.config.audio
        win, info = decoded
        track = (win, (info.window_start, info.window_start + min(a.window_seconds, info.duration), info.repeated), info)
        # the timeline's audio is read block by block as the model consumes it (iter_mono)
        blocks = iter_mono(path, a.sample_rate, seconds=self.timeline_max_seconds) if timeline else None
        feats = self._features_of(track, blocks, str(path))
        if info.note:  # e.g. damaged parts of the file that were skipped
            feats["note"] = info.note
        return self._add_notes(feats, timeline)

    def _add_notes(self, feats: dict, timeline: bool) -> dict:
        """The note that the timeline stopped at its cap, added to the file's note."""
        if timeline and feats["duration"] > self.timeline_max_seconds + 1e-6:
            cap = (f"the timeline covers the first {self.timeline_max_seconds / 60:g} of "
                   f"{feats['duration'] / 60:.1f} minutes (--timeline-max-minutes)")
            feats["note"] = f"{feats['note']}; {cap}" if feats.get("note") else cap
        return feats

    # -- public API ------------------------------------------------------------------------------
    def predict(self, y: np.ndarray, sr: int) -> Prediction:
        """Emotion of a signal ``y`` (``(n,)``, ``(n, ch)`` or ``(ch, n)``, any rate) in its
        analysis window (60 s from 15 s, or the whole clip looped when shorter)."""
        return self._predictions(self.features(y, sr))[0]

    def predict_timeline(self, y: np.ndarray, sr: int) -> list[Prediction]:
        """Emotion of each timeline window (``config.timeline_window`` s every ``timeline_hop`` s)."""
        return self._predictions(self.features(y, sr, timeline=True))[1]

    def predict_file(self, path: str | os.PathLike) -> Prediction:
        """:meth:`predict` of an audio file (wav, flac, ogg, mp3) or a MIDI file (rendered)."""
        return self._predictions(self._file_features(path, timeline=False))[0]

    def predict_file_timeline(self, path: str | os.PathLike) -> list[Prediction]:
        """:meth:`predict_timeline` of a file."""
        return self._predictions(self._file_features(path, timeline=True))[1]

    def analyse_file(self, path: str | os.PathLike, *, timeline: bool = False) -> FileResult:
        """Track result (and timeline) of one file, decoded once; errors become ``FileResult.error``."""
        try:
            feats = self._file_features(path, timeline)
        except (AudioError, ValueError, OSError, RuntimeError) as e:
            return FileResult(str(path), error=one_line_error(e, path))
        return self._file_result(path, feats, timeline)

    def _file_result(self, path, feats: dict, timeline: bool) -> FileResult:
        try:
            track, tl = self._predictions(feats)
        except NotMusicError as e:
            return FileResult(str(path), duration=feats["duration"], error=str(e), not_music=True)
        return FileResult(str(path), track, tl if timeline else None, feats["duration"], note=feats.get("note"))

    def analyse_files(self, paths: list[str | os.PathLike], *, timeline: bool = False,
                      workers: int | None = None) -> Iterator[FileResult]:
        """:meth:`analyse_file` of many files, in input order. A file that fails gives an error
        entry and the rest go on.

        With ``workers`` > 1, decoding runs ahead in that many threads (libsndfile, PyAV, soxr
        and the loudness meter release the GIL) while the calling thread runs the views and
        networks of the file before: the network, which uses every core itself, is never run
        twice at once, and at most :data:`DECODE_AHEAD` windows per thread wait in memory.
        A timeline (read block by block as the network consumes it) and MIDI (rendered to a
        temporary file) are analysed whole in the threads, as before."""
        workers = min(4, os.cpu_count() or 1) if workers is None else workers  # 0 and 1: in this thread
        a = self.config.audio

        def work(path):  # in a decoding thread (or this one): decode, or everything
            try:
                if timeline or Path(path).suffix.lower() in MIDI_EXTENSIONS:
                    return path, None, self._file_features(path, timeline), None
                return path, load_window(path, a), None, None
            except (AudioError, ValueError, OSError, RuntimeError) as e:
                return path, None, None, one_line_error(e, path)
            except MemoryError:
                return path, None, None, f"{path}: out of memory while decoding"

        pool = ThreadPoolExecutor(workers) if workers > 1 else None
        results = map(work, paths) if pool is None else _ahead(pool, work, paths, DECODE_AHEAD * workers)
        try:
            for path, decoded, feats, err in results:
                if decoded is not None:
                    try:
                        feats = self._decoded_features(path, decoded, timeline)
                    except (AudioError, ValueError, OSError, RuntimeError) as e:
                        err = one_line_error(e, path)
                    except MemoryError:
                        err = f"{path}: out of memory"
                if err is not None:
                    yield FileResult(str(path), error=err)
                    continue
                yield self._file_result(path, feats, timeline)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)


# Decoded track windows (~10 MB each) that may wait per decoding thread for the network.
DECODE_AHEAD = 2


def _ahead(pool: ThreadPoolExecutor, fn, items, n: int) -> Iterator:
    """``pool.map(fn, items)`` with at most ``n`` results submitted ahead of the one being read
    (``Executor.map`` submits every item at once: a fast producer would hold them all)."""
    pending: collections.deque = collections.deque()
    it = iter(items)
    for x in it:
        pending.append(pool.submit(fn, x))
        if len(pending) >= n:
            break
    while pending:
        out = pending.popleft().result()
        nxt = next(it, _END)
        if nxt is not _END:
            pending.append(pool.submit(fn, nxt))
        yield out


_END = object()


def one_line_error(e: BaseException, path) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg if str(path) in msg else f"{path}: {msg}"


__all__ = ["FP16_TOLERANCE", "PREDICTOR_KEY", "Predictor", "PredictorConfig", "TIMELINE_HOP_S", "TIMELINE_MAX_MINUTES",
           "TIMELINE_WINDOW_S", "one_line_error", "timeline_starts"]
