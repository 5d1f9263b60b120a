import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(os.environ.get("MERKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def tone(freq, seconds, sr, amp=0.3):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def melody(seconds, sr, seed=0, amp=0.3):
    """A seeded, music-like test signal: notes of a major scale (harmonics 1-6, plucked
    envelopes) every 0.2-0.6 s over a bass note every 2 s. Unlike a steady tone or noise it
    passes merkit's not-music check (merkit.content), as real recordings do."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    y = np.zeros(n)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])

    def note(midi, start, dur, level):
        i0, m = int(start * sr), int(dur * sr)
        if i0 >= n or m <= 0:
            return
        m = min(m, n - i0)
        t = np.arange(m) / sr
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 7) if f0 * k < sr / 2)
        y[i0:i0 + m] += level * wave * np.exp(-3.0 * t / dur)

    t = 0.0
    while t < seconds:
        dur = float(rng.uniform(0.2, 0.6))
        note(60 + int(rng.choice(scale)) + 12 * int(rng.integers(0, 2)), t, dur, 1.0)
        t += dur
    for b in np.arange(0.0, seconds, 2.0):
        note(36 + int(rng.choice(scale[:5])), float(b), 2.0, 0.7)
    return (amp * y / max(np.abs(y).max(), 1e-9)).astype(np.float32)


@pytest.fixture
def shared_data():
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture
def torch_one_thread():
    """Tiny models train fastest single-threaded on a shared 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
