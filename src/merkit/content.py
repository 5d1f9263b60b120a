"""Is there music in the analysis window? A check run before any emotion is given.

An emotion model answers every input, and a confident "Q3 sad" for digital silence or "Q4 calm"
for white noise cannot be told apart from a real result. Three rules on what the front end
computes anyway (the window's loudness and its Mel band energies) flag silence and noise:

* **silence**: the window's integrated loudness is below the BS.1770 absolute gate
  (``AudioConfig.silence_lufs``, −70 LUFS), e.g. digital zeros or a DC offset alone (K-weighting
  removes DC).
* **steady**: the Mel band energies hardly change over the window: the median, over bands within
  60 dB of the loudest, of the standard deviation of log energy over time is below
  ``min_variation`` nepers. Stationary noise (white, pink, brown), a hum, a test tone or a DC
  offset stay near 0.1 with the paper's 1.36 s frames; real music varies by 0.5 or more.
* **noise-like**: the spectrum has no structure across bands: the median over frames of the
  standard deviation of log band energy around its 7-band moving average is below
  ``min_roughness``. Broadband noise, amplitude-modulated noise and click tracks stay near
  0.1; real music, with harmonics and formants, is above 0.35.

Thresholds were set with a margin below the lowest value of any real recording in
``../shared/data`` (2 369 clips of EMOPIA renders, the MIREX-like set and Emotify: variation
≥ 0.53, roughness ≥ 0.36; ``bench/reliability.py`` measures false alarms on all of them) and
above generated non-music (variation ≤ 0.23, roughness ≤ 0.15; music mixed with white noise of
equal power sits at 0.31). They are :class:`ContentCheck` fields, so a user can loosen or disable
them (``merkit predict --no-content-check``).

Three more rules read short-time statistics of the window's audio (:func:`sound_stats`, 46 ms
frames every 23 ms; ~35 ms per window), for what those three let through:

* **a single tone or sweep**: one sinusoid holds >= 90 % of a frame's energy (``peak``) and
  either the spectrum hardly changes (``flux`` < 0.12) or the peak glides (in >= 10 % of frames):
  sine sweeps; bass-heavy electronic music reaches ``peak`` 0.99 but changes far more and its
  peak holds still (glide <= 0.054 on every real window with such a peak).
* **a single sound**: the spectrum's shape hardly changes between frames (90th percentile of the
  frame-to-frame cosine distance of log spectra < 0.03, bins held at 60 dB below each frame's
  strongest so that a 16-bit file's quantisation noise is not read as change): one plucked or
  struck note, looped to the window as a short file is. Real music changes at least at its
  onsets (>= 0.040). An MP3 of one note is not caught (0.045-0.065: the codec's noise changes
  from frame to frame above that floor, and no threshold separates it from real music).
* **speech**: pauses (>= 15 % of frames 25 dB below the loud level), a gliding pitch (>= 12 % of
  frames whose strongest peak moves by 0.05-1.5 semitones), no held notes (<= 2 % of frames in
  notes held >= 190 ms) and a spectrum that keeps changing (flux >= 0.45). All four together:
  real songs have pauses and gliding voices, but also held notes.

Speech over music keeps its emotion (it fails the held-notes rule): no note is added, because no
statistic here tells a speaking voice over music from singing (the gliding-pitch share of the
real clips overlaps that of speech mixed under music; bench/results/content_check.md).

Thresholds were chosen on every other real clip's full window and on generated signals
(espeak-ng in six voices, sweeps, plucked notes), and checked on the other half:
``python bench/content_check.py`` measures false alarms on all 2 369 clips (none on full
windows) and by clip length (snippets looped to the window: 4.6 % at 1.5 s, 0.3 % at 10 s, 0.2 %
from 20 s, so the check is trusted from 10 s).

The rules need a whole analysis window (60 s): on the timeline's 10 s windows, music can be
steady for a held chord, so only the silence rule applies there.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d

ACTIVE_RANGE_NEPERS = float(np.log(1e6))  # bands within 60 dB of the loudest (median over time)
SMOOTH_BANDS = 7


class NotMusicError(ValueError):
    """The input holds no music that an emotion could be read from (see :mod:`merkit.content`)."""

    def __init__(self, reason: str, stats: dict | None = None):
        super().__init__(f"not music: {reason}; no emotion is given")
        self.reason = reason
        self.stats = stats or {}


@dataclass(frozen=True)
class ContentCheck:
    """Thresholds of the not-music rules (see the module docstring); ``enabled=False`` skips them."""

    min_variation: float = 0.3
    min_roughness: float = 0.2
    # one sinusoid (a tone, a sweep): its strongest peak holds at least this share of the
    # energy, and the spectrum changes less than max_tone_flux or the peak glides in at least
    # tone_glide of the frames (bass-heavy music can pass the first; on the 2 369 real clips the
    # windows with such a peak glide in at most 0.054 of them, a sweep in 0.16 or more)
    max_peak: float = 0.9
    max_tone_flux: float = 0.12
    tone_glide: float = 0.1
    # a single sound: the spectrum's shape changes less than this between frames (sound_stats)
    min_flux: float = 0.03
    # speech without music: this many pauses, this much gliding pitch, at most this much held
    # pitch, and at least this much change between frames (voiced, unvoiced, silent in turn)
    speech_pause: float = 0.15
    speech_glide: float = 0.12
    speech_held: float = 0.02
    speech_flux: float = 0.45
    enabled: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def spectral_stats(log_mel: np.ndarray) -> dict:
    """``variation`` and ``roughness`` (nepers) of one window's natural-log Mel energies (B, T)."""
    m = np.asarray(log_mel, dtype=np.float64)
    profile = np.median(m, axis=-1)
    active = m[profile > profile.max() - ACTIVE_RANGE_NEPERS]
    variation = float(np.median(active.std(axis=-1)))
    if len(active) > SMOOTH_BANDS:
        resid = active - uniform_filter1d(active, SMOOTH_BANDS, axis=0, mode="nearest")
        roughness = float(np.median(resid.std(axis=0)))
    else:  # a few bands only (a tone): no spectrum to judge, the steady rule decides
        roughness = float("inf")
    return {"variation": variation, "roughness": roughness, "active_bands": int(len(active))}


