"""MIDI -> audio with FluidSynth and a General MIDI soundfont (for EMOPIA and other MIDI corpora).

What ``fluidsynth -F`` writes (FluidSynth 2.3 with FluidR3_GM, checked on EMOPIA clips): 16-bit
stereo WAV at the requested rate, the synthesiser's default gain 0.2 giving peaks around -18 to
-26 dBFS (loudness is normalised when features are extracted), and about 2.4 s after the last
MIDI event during which the reverb decays to below -80 dB. Trailing audio below -60 dB re the
peak (the RT60 convention for "the reverberation has ended") is trimmed here: a clip that is
looped to fill the analysis window would otherwise carry seconds of silence at each repeat. On 40
EMOPIA clips the trimmed render was 1.3 s shorter to 0.6 s longer than the MIDI (median +0.05 s);
it is shorter where a piece ends on a note that has already decayed below that floor.

Rendering costs about 1 s of CPU per EMOPIA clip (40 s on average), loading of the 148 MB
soundfont included, so :func:`render_many` runs one ``fluidsynth`` process per file in a thread
pool and caches the results (the whole of EMOPIA: about 20-35 min on 2 cores).
"""
from __future__ import annotations

import logging
import os
import shutil
import struct
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf
from tqdm import tqdm

log = logging.getLogger(__name__)

SOUNDFONT_ENV = "MERKIT_SOUNDFONT"
# Debian's fluid-soundfont-gm (first) and the places other distributions put a GM soundfont.
DEFAULT_SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
    Path("/usr/share/soundfonts/FluidR3_GM.sf2"),
    Path("/usr/share/soundfonts/default.sf2"),
)
NO_SOUNDFONT = "no General MIDI soundfont found: install Debian's fluid-soundfont-gm or set " + SOUNDFONT_ENV
NO_FLUIDSYNTH = "fluidsynth not found: install Debian's fluidsynth (apt-get install fluidsynth)"

DEFAULT_SAMPLE_RATE = 44_100  # the Memo2496 rate (config.SAMPLE_RATE); renders need no resampling
TAIL_FLOOR_DB = -60.0  # RT60 convention: a reverb tail has ended 60 dB below the peak
# FluidSynth dithers its 16-bit output by +-1 LSB, so an empty render is not digital silence;
# levels up to DITHER_LSB count as silence, and a render whose peak is below SILENT_PEAK_LSB
# (-70 dBFS, 30 dB above the dither) is rejected as silent.
DITHER_LSB = 2
SILENT_PEAK_LSB = 10
# FluidSynth renders far faster than real time; allowing real time plus a minute for loading the
# soundfont only stops a process that is stuck.
TIMEOUT_BASE_S = 60.0
# SMF defaults (Standard MIDI File 1.0 spec): 120 BPM until the first Set Tempo event.
SMF_DEFAULT_TEMPO_US = 500_000


class RenderError(RuntimeError):
    """FluidSynth, the soundfont or a MIDI file is missing or unusable (message names the file)."""


def find_soundfont(path: str | os.PathLike | None = None) -> Path:
    """The General MIDI soundfont to render with.

    ``path`` (or else ``$MERKIT_SOUNDFONT``), when given, must exist: a wrong explicit choice is an
    error rather than a silent fall-back. Otherwise the first of :data:`DEFAULT_SOUNDFONTS`.
    """
    explicit = path if path is not None else os.environ.get(SOUNDFONT_ENV) or None
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise RenderError(f"{NO_SOUNDFONT} ({p} does not exist)")
        return p
    for p in DEFAULT_SOUNDFONTS:
        if p.is_file():
            return p
    raise RenderError(NO_SOUNDFONT)


def find_fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise RenderError(NO_FLUIDSYNTH)
    return exe


def _read_varlen(b: bytes, i: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):  # SMF variable-length quantities have at most 4 bytes
        c = b[i]
        i += 1
        value = (value << 7) | (c & 0x7F)
        if c < 0x80:
            return value, i
    raise ValueError("variable-length quantity longer than 4 bytes")


