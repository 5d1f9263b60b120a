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
    stream = AvStream(path)
    chunks = list(stream)
    if not chunks or stream.sample_rate <= 0:
        raise AvDecodeError("no audio could be decoded" + (f" ({stream.bad} damaged packet(s))" if stream.bad else ""))
    y = np.concatenate(chunks)
    return np.ascontiguousarray(y, dtype=np.float32), stream.sample_rate, stream.bad


class AvStream:
    """The first audio stream of ``path``, decoded as it is read: iterating yields
    ``(n, channels)`` float32 pieces at the stream's own rate, so a long file is never held
    whole (:func:`merkit.audio.iter_mono`). Damaged packets are skipped and counted
    (:attr:`bad`); :attr:`sample_rate` is known once the file is open. Opening raises
    :class:`AvDecodeError`."""

    def __init__(self, path: str | os.PathLike):
        import av

        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise AvDecodeError(_reason(e)) from None
        self._stream = next((s for s in self._container.streams if s.type == "audio"), None)
        if self._stream is None:
            self._container.close()
            raise AvDecodeError("no audio stream in this file")
        self.sample_rate = int(self._stream.codec_context.sample_rate or 0)
        self.bad = 0

    def __iter__(self):
        import av

        # planar float32 at the stream's own rate and channels: (channels, samples) per frame
        resampler = av.AudioResampler(format="fltp", layout=self._stream.codec_context.layout,
                                      rate=self.sample_rate or None)
        packets = self._container.demux(self._stream)
        try:
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.error.FFmpegError:  # a damaged container: stop at what was read
                    self.bad += 1
                    break
                try:
                    outs = []
                    for frame in packet.decode():
                        outs += resampler.resample(frame)
                        self.sample_rate = self.sample_rate or int(frame.sample_rate)
                except av.error.FFmpegError:  # a damaged packet: skip it, keep the rest
                    self.bad += 1
                for out in outs:
                    yield np.ascontiguousarray(out.to_ndarray().T, dtype=np.float32)
            for out in resampler.resample(None):
                yield np.ascontiguousarray(out.to_ndarray().T, dtype=np.float32)
        finally:
            self._container.close()


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


__all__ = ["AV_EXTENSIONS", "AvDecodeError", "AvStream", "av_info", "decode_av", "decode_av_counted"]
