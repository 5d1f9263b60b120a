"""The reference signal: a fixed synthetic input whose outputs a model file stores, so that a
loaded (or exported) model can verify itself."""
from __future__ import annotations

import numpy as np

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


__all__ = ["REFERENCE_SECONDS", "REFERENCE_SR", "reference_signal"]
