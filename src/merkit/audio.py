"""Audio front end (paper §III-A): decode, resample to 44.1 kHz, downmix, select the analysis
window, normalise loudness to -23 LUFS.

Shapes: mono audio is ``(n_samples,)`` float32; stereo is ``(n_samples, channels)``.

Size: one module over ~400 lines on purpose: reading only the analysis window (seek, resample
margins), the whole-file paths it falls back to (short clips, MIDI, truncated or damaged files,
FFmpeg's formats) and the loudness step must agree sample for sample, and are checked together
by tests/test_audio.py; reading them side by side is how they stay in step.
"""
from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .av_decode import AV_EXTENSIONS, AvDecodeError, AvStream, av_info, decode_av, decode_av_counted
from .config import AudioConfig

# libsndfile reads these; PyAV (FFmpeg) the rest of what a music library holds (AV_EXTENSIONS)
SNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")
AUDIO_EXTENSIONS = SNDFILE_EXTENSIONS + AV_EXTENSIONS
MIDI_EXTENSIONS = (".mid", ".midi")


class AudioError(ValueError):
    """An audio file or array cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class AudioInfo:
    """What the front end saw and did (kept with results, so outputs can be audited)."""

    duration: float  # seconds of decoded audio before windowing
    source_sample_rate: int
    window_start: float  # seconds into the track where the analysis window starts
    repeated: bool  # the clip was shorter than the window and was extended (short_policy)
    loudness_lufs: float  # integrated loudness of the window before normalisation
    gain_db: float  # gain applied (0 for silence)
    note: str | None = None  # e.g. that damaged parts of the file were skipped


def _name(path) -> str:
    return str(path) if path is not None else "<array>"


def decode(path: str | os.PathLike, *, soundfont: str | None = None,
           midi_sample_rate: int = 44_100) -> tuple[np.ndarray, int]:
    """Decode a file as it is: ``(n, channels)`` float32 at its own rate.

    wav, flac, ogg, mp3 (libsndfile >= 1.1), AAC/M4A, WMA, WebM, Matroska and the other
    :data:`~merkit.av_decode.AV_EXTENSIONS` (PyAV), and MIDI (rendered by FluidSynth).
    """
    y, sr, _ = _decode_noted(path, soundfont=soundfont, midi_sample_rate=midi_sample_rate)
    return y, sr


def _decode_noted(path: str | os.PathLike, *, soundfont: str | None = None,
                  midi_sample_rate: int = 44_100) -> tuple[np.ndarray, int, str | None]:
    """:func:`decode`, and a note when part of a damaged file had to be skipped (:func:`_salvage`)."""
    import soundfile as sf

    path = _check_file(Path(path))
    if path.suffix.lower() in MIDI_EXTENSIONS:
        from .midi import render_midi

        with tempfile.TemporaryDirectory(prefix="merkit-midi-") as tmp:
            wav = render_midi(path, Path(tmp) / "render.wav", sample_rate=midi_sample_rate,
                              soundfont=soundfont)
            return _decode_noted(wav)
    if _is_av(path):
        try:
            y, sr = decode_av(path)
        except AvDecodeError as e:
            raise AudioError(f"{path}: cannot decode audio ({e})") from None
        return y, sr, None
    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile raises several types; all mean "cannot decode"
        return _salvage(path, e)
    return y, int(sr), None


# A damaged file is analysed when at least this share of the audio its header states is left
MIN_SALVAGED_SHARE = 0.5


def _salvage(path: Path, error: BaseException) -> tuple[np.ndarray, int, str]:
    """What FFmpeg (PyAV) can decode of a file libsndfile gave up on (damaged MP3 frames in the
    middle, a cut header), with a note on what was lost; the libsndfile error when too little
    (under :data:`MIN_SALVAGED_SHARE` of the stated length) or nothing is left."""
    import soundfile as sf

    try:
        y, sr, bad = decode_av_counted(path)
    except AvDecodeError:
        raise _decode_error(path, error) from None
    try:
        info = sf.info(str(path))
        stated = info.frames / info.samplerate if info.samplerate else 0.0
    except Exception:  # no header to go by
        stated = 0.0
    got = len(y) / sr
    if stated and got < MIN_SALVAGED_SHARE * stated:
        raise AudioError(f"{path}: damaged audio: only {got:.1f} s of {stated:.1f} s could be decoded") from None
    lost = max(0.0, stated - got)
    note = (f"damaged audio: about {lost:.1f} s of {stated:.1f} s could not be decoded and were skipped"
            if lost >= 0.05 else f"damaged audio: {bad} damaged part(s) skipped" if bad else
            "decoded by FFmpeg after libsndfile failed")
    return y, sr, note


def _is_av(path) -> bool:
    return Path(path).suffix.lower() in AV_EXTENSIONS


def _check_file(path: Path) -> Path:
    if path.is_symlink() and not path.exists():
        raise AudioError(f"{path}: dangling symbolic link (to {os.readlink(path)})")
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied (this user may not read the file)")
    return path


def _decode_error(path, e: BaseException) -> AudioError:
    """One line naming the file and libsndfile's reason (its last line), in words a user can act on."""
    msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return AudioError(f"{path}: cannot decode audio ({_decoder_message(msg)})")


