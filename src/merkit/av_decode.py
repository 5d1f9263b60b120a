"""Decoding the formats libsndfile does not read (AAC/M4A/MP4, WMA, WebM and Matroska audio, ...)
with PyAV, whose wheels bundle FFmpeg: the formats a music library holds besides wav / flac /
ogg / mp3 / aiff.

:func:`decode_av` returns what :func:`merkit.audio.decode` returns: ``(n, channels)`` float32 at
the stream's own rate. The first audio stream is decoded (a video track in an MP4 is ignored).
Packets FFmpeg cannot decode in the middle of a file are skipped and counted; the file is
refused only when nothing could be decoded.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# Suffixes decoded by PyAV (FFmpeg) rather than libsndfile
AV_EXTENSIONS = (".m4a", ".m4b", ".mp4", ".aac", ".wma", ".webm", ".weba", ".mka", ".mkv", ".ac3", ".alac", ".ape",
                 ".wv", ".mpc", ".amr", ".3gp")


class AvDecodeError(ValueError):
    """A file PyAV cannot read; the message is FFmpeg's reason in one line."""


def decode_av(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """``(n, channels)`` float32 samples of the first audio stream of ``path``, and its rate."""
    y, sr, _ = decode_av_counted(path)
    return y, sr


def decode_av_counted(path: str | os.PathLike) -> tuple[np.ndarray, int, int]:
    """:func:`decode_av` and the number of damaged packets it skipped."""
    import av

    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise AvDecodeError(_reason(e)) from None
    with container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise AvDecodeError("no audio stream in this file")
        sr = int(stream.codec_context.sample_rate or 0)
        # planar float32 at the stream's own rate and channels: (channels, samples) per frame
        resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout, rate=sr or None)
        chunks, bad = [], 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError:  # a damaged container: stop at what was read
                bad += 1
                break
            try:
                for frame in packet.decode():
                    for out in resampler.resample(frame):
                        chunks.append(out.to_ndarray())
                    sr = sr or int(frame.sample_rate)
            except av.error.FFmpegError:  # a damaged packet: skip it, keep the rest
                bad += 1
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks or sr <= 0:
        raise AvDecodeError("no audio could be decoded" + (f" ({bad} damaged packet(s))" if bad else ""))
    y = np.concatenate(chunks, axis=1).T
    return np.ascontiguousarray(y, dtype=np.float32), sr, bad


def av_info(path: str | os.PathLike) -> tuple[int, int]:
    """``(frames, sample_rate)`` of the first audio stream from the container's header (the
    frame count from its stated duration: an estimate, 0 when none is stated)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AvDecodeError("no audio stream in this file")
            sr = int(stream.codec_context.sample_rate or 0)
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1e6  # av.time_base: microseconds
            else:
                seconds = 0.0
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise AvDecodeError(_reason(e)) from None
    return int(round(seconds * sr)), sr


def _reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    msg = msg.strip().splitlines()[-1] if msg.strip() else type(e).__name__
    if "Invalid data found" in msg:
        return "not an audio format FFmpeg reads, or a damaged file"
    return msg


__all__ = ["AV_EXTENSIONS", "AvDecodeError", "av_info", "decode_av", "decode_av_counted"]