def midi_duration(path: str | os.PathLike) -> float:
    """Length of a Standard MIDI File in seconds: the time of its last event (end of track),
    following the tempo map. Checks the file's structure on the way, so a truncated or corrupt
    file raises RenderError before FluidSynth (which renders such files without complaint) runs.
    """
    path = Path(path)
    try:
        b = path.read_bytes()
    except OSError as e:
        raise RenderError(f"{path}: cannot read MIDI file: {e.strerror or e}") from None
    try:
        if b[:4] != b"MThd" or len(b) < 14:
            raise ValueError("not a Standard MIDI File (no MThd header)")
        header_len, = struct.unpack(">I", b[4:8])
        _fmt, n_tracks, division = struct.unpack(">HHH", b[8:14])
        if division & 0x8000:  # SMPTE time: -frames per second (signed byte) x ticks per frame
            fps = 256 - (division >> 8)
            if division & 0xFF == 0:
                raise ValueError("SMPTE division with 0 ticks per frame")
            seconds_per_tick = 1.0 / (fps * (division & 0xFF))
            ticks_per_quarter = None
        else:
            if division == 0:
                raise ValueError("division is 0 ticks per quarter note")
            ticks_per_quarter = division
        tempos: list[tuple[int, int]] = []
        last_tick = 0
        i = 8 + header_len
        for k in range(n_tracks):
            if b[i:i + 4] != b"MTrk":
                raise ValueError(f"track {k + 1} of {n_tracks}: no MTrk chunk at byte {i}")
            length, = struct.unpack(">I", b[i + 4:i + 8])
            j, end = i + 8, i + 8 + length
            if end > len(b):
                raise ValueError(f"track {k + 1} is truncated ({end - len(b)} bytes missing)")
            tick, status = 0, None
            while j < end:
                delta, j = _read_varlen(b, j)
                tick += delta
                s = b[j]
                if s == 0xFF:  # meta event: type, length, data
                    kind = b[j + 1]
                    n, j = _read_varlen(b, j + 2)
                    if kind == 0x51:
                        tempos.append((tick, int.from_bytes(b[j:j + 3], "big")))
                    j += n
                    if kind == 0x2F:  # end of track
                        break
                elif s in (0xF0, 0xF7):  # sysex: length, data
                    n, j = _read_varlen(b, j + 1)
                    j += n
                else:
                    if s & 0x80:
                        status, j = s, j + 1
                    elif status is None:
                        raise ValueError(f"data byte without a status at byte {j}")
                    j += 1 if status & 0xF0 in (0xC0, 0xD0) else 2  # program change, pressure: 1
                if j > end:
                    raise ValueError(f"track {k + 1}: event runs past the end of its chunk")
            last_tick = max(last_tick, tick)
            i = end
    except (ValueError, IndexError, struct.error) as e:
        reason = str(e) if type(e) is ValueError else "file is truncated"
        raise RenderError(f"{path}: corrupt MIDI file: {reason}") from None
    if ticks_per_quarter is None:
        return last_tick * seconds_per_tick
    seconds, prev_tick, tempo = 0.0, 0, SMF_DEFAULT_TEMPO_US
    for tick, new_tempo in sorted(tempos):
        if tick >= last_tick:
            break
        seconds += (tick - prev_tick) * tempo / 1e6 / ticks_per_quarter
        prev_tick, tempo = tick, new_tempo
    return seconds + (last_tick - prev_tick) * tempo / 1e6 / ticks_per_quarter


def _trim_tail(y: np.ndarray, floor_db: float = TAIL_FLOOR_DB) -> np.ndarray:
    """Drop trailing samples below ``floor_db`` re the peak (and below the dither).
    y: (n, channels) int16 -> (m, channels)."""
    env = np.abs(y.astype(np.int32)).max(axis=1)  # (n,)
    loud = np.flatnonzero(env > max(env.max() * 10 ** (floor_db / 20), DITHER_LSB))
    return y[: loud[-1] + 1]