def _decoder_message(msg: str) -> str:
    """libsndfile's reason, in words a user can act on."""
    if "not a regular file" in msg or "Format not recognised" in msg or "unknown format" in msg.lower():
        return ("not an audio format merkit reads (wav, flac, ogg/opus, mp3, aiff, m4a/aac, wma, webm, mka, ...), "
                "or a damaged file")
    return msg


def load_audio(path: str | os.PathLike, *, sample_rate: int | None = None, mono: bool = True,
               soundfont: str | None = None) -> tuple[np.ndarray, int]:
    """Decode a file to float32, optionally resampled (soxr, high quality) and downmixed.

    Returns ``(y, sr)`` with ``y`` of shape ``(n,)`` if ``mono`` else ``(n, channels)``.
    """
    y, sr = decode(path, soundfont=soundfont, midi_sample_rate=sample_rate or 44_100)
    return _finish(y, sr, sample_rate=sample_rate, mono=mono, name=str(path))


def downmix(y: np.ndarray) -> np.ndarray:
    """``(n, channels)`` -> ``(n,)``: the mean of the channels, bit-identical to
    ``y.mean(axis=1)`` for stereo but ~7x faster (numpy reduces a short inner axis slowly; this
    was the largest stage after decoding in bench/predict.py)."""
    if y.ndim == 1 or y.shape[1] == 1:
        return y.reshape(-1)
    mono = y[:, 0].copy()
    for c in range(1, y.shape[1]):
        mono += y[:, c]
    return mono / np.float32(y.shape[1])


def _finish(y: np.ndarray, sr: int, *, sample_rate, mono, name) -> tuple[np.ndarray, int]:
    if y.ndim == 1:
        y = y[:, None]
    if y.shape[0] == 0:
        raise AudioError(f"{name}: zero-length audio")
    if not np.isfinite(y).all():
        bad = int((~np.isfinite(y)).sum())
        raise AudioError(f"{name}: {bad} NaN/Inf samples")
    if mono and y.shape[1] > 1:
        y = downmix(y)[:, None]
    if sample_rate is not None and sr != sample_rate:
        y = resample(y, sr, sample_rate)
        sr = sample_rate
    y = np.ascontiguousarray(y[:, 0] if mono else y, dtype=np.float32)
    return y, int(sr)


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality resampling (soxr "HQ"); ``y`` is ``(n,)`` or ``(n, channels)``."""
    import soxr

    if sr_in == sr_out:
        return y
    return soxr.resample(y, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def as_audio(y: np.ndarray, sr: int, *, sample_rate: int, mono: bool = True) -> np.ndarray:
    """Validate an in-memory signal the same way a file is (``(n,)``, ``(n, ch)`` or ``(ch, n)``
    with ch <= 8) and bring it to ``sample_rate``."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2 and y.shape[0] <= 8 and y.shape[1] > y.shape[0]:
        y = y.T  # librosa-style (channels, n)
    if y.ndim not in (1, 2):
        raise AudioError(f"<array>: expected (n,) or (n, channels) audio, got shape {y.shape}")
    return _finish(y, int(sr), sample_rate=sample_rate, mono=mono, name="<array>")[0]


