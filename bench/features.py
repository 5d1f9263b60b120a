"""Feature speed: merkit's Mel + cochleagram against librosa + the `gammatone` package.

Measures, in one process, single-threaded (CPU time, so other load on the machine matters less):

* features only: the 60 s analysis window at 44.1 kHz in, both views out;
* end to end: file → decode → resample to 44.1 kHz → loudness → window → both views,
  on a 90 s 44.1 kHz WAV, a 90 s 44.1 kHz stereo MP3 and (if present) real Emotify MP3s;
* the reference end to end: librosa.load (soxr_hq) + pyloudnorm + librosa Mel
  (same N, hop, FFT size, Hamming window, 128 bands) + gammatone.fft_gtgram (84 channels).

Writes bench/results/features.json and bench/results/features.md.

    python bench/features.py [--repeats 5]
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # per-core numbers: no library may use the second core

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from merkit.audio import load_window, normalize_loudness, select_window  # noqa: E402
from merkit.config import AudioConfig, FeatureConfig  # noqa: E402
from merkit.features.extractor import FeatureExtractor  # noqa: E402
from merkit.features.spectrum import pre_emphasis  # noqa: E402

SR = 44_100
WINDOW_S = 60.0


def cpu_time(fn, repeats):
    """Median CPU seconds of ``fn()`` over ``repeats`` runs (after one warm-up)."""
    fn()
    ts = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        ts.append(time.process_time() - t)
    return float(np.median(ts)), [float(x) for x in ts]


def music_like(seconds, sr, seed=0):
    """Chords of harmonic tones with envelopes plus a little noise: a spectrum like music's."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = np.zeros(n, np.float64)
    for start in np.arange(0, seconds, 0.5):
        f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
        a, b = int(start * sr), min(n, int((start + 1.0) * sr))
        env = np.exp(-3 * (t[a:b] - start))
        for h in range(1, 8):
            y[a:b] += env * np.sin(2 * np.pi * f0 * h * t[a:b]) / h
    y += 0.01 * rng.standard_normal(n)
    return (0.2 * y / np.abs(y).max()).astype(np.float32)


def reference_features(win, fx):
    import librosa
    from gammatone.fftweight import fft_gtgram

    g = fx.geometry
    # librosa frames are n_fft long with the N-sample window centred in them: pad so that its
    # 87 frames see exactly our 87 frames, and pre-emphasise as the paper does
    off = (g.n_fft - g.frame_length) // 2
    x = np.pad(pre_emphasis(win, 0.97), (off, g.n_fft - g.frame_length - off))
    mel = librosa.feature.melspectrogram(y=x, sr=SR, n_fft=g.n_fft, hop_length=g.hop, win_length=g.frame_length,
                                         window="hamming", center=False, n_mels=128, power=2.0)
    mel = np.log(np.maximum(mel, 1e-10))
    gt = fft_gtgram(x, SR, g.frame_length / SR, g.hop / SR, 84, 32.7)
    return mel, np.log10(np.maximum(gt, 1e-10))


def reference_end_to_end(path, fx, acfg):
    import librosa

    y, _ = librosa.load(path, sr=SR, mono=True)  # decode + soxr_hq resample
    win, _, _ = select_window(y, SR, acfg)
    win, _, _ = normalize_loudness(win, SR)
    return reference_features(win, fx)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()

    acfg, fcfg = AudioConfig(), FeatureConfig()
    fx = FeatureExtractor(acfg, fcfg)
    win = music_like(WINDOW_S, SR)
    results = {"machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                           "cores_used": 1, "numpy": np.__version__},
               "config": fx.info()["geometry"], "repeats": args.repeats}

    ours, ours_all = cpu_time(lambda: fx(win), args.repeats)
    ref, ref_all = cpu_time(lambda: reference_features(win, fx), max(1, args.repeats // 2))
    results["features_only"] = {
        "merkit_s": ours, "reference_s": ref, "merkit_runs": ours_all, "reference_runs": ref_all,
        "merkit_x_realtime_per_core": WINDOW_S / ours, "reference_x_realtime_per_core": WINDOW_S / ref,
        "speedup": ref / ours}

    e2e = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        long = music_like(90.0, SR, seed=1)
        files["wav_44k_mono_90s"] = Path(tmp) / "a.wav"
        sf.write(files["wav_44k_mono_90s"], long, SR)
        files["mp3_44k_stereo_90s"] = Path(tmp) / "b.mp3"
        sf.write(files["mp3_44k_stereo_90s"], np.stack([long, long[::-1]], 1), SR, format="MP3")
        emotify = ROOT.parent / "shared" / "data" / "emotify" / "audio" / "pop"
        if emotify.is_dir():
            files["emotify_mp3_22k_mono_60s"] = sorted(emotify.glob("*.mp3"))[0]
        for name, path in files.items():
            dur = sf.info(str(path)).duration
            o, _ = cpu_time(lambda: fx(load_window(path, acfg)[0]), args.repeats)
            r, _ = cpu_time(lambda: reference_end_to_end(str(path), fx, acfg), max(1, args.repeats // 2))
            e2e[name] = {"audio_s": dur, "merkit_s": o, "reference_s": r, "speedup": r / o,
                         "merkit_tracks_per_cpu_s": 1 / o, "merkit_audio_s_per_cpu_s": dur / o}
    results["end_to_end"] = e2e

    # agreement with the reference (same definition for Mel: should agree closely)
    mel_ref, _ = reference_features(win, fx)
    f = fx(win)
    results["agreement"] = {"mel_max_abs_diff_log": float(np.abs(mel_ref - f.mel).max())}

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "features.json").write_text(json.dumps(results, indent=2))
    fo = results["features_only"]
    lines = ["| measurement | merkit | reference (librosa + gammatone) | ratio |", "|---|---|---|---|",
             f"| features only, 60 s window (CPU s) | {fo['merkit_s']:.3f} | {fo['reference_s']:.3f} | "
             f"{fo['speedup']:.1f}x faster |",
             f"| features only, x real time per core | {fo['merkit_x_realtime_per_core']:.0f}x | "
             f"{fo['reference_x_realtime_per_core']:.0f}x | |"]
    for name, r in e2e.items():
        lines.append(f"| end to end, {name} (CPU s) | {r['merkit_s']:.3f} ({r['merkit_tracks_per_cpu_s']:.1f} "
                     f"tracks/CPU s) | {r['reference_s']:.3f} | {r['speedup']:.1f}x faster |")
    (out / "features.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
