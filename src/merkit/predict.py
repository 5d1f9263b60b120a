"""Emotion of a piece of music: one result per track, and a timeline of sliding windows.

::

    file ──decode, 44.1 kHz mono──> y ──window, -23 LUFS──> (L,) ──Mel + cochleagram──> (128, T), (84, T)
                                                                     └──DAMER──> p_mel, p_coch, p_fused

>>> model = load_model()                       # the model shipped inside the package
>>> r = model.predict_file("song.mp3")
>>> r.quadrant, r.quadrant_word, r.arousal, r.valence, r.certainty

The track-level result uses the paper's analysis window (60 s from 15 s, §III-A). The timeline
uses windows of ``TIMELINE_WINDOW_S`` every ``TIMELINE_HOP_S``: the feature extractor derives
the frame length from the window (``N = L / 44``), so a 10 s window still gives the T = 87
frames the network takes, at a finer time resolution. The shipped model is trained on both
window lengths (``bench/train_default.py``), so both are in its training distribution.

A model holds one or more DAMER networks, each trained on one task:

* ``quadrant`` (4 classes): arousal and valence are the marginals,
  ``P(high A) = P(Q1) + P(Q2)`` and ``P(positive V) = P(Q1) + P(Q4)``;
* ``a`` and/or ``v`` (2 classes each): the quadrant probabilities are the products of the two
  marginals (the two networks are independent estimates).

``certainty`` is the probability of the predicted quadrant (for DAMER networks trained by
``merkit train``: not calibrated). ``view_agreement`` is DAMER's cross-view reliability
``r = exp(-JS(p_mel, p_coch))`` (paper Eq. 12, §IV-C), averaged over the networks: 1 when the Mel
and cochleagram views agree exactly, and at least ``exp(-log 2) = 0.5``; it says how much the two
views agree, not how likely the answer is.

Before any emotion is given, the track window is checked for music (:mod:`merkit.content`):
silence, steady signals and noise raise :class:`~merkit.content.NotMusicError` (``predict*``) or
give a "not music" result (``analyse_file*``); a silent timeline window gets no emotion and a
``warning``.
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from .audio import (AUDIO_EXTENSIONS, MIDI_EXTENSIONS, AudioError, as_audio, decode, downmix, load_window, prepare,
                    read_mono)
from .config import AudioConfig, FeatureConfig, from_dict, to_dict
from .content import ContentCheck, NotMusicError, check_window
from .data.manifest import QUADRANT_WORDS

if TYPE_CHECKING:
    from .onnx_backend import OnnxRunner

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
# Where the default model lives inside the package (package data, no network at load time).
DEFAULT_MODEL_FILE = Path(__file__).parent / "assets" / "default_model.pt"
# Files `merkit predict FOLDER` picks up: the audio front end's formats and MIDI (rendered).
PREDICT_EXTENSIONS = tuple(sorted(set(AUDIO_EXTENSIONS) | set(MIDI_EXTENSIONS)))
PREDICTOR_KEY = "predictor"  # the checkpoint entry holding the front-end settings
# A float16 model file may move a probability by this much from its float32 original; the
# export refuses larger changes and EmotionModel.check verifies a loaded file against it.
FP16_TOLERANCE = 0.02
TASKS = ("quadrant", "a", "v")
# Quadrant q (1..4) is high arousal for Q1, Q2 and positive valence for Q1, Q4 (Russell 1980;
# the same convention as merkit.data.manifest.quadrant_from_va).
_HIGH_A = np.array([1.0, 1.0, 0.0, 0.0])
_POS_V = np.array([1.0, 0.0, 0.0, 1.0])


@dataclass(frozen=True)
class Prediction:
    """The emotion of one analysis window.

    ``arousal`` and ``valence`` are probabilities of high arousal and positive valence; the
    ``*_score`` fields hold a continuous estimate where the model has a regression output
    (DAMER has none: ``None``). ``start`` / ``end`` are seconds into the track (for a clip
    shorter than the window, the clip was looped to fill it: ``looped``). ``certainty`` is the
    probability of ``quadrant``; ``view_agreement`` DAMER's agreement of its two views (None for
    other models). A window with no music in it has every emotion field None and a ``warning``.
    """

    arousal: float | None
    valence: float | None
    quadrant: int | None  # 1..4
    quadrant_word: str | None
    quadrant_probs: tuple[float, float, float, float] | None
    certainty: float | None
    start: float
    end: float
    looped: bool = False
    view_agreement: float | None = None
    arousal_score: float | None = None
    valence_score: float | None = None
    # mood words (unified model): the most likely MIREX cluster and its adjectives, and the
    # predicted share of listeners who would tick each GEMS emotion
    mood_cluster: int | None = None
    mood_words: str | None = None
    gems: dict | None = None
    warning: str | None = None

    @classmethod
    def no_music(cls, start: float, end: float, looped: bool, reason: str) -> "Prediction":
        return cls(arousal=None, valence=None, quadrant=None, quadrant_word=None, quadrant_probs=None,
                   certainty=None, start=start, end=end, looped=looped, warning=f"not music: {reason}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["quadrant_probs"] is not None:
            d["quadrant_probs"] = list(d["quadrant_probs"])
        return d


@dataclass
class FileResult:
    """What ``merkit predict`` reports for one input: the track result and its timeline, or an
    error message (then ``prediction`` is None). ``status``: ``"ok"``, ``"not_music"`` (the
    input was read but holds no music: ``error`` says why; no emotion is given) or ``"error"``."""

    path: str
    prediction: Prediction | None = None
    timeline: list[Prediction] | None = None
    duration: float | None = None
    error: str | None = None
    not_music: bool = False
    note: str | None = None  # e.g. that the timeline covers only the start of a very long file

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        return "ok" if self.ok else "not_music" if self.not_music else "error"

    def to_dict(self) -> dict:
        return {"path": self.path, "ok": self.ok, "status": self.status, "error": self.error,
                "duration": self.duration, "note": self.note,
                "prediction": self.prediction.to_dict() if self.prediction else None,
                "timeline": [p.to_dict() for p in self.timeline] if self.timeline is not None else None}


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


def quadrant_probs(pa: np.ndarray, pv: np.ndarray) -> np.ndarray:
    """(B, 4) quadrant probabilities Q1..Q4 as the products of P(high A) and P(positive V).

    Every model derives its quadrant this way, so that the quadrant, the (valence, arousal)
    point and the plots tell one story: the most likely quadrant is always the one the point
    lies in. (Taking the argmax of a joint 4-class output instead disagreed with its own
    marginals for 22 % of Emotify tracks.)"""
    pa, pv = np.asarray(pa, dtype=np.float64), np.asarray(pv, dtype=np.float64)
    return np.stack([pa * pv, pa * (1 - pv), (1 - pa) * (1 - pv), (1 - pa) * pv], axis=-1)


def combine(probs: dict[str, np.ndarray], reliability: np.ndarray) -> list[dict]:
    """Per-window fields of :class:`Prediction` from each task's ensemble probabilities.

    probs: ``{task: (B, C)}`` with task in ``quadrant`` / ``a`` / ``v``; reliability: ``(B,)``.
    A quadrant network gives the marginals ``P(Q1) + P(Q2)`` and ``P(Q1) + P(Q4)``; a network
    per dimension is averaged with them; the quadrant comes from the marginals
    (:func:`quadrant_probs`).
    """
    b = len(reliability)
    pa = pv = None
    if "quadrant" in probs:
        pq = probs["quadrant"]
        pa, pv = pq @ _HIGH_A, pq @ _POS_V
    if "a" in probs:  # independent estimates of the same marginal: average them
        pa = probs["a"][:, 1] if pa is None else (pa + probs["a"][:, 1]) / 2
    if "v" in probs:
        pv = probs["v"][:, 1] if pv is None else (pv + probs["v"][:, 1]) / 2
    pq = quadrant_probs(pa, pv) if pa is not None and pv is not None else None
    out = []
    for i in range(b):
        q = int(np.argmax(pq[i])) + 1 if pq is not None else None
        if pq is not None:
            certainty = float(pq[i].max())
        else:  # one dimension only: the probability of its more likely side
            m = pa if pa is not None else pv
            certainty = float(max(m[i], 1 - m[i]))
        out.append({
            "arousal": float(pa[i]) if pa is not None else None,
            "valence": float(pv[i]) if pv is not None else None,
            "quadrant": q,
            "quadrant_word": QUADRANT_WORDS[q] if q else None,
            "quadrant_probs": tuple(float(x) for x in pq[i]) if pq is not None else None,
            "certainty": certainty,
            "view_agreement": float(reliability[i]),
        })
    return out


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

    @property
    def backend(self) -> str:
        return "torch" if self.onnx is None else "onnx"

    def use_onnx(self, path: "str | os.PathLike | OnnxRunner | None" = None) -> "Predictor":
        """Run the networks with onnxruntime from now on: the `merkit export` file ``path``
        (refused unless exported from this model), an ``OnnxRunner``, or (None) this model's
        export in the cache, made on first use (:func:`merkit.onnx_backend.cached_export`).
        The front end, calibration, content check and timeline stay the same code."""
        from .onnx_backend import OnnxRunner, cached_export

        if str(self.device) != "cpu":
            raise ValueError("the ONNX backend runs on the CPU; use the torch backend for --device "
                             f"{self.device}")
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

    def _features_of(self, track: tuple, y_timeline: np.ndarray | None, name: str) -> dict:
        """Features of the track window ``track`` = (window, (start, end, looped), AudioInfo)
        (row 0) and of the timeline windows of ``y_timeline`` (44.1 kHz mono; None: no
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
            from .loudness import integrated_loudness

            lufs = integrated_loudness(win, a.sample_rate)
        return check_window(lufs, log_mel, a.silence_lufs, self.content_check)

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
        """``(n_windows, L)`` loudness-normalised timeline windows, their (start, end, looped)
        and their loudness (LUFS; ``-inf`` for digital silence): :meth:`_timeline_chunks`
        joined (the models themselves take the chunks, so that the windows, which overlap, are
        never all in memory at once)."""
        wins, times, lufs = [], [], []
        for w, t, l in self._timeline_chunks(y, name):
            wins.append(w)
            times += t
            lufs.append(l)
        return np.concatenate(wins), times, np.concatenate(lufs)

    def _timeline_chunks(self, y: np.ndarray, name: str):
        """Timeline windows a few at a time (:data:`TIMELINE_CHUNK_SAMPLES` of audio per chunk):
        yields ``(windows (b, L), [(start, end, looped)], lufs (b,))``.

        Each window is what :func:`prepare` makes of its slice; the loudness of a chunk's
        windows is measured and applied in one batched pass (:mod:`merkit.loudness`), which
        gives the same windows as normalising them one at a time, ~10x faster.
        """
        from .loudness import integrated_loudness_batch, normalize_loudness_batch

        a = self.config.timeline_audio()
        sr = a.sample_rate
        w = a.window_samples
        step = max(1, TIMELINE_CHUNK_SAMPLES // w)
        cut = dataclasses.replace(a, target_lufs=None)  # cut (and loop) only: loudness comes below
        starts = timeline_starts(len(y), sr, self.config.timeline_window, self.config.timeline_hop)
        for i in range(0, len(starts), step):
            wins, times = [], []
            for s in starts[i:i + step]:
                win, info = prepare(y[s:s + w], sr, cut, name=name)  # a view of y unless looped
                wins.append(win)
                times.append((s / sr, min(s + w, len(y)) / sr, info.repeated))
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
        feats = self._features_of(self._track_window(y, name), y[:cap] if timeline else None, name)
        return self._note_cap(feats, timeline)

    def _file_features(self, path: str | os.PathLike, timeline: bool) -> dict:
        """Features of a file. Only the track window is decoded for the track result, and only
        the first :attr:`timeline_max_seconds` for the timeline, so that memory stays bounded
        for any file length (MIDI is rendered whole)."""
        a = self.config.audio
        if Path(path).suffix.lower() in MIDI_EXTENSIONS:
            y, src_sr = decode(path, midi_sample_rate=a.sample_rate)
            return self.features(downmix(y), src_sr, name=str(path), timeline=timeline)
        win, info = load_window(path, a)
        track = (win, (info.window_start, info.window_start + min(a.window_seconds, info.duration), info.repeated), info)
        y_tl = read_mono(path, a.sample_rate, seconds=self.timeline_max_seconds) if timeline else None
        return self._note_cap(self._features_of(track, y_tl, str(path)), timeline)

    def _note_cap(self, feats: dict, timeline: bool) -> dict:
        if timeline and feats["duration"] > self.timeline_max_seconds + 1e-6:
            feats["note"] = (f"the timeline covers the first {self.timeline_max_seconds / 60:g} of "
                             f"{feats['duration'] / 60:.1f} minutes (--timeline-max-minutes)")
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
            return FileResult(str(path), error=_one_line(e, path))
        return self._file_result(path, feats, timeline)

    def _file_result(self, path, feats: dict, timeline: bool) -> FileResult:
        try:
            track, tl = self._predictions(feats)
        except NotMusicError as e:
            return FileResult(str(path), duration=feats["duration"], error=str(e), not_music=True)
        return FileResult(str(path), track, tl if timeline else None, feats["duration"], note=feats.get("note"))

    def analyse_files(self, paths: list[str | os.PathLike], *, timeline: bool = False,
                      workers: int | None = None) -> Iterator[FileResult]:
        """:meth:`analyse_file` of many files, in input order. Decoding and features run in
        ``workers`` threads (libsndfile, soxr, numpy's FFT and BLAS release the GIL), the
        networks in the calling thread. A file that fails gives an error entry and the rest go on."""
        workers = workers or min(4, os.cpu_count() or 1)

        def work(path):
            try:
                return path, self._file_features(path, timeline), None
            except (AudioError, ValueError, OSError, RuntimeError) as e:
                return path, None, _one_line(e, path)
            except MemoryError:
                return path, None, f"{path}: out of memory while decoding"

        if workers <= 1:
            results = map(work, paths)
            pool = None
        else:
            pool = ThreadPoolExecutor(workers)
            results = pool.map(work, paths)
        try:
            for path, feats, err in results:
                if err is not None:
                    yield FileResult(str(path), error=err)
                    continue
                yield self._file_result(path, feats, timeline)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)


class EmotionModel(Predictor):
    """A predictor: DAMER network(s) and the front end they were trained with.

    Parameters
    ----------
    networks : ``{task: model}`` with task ``quadrant``, ``a`` or ``v``; each model takes raw
        features (``merkit.models.load_model``) and is put in eval mode.
    config : the front end (window, loudness, features, timeline).
    info : free-form description kept with the model (data, metrics, licences).
    """

    def __init__(self, networks: dict, config: PredictorConfig | None = None, *, info: dict | None = None):
        import torch

        if not networks or set(networks) - set(TASKS):
            raise ValueError(f"networks must be a non-empty dict with keys in {TASKS}, got {list(networks)}")
        self.networks = {k: m.eval() for k, m in networks.items()}
        self.config = config or PredictorConfig()
        self.info = info or {}
        self.reference: dict | None = None  # float32 predictions of reference_signal(), if stored
        self._extractors: dict[float, object] = {}
        self._torch = torch
        for task, m in self.networks.items():
            want = 4 if task == "quadrant" else 2
            if m.cfg.n_classes != want:
                raise ValueError(f"a {task!r} network needs {want} classes, this one has {m.cfg.n_classes}")
            if m.cfg.n_frames != self.config.features.n_frames:
                raise ValueError(f"the {task!r} network takes T={m.cfg.n_frames} frames, the front end "
                                 f"makes {self.config.features.n_frames}")

    def __repr__(self) -> str:
        a = self.config.audio
        return (f"EmotionModel(tasks={list(self.networks)}, window={a.window_seconds:g} s from "
                f"{a.window_start:g} s, timeline={self.config.timeline_window:g} s every "
                f"{self.config.timeline_hop:g} s, backend={self.backend})")

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike]) -> "EmotionModel":
        """A predictor from checkpoint files: the shipped model file or ``best.pt`` of
        ``merkit train`` runs (one per task; the front end comes from the first file, or from
        the feature folder's settings stored with a training run)."""
        from .models import load_model as load_network
        from .checkpoint import load_checkpoint

        networks, config, info, reference = {}, None, {}, None
        for path in paths:
            ckpt = load_checkpoint(path)
            net = load_network(path).float()
            task = ckpt["config"].get("train", {}).get("label") or ckpt.get(PREDICTOR_KEY, {}).get("task")
            if task not in TASKS:
                raise ValueError(f"{path}: checkpoint of unknown task {task!r}")
            if task in networks:
                raise ValueError(f"{path}: a second {task!r} network; give one file per task")
            networks[task] = net
            if config is None:
                if PREDICTOR_KEY in ckpt:
                    config = PredictorConfig.from_dict(ckpt[PREDICTOR_KEY])
                    info = ckpt[PREDICTOR_KEY].get("info", {})
                    reference = ckpt[PREDICTOR_KEY].get("reference")
                else:
                    config = PredictorConfig.from_feature_info((ckpt.get("data_info") or {}).get("feature_info"))
                    info = {"checkpoint": str(path), "metrics": ckpt.get("metrics")}
        if not networks:
            raise ValueError("no model file given")
        model = cls(networks, config, info=info)
        model.reference = reference
        return model

    def reference_probabilities(self) -> dict[str, list[list[float]]]:
        """``{task: (B, C)}`` ensemble probabilities of the track and timeline windows of
        :func:`reference_signal` (stored in a model file at export, see :meth:`check`)."""
        feats = self.features(reference_signal(), REFERENCE_SR, timeline=True)
        return {t: p["ensemble"].double().tolist() for t, p in self._probabilities(feats["mel"], feats["coch"]).items()}

    def check(self, tolerance: float = FP16_TOLERANCE) -> float:
        """Largest difference between this model's probabilities on :func:`reference_signal` and
        those stored in its file when it was exported (float32); raises ValueError above
        ``tolerance`` (a damaged file, or a front end that changed since the model was trained)."""
        if not self.reference:
            raise ValueError("this model file stores no reference predictions")
        now = self.reference_probabilities()
        diff = max(float(np.abs(np.asarray(now[t]) - np.asarray(self.reference[t])).max()) for t in now)
        if diff > tolerance:
            raise ValueError(f"predictions differ from the stored reference by {diff:.4f} > {tolerance}")
        return diff

    # -- features --------------------------------------------------------------------------------
    def _extractor(self, audio: AudioConfig):
        from .features.extractor import FeatureExtractor

        key = audio.window_seconds
        if key not in self._extractors:  # filterbanks are built once per window length
            self._extractors[key] = FeatureExtractor(audio, self.config.features)
        return self._extractors[key]

    def _timeline_features(self, wins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mel ``(B, n_mels, T)`` and cochleagram ``(B, n_coch, T)`` of timeline windows ``(B, L)``."""
        f = self._extractor(self.config.timeline_audio())(wins)
        return f.mel, f.coch

    def _features_of(self, track: tuple, y_timeline: np.ndarray | None, name: str) -> dict:
        """``{"mel": (B, n_mels, T), "coch": (B, n_coch, T), "times": [(start, end, looped)],
        "duration": s, ...}``: row 0 the track window, rows 1.. the timeline windows."""
        a = self.config.audio
        win, times, info = track
        f = self._extractor(a)(win)
        mel, coch, all_times = [f.mel[None]], [f.coch[None]], [times]
        flags = []
        content = self._check_track(win, info, f.mel)
        if y_timeline is not None and not content[0]:  # no timeline for input that is not music
            # a few windows per call: the same features as one call (each window is
            # independent), but the windows and FFT temporaries of a call stay small enough to be
            # reused instead of freshly mapped (faster, and ~1 GB less peak memory for 10 min)
            for wins, t_times, lufs in self._timeline_chunks(y_timeline, name):
                t_mel, t_coch = self._timeline_features(wins)
                mel.append(t_mel)
                coch.append(t_coch)
                all_times += t_times
                flags += self._window_flags(lufs)
        return {"mel": np.concatenate(mel), "coch": np.concatenate(coch), "times": all_times,
                "duration": info.duration, "content": content,
                "window_flags": flags}

    # -- the networks ----------------------------------------------------------------------------
    def predict_features(self, mel: np.ndarray, coch: np.ndarray) -> list[dict]:
        """Prediction fields (see :func:`combine`) of raw features ``(B, n_mels, T)``, ``(B, n_coch, T)``."""
        from .training.losses import js_divergence_probs

        torch = self._torch
        probs, rel = {}, []
        with torch.inference_mode():
            for task, p in self._probabilities(mel, coch).items():
                probs[task] = p["ensemble"].double().numpy()
                rel.append(torch.exp(-js_divergence_probs(p["mel"], p["coch"])).numpy())
        return combine(probs, np.mean(rel, axis=0))

    def _probabilities(self, mel: np.ndarray, coch: np.ndarray) -> dict[str, dict]:
        """``{task: {head: (B, C) tensor}}``: every network's ``predict_proba`` of raw features
        ``(B, n_mels, T)``, ``(B, n_coch, T)``, in torch or in the exported graph (:meth:`use_onnx`)."""
        mel = np.ascontiguousarray(mel, dtype=np.float32)
        coch = np.ascontiguousarray(coch, dtype=np.float32)
        if self.onnx is not None:
            return self.onnx.probabilities(mel, coch)
        torch = self._torch
        m, c = torch.from_numpy(mel).to(self.device), torch.from_numpy(coch).to(self.device)
        with torch.inference_mode():
            return {task: {h: p.float().cpu() for h, p in net.predict_proba(m, c).items()}
                    for task, net in self.networks.items()}

    def _place(self, device) -> None:
        for net in self.networks.values():
            net.to(device)

    def _results(self, feats: dict) -> tuple[Prediction, list[Prediction]]:
        fields = self.predict_features(feats["mel"], feats["coch"])
        preds = [Prediction(**f, start=t[0], end=t[1], looped=t[2]) for f, t in zip(fields, feats["times"])]
        return preds[0], preds[1:]


REFERENCE_SR = 44_100
REFERENCE_SECONDS = 24.0  # longer than two timeline windows, shorter than the track window


def reference_signal() -> np.ndarray:
    """A fixed, synthetic 24 s signal (an A-minor triad with a 2 Hz tremolo and a rising
    noise burst every 6 s) at 44.1 kHz; its predictions are stored in a model file so that a
    loaded model can verify itself (:meth:`EmotionModel.check`)."""
    t = np.arange(int(REFERENCE_SECONDS * REFERENCE_SR)) / REFERENCE_SR
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63)) / 3
    tremolo = 0.6 + 0.4 * np.sin(2 * np.pi * 2.0 * t)
    # deterministic "noise": a sum of incommensurate sines, not an RNG whose stream could change
    burst = sum(np.sin(2 * np.pi * f * t + k) for k, f in enumerate((1234.5, 2718.3, 4096.7, 7777.7)))
    envelope = (t % 6.0) / 6.0
    return (0.3 * chord * tremolo + 0.05 * burst * envelope).astype(np.float32)


def _one_line(e: BaseException, path) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg if str(path) in msg else f"{path}: {msg}"


def find_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files to predict: each file given as is (whatever its extension, so that a bad file gets
    an error entry), folders searched recursively for :data:`PREDICT_EXTENSIONS`, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            # a dangling symbolic link is listed too: it gets an error entry instead of vanishing
            out += sorted(f for f in p.rglob("*") if (f.is_file() or (f.is_symlink() and not f.exists()))
                          and f.suffix.lower() in PREDICT_EXTENSIONS)
        else:
            out.append(p)  # a missing file becomes an error entry, not an abort
    return out


def load_model(path: str | os.PathLike | Iterable[str | os.PathLike] | None = None) -> Predictor:
    """The shipped default model (``path=None``), or a model file: a unified-model file
    (:class:`~merkit.predict_unified.UnifiedModel`: the shipped model, ``merkit train --model
    unified`` runs), or DAMER checkpoints, one per task (:class:`EmotionModel`)."""
    if path is None:
        if not DEFAULT_MODEL_FILE.is_file():
            raise FileNotFoundError(f"{DEFAULT_MODEL_FILE}: the default model is missing from the "
                                    "installation; rebuild it with `python bench/train_default.py`")
        path = DEFAULT_MODEL_FILE
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    onnx = [p for p in paths if str(p).endswith(".onnx")]
    if onnx:
        raise ValueError(f"{onnx[0]}: an ONNX export; run it with `merkit predict --backend onnx` "
                         "(merkit.onnx_backend.load_onnx_model)")
    model = None
    if len(paths) == 1:
        import torch

        try:
            blob = torch.load(paths[0], map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(f"{paths[0]}: model file not found") from None
        except Exception as e:  # not a torch file, or one holding more than tensors and plain data
            raise ValueError(f"{paths[0]}: not a merkit model file ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
        if isinstance(blob, dict) and blob.get("kind") == "unified":
            from .predict_unified import UnifiedModel

            model = UnifiedModel.from_blob(blob, path=paths[0])
        elif isinstance(blob, dict) and blob.get("kind") == "dsaml":
            from .predict_dynamic import DynamicModel

            model = DynamicModel.from_blob(blob, path=paths[0])
    if model is None:
        model = EmotionModel.from_files(paths)
    model.source_files = tuple(str(p) for p in paths)
    return model


def quadrant_point(p: Prediction) -> tuple[float, float]:
    """Position on the valence-arousal plane, each in [-1, 1]: ``2 P - 1`` of each dimension
    (0 = undecided), or the model's score where it gives no probability (a dynamic model).
    Used by the plots and the web page."""
    def one(prob, score):
        return 2 * prob - 1 if prob is not None else score if score is not None else 0.0

    return one(p.valence, p.valence_score), one(p.arousal, p.arousal_score)


def _level(p: Prediction, dim: str) -> float:
    """A dimension on [0, 1] for plotting: the probability, or (score + 1) / 2 without one."""
    prob, score = getattr(p, dim), getattr(p, f"{dim}_score")
    return prob if prob is not None else (score + 1) / 2 if score is not None else float("nan")


def plot_timeline(result: FileResult, path: str | os.PathLike | None = None, *, title: str | None = None):
    """Two panels: P(positive valence) and P(high arousal) over time, and the path of the
    timeline on the valence-arousal plane. Saves a PNG atomically when ``path`` is given;
    returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    tl = result.timeline or []
    if not tl:
        raise ValueError(f"{result.path}: no timeline to plot (run with timeline=True)")
    t = np.array([(p.start + p.end) / 2 for p in tl])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.8, 1]})
    probs = any(p.valence is not None or p.arousal is not None for p in tl)
    ms = 3 if len(tl) < 200 else 0
    ax1.plot(t, [_level(p, "valence") for p in tl], "-o", ms=ms, label="valence " + ("P(positive)" if probs else "(score + 1) / 2"), color="tab:green")
    ax1.plot(t, [_level(p, "arousal") for p in tl], "-o", ms=ms, label="arousal " + ("P(high)" if probs else "(score + 1) / 2"), color="tab:red")
    ax1.axhline(0.5, color="0.6", lw=0.8, ls="--")
    ax1.set(xlabel="time (s, window centre)", ylabel="probability" if probs else "score, mapped to [0, 1]", ylim=(0, 1))
    ax1.legend(loc="upper right", fontsize=8)
    xy = np.array([quadrant_point(p) for p in tl])
    ax2.add_patch(plt.Circle((0, 0), 1, fill=False, color="0.7"))
    ax2.axhline(0, color="0.7", lw=0.8)
    ax2.axvline(0, color="0.7", lw=0.8)
    for q, (x, y) in {1: (0.5, 0.5), 2: (-0.5, 0.5), 3: (-0.5, -0.5), 4: (0.5, -0.5)}.items():
        ax2.text(x, y, f"Q{q}\n{QUADRANT_WORDS[q]}", ha="center", va="center", fontsize=7, color="0.5")
    ax2.plot(xy[:, 0], xy[:, 1], "-", color="tab:blue", lw=1, alpha=0.6)
    sc = ax2.scatter(xy[:, 0], xy[:, 1], c=t, cmap="viridis", s=18, zorder=3)
    fig.colorbar(sc, ax=ax2, label="time (s)", fraction=0.046)
    ax2.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), xlabel="valence", ylabel="arousal", aspect="equal")
    fig.suptitle(title or Path(result.path).name, fontsize=10)
    fig.tight_layout()
    if path is not None:
        from .outputs import atomic_path, check_figure, png_metadata

        check_figure(path)  # never over an image merkit did not make
        try:
            with atomic_path(path, suffix=".png") as tmp:
                fig.savefig(tmp, dpi=110, format="png", metadata=png_metadata())
        finally:
            plt.close(fig)
    return fig


__all__ = ["EmotionModel", "Predictor", "FileResult", "Prediction", "PredictorConfig", "DEFAULT_MODEL_FILE",
           "TIMELINE_WINDOW_S", "TIMELINE_HOP_S", "combine", "downmix", "find_inputs", "load_model",
           "plot_timeline", "quadrant_point", "reference_signal", "timeline_starts"]