def window_bounds(n_samples: int, sr: int, cfg: AudioConfig) -> tuple[int, bool]:
    """Start sample of the analysis window and whether the clip must be extended.

    Tracks long enough for the paper's window take it at ``window_start``; tracks of at least
    ``window_seconds`` but shorter than ``window_start + window_seconds`` use the centred window;
    shorter tracks use the whole clip (start 0) and are extended by ``short_policy``.
    """
    w = int(round(cfg.window_seconds * sr))
    start = int(round(cfg.window_start * sr))
    if n_samples >= start + w:
        return start, False
    if n_samples >= w:
        return (n_samples - w) // 2, False
    return 0, True


def select_window(y: np.ndarray, sr: int, cfg: AudioConfig) -> tuple[np.ndarray, int, bool]:
    """Cut (or extend) ``y`` to exactly ``cfg.window_seconds`` (see :func:`window_bounds`)."""
    w = int(round(cfg.window_seconds * sr))
    start, short = window_bounds(len(y), sr, cfg)
    if not short:
        return y[start:start + w], start, False
    if cfg.short_policy == "repeat":
        reps = math.ceil(w / len(y))
        out = np.tile(y, (reps,) + (1,) * (y.ndim - 1))[:w]
    else:
        out = np.zeros((w,) + y.shape[1:], dtype=y.dtype)
        out[:len(y)] = y
    return out, 0, True


def integrated_loudness(y: np.ndarray, sr: int) -> float:
    """BS.1770-4 integrated loudness in LUFS of ``(n,)`` or ``(n, channels)`` audio; ``-inf`` for
    digital silence. :mod:`merkit.loudness`: pyloudnorm's meter (K-weighting, 400 ms gated
    blocks) to ~1e-9 LU, vectorised instead of a Python loop over blocks."""
    from .loudness import integrated_loudness as bs1770

    return bs1770(y, sr)


def normalize_loudness(y: np.ndarray, sr: int, *, target_lufs: float = -23.0,
                       silence_lufs: float = -70.0) -> tuple[np.ndarray, float, float]:
    """Scale ``y`` to ``target_lufs`` (EBU R128). Audio quieter than ``silence_lufs`` (the
    BS.1770 absolute gate) is returned unchanged: amplifying noise floor by 60+ dB helps no one.

    Returns ``(y, measured_lufs, gain_db)``.
    """
    lufs = integrated_loudness(y, sr)
    if not np.isfinite(lufs) or lufs < silence_lufs:
        return y, lufs, 0.0
    gain_db = target_lufs - lufs
    return (y * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32, copy=False), lufs, gain_db


def prepare(y: np.ndarray, sr: int, cfg: AudioConfig, *, name: str | None = None
            ) -> tuple[np.ndarray, AudioInfo]:
    """Analysis window of an already-decoded signal at ``cfg.sample_rate``: window, then loudness.

    Loudness is measured on the window (what the model sees), not the whole track: it is the
    same for the paper's long tracks up to their dynamics and it costs 1/4 of a full-track pass.
    """
    if sr != cfg.sample_rate:
        raise AudioError(f"{_name(name)}: expected {cfg.sample_rate} Hz audio, got {sr} Hz")
    duration = len(y) / sr
    if duration < cfg.min_seconds:
        raise AudioError(f"{_name(name)}: too short ({duration:.2f} s < {cfg.min_seconds} s)")
    win, start, repeated = select_window(y, sr, cfg)
    lufs, gain, note = float("nan"), 0.0, None
    if cfg.target_lufs is not None:
        win, lufs, gain = normalize_loudness(win, sr, target_lufs=cfg.target_lufs,
                                             silence_lufs=cfg.silence_lufs)
        onset = _first_sound(y, sr, cfg) if _silent(lufs, cfg) else None
        if onset is not None:  # a silent window in a file with sound: analyse the sound
            win, _, repeated = select_window(y[onset:], sr, dataclasses.replace(cfg, window_start=0.0))
            win, lufs, gain = normalize_loudness(win, sr, target_lufs=cfg.target_lufs, silence_lufs=cfg.silence_lufs)
            note = (f"the analysis window starts at {onset / sr:.1f} s, where the sound begins (the usual window "
                    f"from {cfg.window_start:g} s held only silence)")
            start = onset
    info = AudioInfo(duration=duration, source_sample_rate=sr, window_start=start / sr,
                     repeated=repeated, loudness_lufs=lufs, gain_db=gain, note=note)
    return np.ascontiguousarray(win, dtype=np.float32), info


