"""Is there music in the analysis window? A check run before any emotion is given.

An emotion model answers every input, and a confident "Q3 sad" for digital silence or "Q4 calm"
for white noise cannot be told apart from a real result. Three rules on what the front end
computes anyway (the window's loudness and its Mel band energies) flag such input:

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


def check_window(loudness_lufs: float, log_mel: np.ndarray | None, silence_lufs: float,
                 check: ContentCheck = ContentCheck()) -> tuple[str | None, dict]:
    """(reason or None, stats) of one analysis window; ``log_mel=None``: the silence rule only."""
    if not check.enabled:
        return None, {}
    stats: dict = {"loudness_lufs": float(loudness_lufs)}
    if not (np.isfinite(loudness_lufs) and loudness_lufs >= silence_lufs):
        return f"silence (loudness below the {silence_lufs:g} LUFS gate)", stats
    if log_mel is None:
        return None, stats
    stats.update(spectral_stats(log_mel))
    if stats["variation"] < check.min_variation:
        return (f"a steady signal such as noise, a hum or a test tone (spectral variation "
                f"{stats['variation']:.2f} < {check.min_variation:g})"), stats
    if stats["roughness"] < check.min_roughness:
        return (f"a noise-like spectrum (spectral roughness {stats['roughness']:.2f} < "
                f"{check.min_roughness:g})"), stats
    return None, stats


__all__ = ["ContentCheck", "NotMusicError", "check_window", "spectral_stats"]