# The short-time statistics of :func:`sound_stats`: 46 ms frames every 23 ms at 44.1 kHz (fine
# enough for syllables, 4-8 per second, and for the pitch movement of a voice)
STFT_SIZE, STFT_HOP = 2048, 1024
SPEECH_BAND_HZ = (150.0, 4000.0)  # where a voice's energy is, for pauses
PAUSE_DB = 25.0  # a frame this far below the window's loud level (its 95th percentile) is a pause
ACTIVE_DB = 30.0  # frames within this of the loud level are judged for pitch and peaks
# a dominant peak that moves by more than this and less than a jump between notes is gliding
GLIDE_SEMITONES = (0.05, 1.5)
FLUX_PERCENTILE = 90
SPECTRUM_FLOOR_DB = 60.0  # 16-bit and float files agree; a floor of 35-45 dB also caught MP3 notes but brought real music's flux down to theirs
# held notes: the strongest peak in the range of fundamentals (80-1000 Hz) stays within 0.05
# semitones for at least HELD_FRAMES frames (~190 ms); a speaking voice's pitch hardly ever does
FUNDAMENTAL_HZ = (80.0, 1000.0)
HELD_FRAMES = 8


def sound_stats(win: np.ndarray, sr: int) -> dict:
    """Short-time statistics of one analysis window (mono, at ``sr``) that tell speech and
    single sounds from music (see the module docstring):

    * ``pause``: share of frames 25 dB or more below the window's loud level in the voice band
      (150-4000 Hz): the gaps between words and phrases; music keeps sounding.
    * ``glide``: share of consecutive loud frames whose strongest spectral peak moves by 0.05 to
      1.5 semitones: the pitch of a voice glides; notes hold their pitch, then jump.
    * ``flux``: the 90th percentile of the cosine distance between the log spectra of consecutive
      loud frames: how much the spectrum's shape changes; a tone, a sweep or one decaying note
      hardly changes.
    * ``peak``: median share of a loud frame's energy within 2 bins of its strongest bin: a
      single sinusoid (a test tone, a sweep) holds nearly all of it.
    * ``held``: share of loud frames in held notes: runs of >= 8 frames (~190 ms) in which the
      strongest peak between 80 and 1000 Hz stays put; music holds notes, speech glides.
    """
    from scipy.fft import rfft  # float32 in, complex64 out: ~10x numpy's float64 FFT here
    from scipy.signal import get_window

    y = np.ascontiguousarray(win, dtype=np.float32)
    if len(y) < 2 * STFT_SIZE:
        return {"pause": 0.0, "glide": 0.0, "flux": 0.0, "peak": 0.0, "held": 0.0}
    n = 1 + (len(y) - STFT_SIZE) // STFT_HOP
    frames = np.lib.stride_tricks.as_strided(y, (n, STFT_SIZE), (y.strides[0] * STFT_HOP, y.strides[0]))
    spec = rfft(frames * get_window("hann", STFT_SIZE).astype(np.float32), axis=1)
    power = (spec.real ** 2 + spec.imag ** 2).T + np.float32(1e-12)  # (bins, frames)
    f = np.fft.rfftfreq(STFT_SIZE, 1.0 / sr)
    band = (f >= SPEECH_BAND_HZ[0]) & (f <= SPEECH_BAND_HZ[1])
    level = 10.0 * np.log10(power[band].sum(axis=0))
    loud = np.percentile(level, 95)
    active = level > loud - ACTIVE_DB
    pause = float(np.mean(level < loud - PAUSE_DB))
    log_spec = np.log(power[(f >= 150.0) & (f <= 8000.0)])
    # bins more than SPECTRUM_FLOOR_DB below the frame's strongest are held at that floor: there
    # they hold only noise (16-bit quantisation, a codec's), whose random shape would otherwise
    # read as spectral change in a tone or one decaying note
    log_spec = np.maximum(log_spec, log_spec.max(axis=0) - np.float32(SPECTRUM_FLOOR_DB * np.log(10) / 10))
    log_spec = log_spec - log_spec.mean(axis=0)
    dot = (log_spec[:, 1:] * log_spec[:, :-1]).sum(axis=0)
    norm = np.sqrt((log_spec[:, 1:] ** 2).sum(axis=0) * (log_spec[:, :-1] ** 2).sum(axis=0))
    both = active[1:] & active[:-1] & (norm > 0)
    # the 90th percentile: music changes at least at its note onsets (a synthetic melody of held
    # notes has a median near 0 too), while a tone, a sweep or one note barely changes anywhere
    flux = float(np.percentile(1.0 - dot[both] / norm[both], FLUX_PERCENTILE)) if both.any() else 0.0
    top = power.argmax(axis=0)
    near = top[None, :] + np.arange(-2, 3)[:, None]  # the strongest bin and 2 on each side
    inside = (near >= 0) & (near < power.shape[0])
    share = (np.take_along_axis(power, np.clip(near, 0, power.shape[0] - 1), axis=0) * inside).sum(axis=0) \
        / power.sum(axis=0)
    peak = float(np.median(share[active])) if active.any() else 0.0
    pitch = np.log2(np.maximum(f[top], f[1])) * 12.0
    step = np.abs(np.diff(pitch))
    both = active[1:] & active[:-1]
    glide = float(np.mean((step[both] > GLIDE_SEMITONES[0]) & (step[both] < GLIDE_SEMITONES[1]))) if both.any() else 0.0
    fund = (f >= FUNDAMENTAL_HZ[0]) & (f <= FUNDAMENTAL_HZ[1])
    low = np.log2(f[fund][power[fund].argmax(axis=0)]) * 12.0
    still = (np.abs(np.diff(low)) < GLIDE_SEMITONES[0]) & both
    # loud frames in runs of >= HELD_FRAMES still frames: run lengths from the edges of `still`
    edges = np.flatnonzero(np.diff(np.concatenate([[0], still.astype(np.int8), [0]])))
    runs = edges[1::2] - edges[::2]
    held = float(runs[runs >= HELD_FRAMES].sum() / both.sum()) if both.any() else 0.0
    return {"pause": pause, "glide": glide, "flux": flux, "peak": peak, "held": held}