# A window that holds only silence moves to the first sound found within this many seconds of the
# file's start (a silent intro); longer files are not searched (their window stays "silence").
SILENT_INTRO_MAX_SECONDS = 600.0
_SOUND_BLOCK_SECONDS = 0.4


def _silent(lufs: float, cfg: AudioConfig) -> bool:
    return not (np.isfinite(lufs) and lufs >= cfg.silence_lufs)


def _first_sound(y: np.ndarray, sr: int, cfg: AudioConfig) -> int | None:
    """The first sample of the first 0.4 s block whose RMS reaches the silence gate's level
    (``cfg.silence_lufs`` read as dBFS), within :data:`SILENT_INTRO_MAX_SECONDS`; None if none."""
    b = int(_SOUND_BLOCK_SECONDS * sr)
    n = min(len(y), int(SILENT_INTRO_MAX_SECONDS * sr)) // b * b
    if n == 0:
        return None
    mono = downmix(y[:n]) if y.ndim > 1 else y[:n]
    rms = np.sqrt(np.mean(np.square(mono.reshape(-1, b), dtype=np.float64), axis=1))
    loud = np.flatnonzero(rms >= 10.0 ** (cfg.silence_lufs / 20.0))
    return int(loud[0]) * b if len(loud) else None


# Source audio read beyond each end of the analysis window, so that the resampler's edge
# transients fall outside the window (soxr HQ's filter is a few ms long).
READ_MARGIN_SECONDS = 0.5


def open_info(path: str | os.PathLike) -> tuple[int, int]:
    """``(frames, sample_rate)`` of an audio file from its header, without decoding it."""
    import soundfile as sf

    path = _check_file(Path(path))
    if _is_av(path):
        try:
            return av_info(path)
        except AvDecodeError as e:
            raise AudioError(f"{path}: cannot decode audio ({e})") from None
    try:
        info = sf.info(str(path))
    except Exception as e:
        raise _decode_error(path, e) from None
    return int(info.frames), int(info.samplerate)


def read_frames(path: str | os.PathLike, start: int, stop: int) -> np.ndarray:
    """Source frames ``[start, stop)`` of an audio file, ``(n, channels)`` float32."""
    import soundfile as sf

    if _is_av(path):  # no exact seeking in compressed containers: decode, then cut
        return decode(path)[0][start:stop]
    try:
        with sf.SoundFile(str(path)) as f:
            f.seek(start)
            return f.read(stop - start, dtype="float32", always_2d=True)
    except Exception as e:
        raise _decode_error(path, e) from None


READ_BLOCK_SECONDS = 30.0


def read_mono(path: str | os.PathLike, sample_rate: int, *, seconds: float | None = None) -> np.ndarray:
    """The first ``seconds`` (None: all) of an audio file, mono float32 at ``sample_rate``:
    :func:`iter_mono` joined (one copy of the mono signal; the multichannel source is never
    held whole)."""
    return np.concatenate(list(iter_mono(path, sample_rate, seconds=seconds)))