def render_midi(midi_path: str | os.PathLike, out_path: str | os.PathLike, *,
                sample_rate: int = DEFAULT_SAMPLE_RATE, soundfont: str | os.PathLike | None = None,
                timeout: float | None = None, trim_tail: bool = True) -> Path:
    """Render one MIDI file to a 16-bit stereo WAV at ``sample_rate``.

    The output appears atomically (temporary file in the same folder, then rename), so a file at
    ``out_path`` is always a complete render. ``timeout`` defaults to the MIDI's length plus
    :data:`TIMEOUT_BASE_S`. Raises RenderError naming the file when the MIDI is corrupt, FluidSynth
    fails, or the result is empty, silent or at the wrong rate.
    """
    midi_path, out_path = Path(midi_path), Path(out_path)
    exe = find_fluidsynth()
    sf2 = find_soundfont(soundfont)
    length = midi_duration(midi_path)
    if timeout is None:
        timeout = TIMEOUT_BASE_S + length
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name that fluidsynth creates itself (so the file gets the usual permissions, which
    # mkstemp's 0600 would not).
    tmp = out_path.with_name(f".{out_path.stem}.{uuid.uuid4().hex[:12]}.tmp.wav")
    try:
        # -n: no MIDI input, -i: no shell, -q: quiet, -F/-T: fast render to a WAV file.
        cmd = [exe, "-ni", "-q", "-r", str(int(sample_rate)), "-F", str(tmp), "-T", "wav", str(sf2), str(midi_path)]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RenderError(f"{midi_path}: fluidsynth did not finish within {timeout:.0f} s") from None
        if proc.returncode != 0:
            msg = " ".join((proc.stderr or proc.stdout or "").split())[:300]
            raise RenderError(f"{midi_path}: fluidsynth failed (exit {proc.returncode}): {msg}")
        try:
            # checked block by block: a long MIDI's render is never held whole in memory
            peak, n = 0, 0
            with sf.SoundFile(str(tmp)) as f:
                sr = f.samplerate
                for block in f.blocks(blocksize=1 << 20, dtype="int16", always_2d=True):
                    n += len(block)
                    peak = max(peak, int(np.abs(block.astype(np.int32)).max()) if len(block) else 0)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise RenderError(f"{midi_path}: fluidsynth wrote no readable audio ({e})") from None
        if sr != sample_rate:
            raise RenderError(f"{midi_path}: fluidsynth wrote {sr} Hz instead of {sample_rate} Hz")
        if n == 0:
            raise RenderError(f"{midi_path}: fluidsynth wrote an empty file")
        if peak < SILENT_PEAK_LSB:
            raise RenderError(f"{midi_path}: the render is silent (no notes, or the soundfont lacks "
                              "the instruments)")
        if trim_tail:  # in memory: callers ask for it for short renders only
            y, _ = sf.read(tmp, dtype="int16", always_2d=True)
            sf.write(tmp, _trim_tail(y), sr, subtype="PCM_16", format="WAV")
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def cached_render_path(midi_path: str | os.PathLike, cache_dir: str | os.PathLike, sample_rate: int) -> Path:
    """Where :func:`render_many` keeps the render of ``midi_path``: ``cache_dir/<rate>/<stem>.wav``."""
    return Path(cache_dir) / str(int(sample_rate)) / (Path(midi_path).stem + ".wav")


def _is_complete(wav: Path, midi: Path, sample_rate: int) -> bool:
    """A cached render is reused when it is readable, non-empty, at the right rate and not older
    than its MIDI (renders are written atomically, so an existing file is never a partial one)."""
    try:
        if wav.stat().st_mtime < midi.stat().st_mtime:
            return False
        info = sf.info(wav)
    except (OSError, sf.LibsndfileError, RuntimeError):
        return False
    return info.samplerate == sample_rate and info.frames > 0


def render_many(midis: Iterable[str | os.PathLike], cache_dir: str | os.PathLike, *,
                workers: int | None = None, sample_rate: int = DEFAULT_SAMPLE_RATE,
                soundfont: str | os.PathLike | None = None, timeout: float | None = None,
                progress: bool = True) -> tuple[dict[Path, Path], list[tuple[Path, str]]]:
    """Render many MIDI files into ``cache_dir`` in parallel, reusing complete earlier renders.

    Returns ``(paths, failures)``: ``paths`` maps each rendered MIDI path to its WAV (in input
    order), ``failures`` lists ``(midi_path, reason)`` for files that could not be rendered; one
    bad file never stops the batch. A missing ``fluidsynth`` or soundfont raises RenderError at
    once, since no file could be rendered. ``workers`` defaults to the number of CPUs.
    """
    find_fluidsynth()
    sf2 = find_soundfont(soundfont)
    midis = [Path(m) for m in midis]
    paths: dict[Path, Path] = {}
    failures: list[tuple[Path, str]] = []
    todo: list[tuple[Path, Path]] = []
    owner: dict[Path, Path] = {}  # cache file -> the MIDI that claims it
    for m in midis:
        out = cached_render_path(m, cache_dir, sample_rate)
        if out in owner:
            if owner[out] != m:
                failures.append((m, f"same file name as {owner[out]} (renders are cached by file name)"))
            continue
        owner[out] = m
        if not m.is_file():
            failures.append((m, "file not found"))
        elif _is_complete(out, m, sample_rate):
            paths[m] = out
        else:
            todo.append((m, out))
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    with tqdm(total=len(midis), initial=len(midis) - len(todo), desc="render MIDI", unit="file",
              disable=not progress) as bar, ThreadPoolExecutor(n_workers) as pool:
        futures = {pool.submit(render_midi, m, out, sample_rate=sample_rate, soundfont=sf2, timeout=timeout): m
                   for m, out in todo}
        for fut in as_completed(futures):
            m = futures[fut]
            try:
                paths[m] = fut.result()
            except (RenderError, OSError, sf.LibsndfileError) as e:
                failures.append((m, str(e)))
            bar.update(1)
    if failures:
        log.warning("%d of %d MIDI files could not be rendered, e.g. %s", len(failures), len(midis), failures[0][1])
    order = {m: k for k, m in enumerate(midis)}
    paths = dict(sorted(paths.items(), key=lambda kv: order[kv[0]]))
    failures.sort(key=lambda f: order.get(f[0], len(order)))
    return paths, failures


__all__ = ["RenderError", "find_soundfont", "find_fluidsynth", "midi_duration", "render_midi", "render_many",
           "cached_render_path", "DEFAULT_SOUNDFONTS", "SOUNDFONT_ENV", "TAIL_FLOOR_DB"]
