"""Configuration dataclasses: one frozen dataclass per concern, saved whole in every output.

Every default carries its source. "Paper" is the Memo2496 / DAMER paper; section numbers refer
to it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# --- Memo2496 paper, §III-A / §III-C -----------------------------------------------------------
SAMPLE_RATE = 44_100  # §III-A: all audio is resampled to 44.1 kHz
TARGET_LUFS = -23.0  # §III-A: EBU R128 loudness normalisation
WINDOW_START_S = 15.0  # §III-A: analysis window from 15 s ...
WINDOW_SECONDS = 60.0  # ... to 75 s after onset
N_MELS = 128  # §III-C
N_GAMMATONE = 84  # §III-C
N_FRAMES = 87  # §III-C: T = 87 frames, i.e. frame length N = window / 44 with hop N/2
PRE_EMPHASIS = 0.97  # §III-C: x'(n) = x(n) - 0.97 x(n-1)


class ConfigError(ValueError):
    """A configuration value is invalid (the one error type for bad parameters)."""


@dataclass(frozen=True)
class AudioConfig:
    """How a file becomes the analysis window (paper §III-A).

    short_policy: what to do with tracks shorter than ``window_start + window_seconds``.
      Tracks of at least ``window_seconds`` use a window centred in the track (for a track of
      ``L`` seconds the window starts at ``min(window_start, (L - window_seconds) / 2)``).
      Shorter tracks use the whole clip, extended to ``window_seconds`` by
      ``"repeat"`` (loop the clip; default, so that no frame is silence and the band statistics of
      a 30 s clip stay those of the music) or ``"zero"`` (pad with silence at the end).
    """

    sample_rate: int = SAMPLE_RATE
    target_lufs: float | None = TARGET_LUFS  # None disables loudness normalisation
    # Loudness below this is treated as silence and left unscaled (BS.1770 absolute gate, -70 LUFS).
    silence_lufs: float = -70.0
    window_start: float = WINDOW_START_S
    window_seconds: float = WINDOW_SECONDS
    short_policy: str = "repeat"  # "repeat" | "zero"
    min_seconds: float = 1.0  # shorter audio is rejected as too short
    mono: bool = True

    def __post_init__(self):
        if self.short_policy not in ("repeat", "zero"):
            raise ConfigError(f"short_policy must be 'repeat' or 'zero', got {self.short_policy!r}")
        if self.sample_rate <= 0 or self.window_seconds <= 0 or self.window_start < 0:
            raise ConfigError("sample_rate and window_seconds must be > 0, window_start >= 0")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))


@dataclass(frozen=True)
class FeatureConfig:
    """Mel spectrogram and gammatone cochleagram (paper §III-C).

    The frame length ``N`` is derived so that the window yields exactly ``n_frames`` frames with
    hop ``N/2``: ``N = floor(2 L / (n_frames + 1))`` (the paper's "N = window length / 44" for
    T = 87). Set ``frame_length`` to fix ``N`` instead (the 22.05 kHz preset).

    n_fft: ``None`` means the paper's 2N rounded up to the next fast FFT length (2N = 120 272 has
    the prime factor 7517 and costs 14x more in pocketfft; the next fast length, 121 500, changes
    the bin spacing by 1 %). An int forces that FFT size (``2 * N`` for the literal paper value).
    """

    n_mels: int = N_MELS
    n_gammatone: int = N_GAMMATONE
    n_frames: int = N_FRAMES
    frame_length: int | None = None
    n_fft: int | None = None
    pre_emphasis: float = PRE_EMPHASIS
    # Mel filterbank: librosa's default definition (Slaney scale, area-normalised triangles).
    mel_fmin: float = 0.0
    mel_fmax: float | None = None  # None: Nyquist
    mel_htk: bool = False
    mel_norm: str | None = "slaney"
    # Gammatone: 84 channels = 7 octaves x 12 per octave from C1 (32.70 Hz) up to B7 (3951 Hz),
    # librosa's CQT default; the paper says only "logarithmically spaced".
    gt_fmin: float = 32.703195662574764
    gt_bins_per_octave: int = 12
    gt_order: int = 4  # 4th-order gammatone (Patterson et al. 1992)
    gt_bandwidth: float = 1.019  # ERB multiplier for a 4th-order gammatone (Glasberg & Moore 1990)
    gt_floor_db: float = -60.0  # filter weights below this (relative to peak) are dropped (sparsity)
    # Outer-hair-cell compression: E -> E ** gt_power before log10 (Stevens' cube-root law).
    gt_power: float = 1.0 / 3.0
    log_floor: float = 1e-10  # energies are clamped here before log: silence gives finite values

    def __post_init__(self):
        if self.n_frames < 1 or self.n_mels < 1 or self.n_gammatone < 1:
            raise ConfigError("n_frames, n_mels and n_gammatone must be >= 1")
        if self.frame_length is not None and (self.frame_length < 4 or self.frame_length % 2):
            raise ConfigError(f"frame_length must be even and >= 4, got {self.frame_length}")


@dataclass(frozen=True)
class Preset:
    audio: AudioConfig
    features: FeatureConfig


PRESETS: dict[str, Preset] = {
    # The paper: 60 s at 44.1 kHz, T = 87 frames of ~1.36 s with hop ~0.68 s.
    "paper": Preset(AudioConfig(), FeatureConfig()),
    # The authors' related code: 87 frames ~ 1 s at 22.05 kHz with hop 256 (N = 512, 2N = 1024);
    # the 1.02 s window is taken where the paper's window is centred (45 s).
    "frames1s": Preset(
        AudioConfig(sample_rate=22_050, window_start=WINDOW_START_S + WINDOW_SECONDS / 2 - 0.5,
                    window_seconds=(N_FRAMES + 1) * 256 / 22_050),
        FeatureConfig(frame_length=512, n_fft=1024),
    ),
}


def replace(cfg, **changes):
    """``dataclasses.replace`` that ignores ``None`` values (handy for optional CLI flags)."""
    return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls, d: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})