def iter_mono(path: str | os.PathLike, sample_rate: int, *, seconds: float | None = None,
              block_seconds: float = READ_BLOCK_SECONDS):
    """The first ``seconds`` (None: all) of an audio file as consecutive mono float32 blocks
    at ``sample_rate``, decoded, downmixed and resampled as they are read, so that memory does
    not grow with the file (the timeline of a 3-hour file). Joined, the blocks are bit-identical
    to decoding the whole file (soxr's stream resampler gives the one-shot result). A file
    libsndfile fails on part-way is salvaged whole (:func:`_salvage`) and the rest yielded."""
    import soundfile as sf
    import soxr

    path = _check_file(Path(path))
    limit = None if seconds is None else int(round(seconds * sample_rate))
    if _is_av(path):
        try:
            source = AvStream(path)
        except AvDecodeError as e:
            raise AudioError(f"{path}: cannot decode audio ({e})") from None
        src_sr, pieces, f = source.sample_rate, iter(source), None
    else:
        try:
            f = sf.SoundFile(str(path))
        except Exception:  # damaged from the start: salvaged whole (decode, _salvage)
            yield _read_mono_whole(path, sample_rate, seconds)
            return
        src_sr = int(f.samplerate)
        pieces = _blocks(f, int(block_seconds * src_sr))
    stop = None if seconds is None else int(math.ceil(seconds * src_sr))
    stream = None if src_sr == sample_rate else soxr.ResampleStream(src_sr, sample_rate, 1, dtype="float32",
                                                                     quality="HQ")
    read = out = 0
    try:
        while stop is None or read < stop:
            try:
                part = next(pieces, None)
            except AudioError:
                raise
            except Exception:  # damaged frames part-way: what can be salvaged, after what was given
                rest = _read_mono_whole(path, sample_rate, seconds)[out:]
                if len(rest):
                    yield rest
                return
            last = part is None or len(part) == 0
            if not last:
                if stop is not None:
                    part = part[:stop - read]
                read += len(part)
                if not np.isfinite(part).all():
                    raise AudioError(f"{path}: {int((~np.isfinite(part)).sum())} NaN/Inf samples")
                mono = downmix(part) if part.shape[1] > 1 else part[:, 0]
            else:
                mono = np.zeros(0, dtype=np.float32)
            last = last or (stop is not None and read >= stop)
            if stream is not None:
                mono = stream.resample_chunk(mono, last=last)
            if limit is not None:
                mono = mono[:max(0, limit - out)]
            if len(mono):
                out += len(mono)
                yield np.ascontiguousarray(mono, dtype=np.float32)
            if last:
                break
    finally:
        if f is not None:
            f.close()
    if out == 0 and f is None:
        bad = f", {source.bad} damaged packet(s)" if source.bad else ""
        raise AudioError(f"{path}: cannot decode audio (no audio could be decoded{bad})")
    if out == 0:
        raise AudioError(f"{path}: zero-length audio")


def _blocks(f, n: int):
    while True:
        part = f.read(n, dtype="float32", always_2d=True)
        if len(part) == 0:
            return
        yield part


def _read_mono_whole(path, sample_rate: int, seconds: float | None) -> np.ndarray:
    y, src_sr = decode(path)
    if seconds is not None:
        y = y[:int(math.ceil(seconds * src_sr))]
    y, _ = _finish(y, src_sr, sample_rate=sample_rate, mono=True, name=str(path))
    if seconds is not None:
        y = y[:int(round(seconds * sample_rate))]
    return np.ascontiguousarray(y, dtype=np.float32)