def check_window(loudness_lufs: float, log_mel: np.ndarray | None, silence_lufs: float,
                 check: ContentCheck = ContentCheck(), sound: dict | None = None) -> tuple[str | None, dict]:
    """(reason or None, stats) of one analysis window; ``log_mel=None``: the silence rule only;
    ``sound``: the window's :func:`sound_stats` (None: without the single-sound and speech
    rules)."""
    if not check.enabled:
        return None, {}
    stats: dict = {"loudness_lufs": float(loudness_lufs)}
    if log_mel is not None and np.isfinite(loudness_lufs) and loudness_lufs >= silence_lufs:
        stats.update(spectral_stats(log_mel))
        stats.update(sound or {})
    return judge(stats, silence_lufs, check), stats


def judge(stats: dict, silence_lufs: float, check: ContentCheck = ContentCheck()) -> str | None:
    """The reason a window is not music, or None, from its statistics (``loudness_lufs``, and where present those of :func:`spectral_stats` and
    :func:`sound_stats`; a rule whose statistics are absent is not applied)."""
    lufs = stats["loudness_lufs"]
    if not (np.isfinite(lufs) and lufs >= silence_lufs):
        return f"silence (loudness below the {silence_lufs:g} LUFS gate)"
    if "variation" in stats and stats["variation"] < check.min_variation:
        return (f"a steady signal such as noise, a hum or a test tone (spectral variation "
                f"{stats['variation']:.2f} < {check.min_variation:g})")
    if "roughness" in stats and stats["roughness"] < check.min_roughness:
        return (f"a noise-like spectrum (spectral roughness {stats['roughness']:.2f} < "
                f"{check.min_roughness:g})")
    if "flux" not in stats:
        return None
    if stats["peak"] >= check.max_peak and (stats["flux"] < check.max_tone_flux or stats["glide"] >= check.tone_glide):
        return (f"a single tone or sweep (one sinusoid holds {stats['peak']:.0%} of the energy, "
                f">= {check.max_peak:.0%})")
    if stats["flux"] < check.min_flux:
        return (f"a single sound such as a tone, a sweep or one note, without musical change (spectral "
                f"change {stats['flux']:.3f} < {check.min_flux:g})")
    if (stats["pause"] >= check.speech_pause and stats["glide"] >= check.speech_glide
            and stats.get("held", 0.0) <= check.speech_held and stats["flux"] >= check.speech_flux):
        return (f"speech (pauses {stats['pause']:.2f}, gliding pitch {stats['glide']:.2f}, held notes "
                f"{stats.get('held', 0.0):.3f})")
    return None


__all__ = ["ContentCheck", "NotMusicError", "check_window", "judge", "sound_stats", "spectral_stats"]