def load_window(path: str | os.PathLike, cfg: AudioConfig, *, soundfont: str | None = None
                ) -> tuple[np.ndarray, AudioInfo]:
    """File → loudness-normalised analysis window at ``cfg.sample_rate``.

    Only the window (and :data:`READ_MARGIN_SECONDS` around it) is decoded, so memory and time
    do not grow with the file: a 10-hour file costs what a 75 s one does. Clips shorter than the
    window, MIDI, and files whose header gives no length are decoded whole. The window equals
    that of decoding the whole file (exactly at the target rate; elsewhere up to the resampler's
    rounding, ~1e-6)."""
    path = Path(path)
    if _is_av(path) and cfg.mono:  # no exact frame count or seeking: read as a stream
        return _load_window_streamed(path, cfg)
    if path.suffix.lower() in MIDI_EXTENSIONS or _is_av(path):  # no exact frame count in their headers
        return _load_window_whole(path, cfg, soundfont)
    frames, src_sr = open_info(path)
    sr = cfg.sample_rate
    n_out = frames if src_sr == sr else int(round(frames * sr / src_sr))
    start, short = window_bounds(n_out, sr, cfg)
    w = int(round(cfg.window_seconds * sr))
    if frames <= 0 or short:
        return _load_window_whole(path, cfg, soundfont)
    if src_sr == sr:
        s0, s1, offset = start, start + w, start
    else:
        step = src_sr // math.gcd(src_sr, sr)  # source frames that map onto a whole output frame
        margin = int(READ_MARGIN_SECONDS * src_sr)
        s0 = max(0, (int(start * src_sr / sr) - margin) // step * step)
        s1 = min(frames, int(math.ceil((start + w) * src_sr / sr)) + margin)
        offset = s0 * sr // src_sr
    try:
        y = read_frames(path, s0, s1)
    except AudioError:  # damaged frames: decode what can be decoded (_salvage)
        return _load_window_whole(path, cfg, soundfont)
    if len(y) < s1 - s0:  # a truncated file: its header promises more audio than it holds
        return _load_window_whole(path, cfg, soundfont)
    y, _ = _finish(y, src_sr, sample_rate=sr, mono=cfg.mono, name=str(path))
    win = y[start - offset:start - offset + w]
    if len(win) < w:  # the resampler's last output frame, lost to rounding at the very end
        win = np.concatenate([win, np.zeros((w - len(win),) + win.shape[1:], dtype=win.dtype)])
    lufs, gain = float("nan"), 0.0
    if cfg.target_lufs is not None:
        win, lufs, gain = normalize_loudness(win, sr, target_lufs=cfg.target_lufs, silence_lufs=cfg.silence_lufs)
        if _silent(lufs, cfg) and frames / src_sr <= SILENT_INTRO_MAX_SECONDS + cfg.window_seconds:
            # a silent window: look for the sound in the whole (bounded-length) file (prepare)
            return _load_window_whole(path, cfg, soundfont)
    info = AudioInfo(duration=frames / src_sr, source_sample_rate=src_sr, window_start=start / sr,
                     repeated=False, loudness_lufs=lufs, gain_db=gain)
    return np.ascontiguousarray(win, dtype=np.float32), info


def _load_window_streamed(path: Path, cfg: AudioConfig) -> tuple[np.ndarray, AudioInfo]:
    """:func:`load_window` of a file read as a stream (:func:`iter_mono`): only the part the
    window can come from is kept (its usual place, or past a silent intro of up to
    :data:`SILENT_INTRO_MAX_SECONDS`); the rest is decoded only to count its length, so a
    3-hour M4A costs the memory of an 11-minute one. The same window as decoding it whole."""
    sr = cfg.sample_rate
    keep = int(math.ceil((SILENT_INTRO_MAX_SECONDS + max(cfg.window_start, 0.0) + cfg.window_seconds) * sr))
    parts, kept, total = [], 0, 0
    for block in iter_mono(path, sr):
        if kept < keep:
            parts.append(block[:keep - kept])
            kept += len(parts[-1])
        total += len(block)
    win, info = prepare(np.concatenate(parts), sr, cfg, name=str(path))
    try:
        src_sr = av_info(path)[1]
    except AvDecodeError:
        src_sr = 0
    return win, dataclasses.replace(info, duration=total / sr, source_sample_rate=src_sr or sr)


def _load_window_whole(path: Path, cfg: AudioConfig, soundfont: str | None) -> tuple[np.ndarray, AudioInfo]:
    y, src_sr, note = _decode_noted(path, soundfont=soundfont, midi_sample_rate=cfg.sample_rate)
    y, sr = _finish(y, src_sr, sample_rate=cfg.sample_rate, mono=cfg.mono, name=str(path))
    win, info = prepare(y, sr, cfg, name=str(path))
    note = "; ".join(n for n in (note, info.note) if n) or None
    return win, dataclasses.replace(info, source_sample_rate=src_sr, note=note)
