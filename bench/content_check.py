"""The not-music check (merkit.content) on real music and on generated non-music.

    python bench/content_check.py --scan          # statistics of every real clip (~20 min on 2 cores)
    python bench/content_check.py                 # the tables from the scan: rules, false alarms, detections

Real music: the 2 369 real clips in ../shared/data (EMOPIA rendered with FluidSynth, the
MIREX-like previews, Emotify), each as merkit predict sees it (its analysis window), and cut to
snippets of 1.5-30 s (looped to the window, as merkit does with short files) to measure false
alarms by clip length. Non-music: speech by espeak-ng (four voices, three languages), speech over
music, sine sweeps, single plucked notes, tones and noise.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MERKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"
SCAN = Path(os.environ.get("MERKIT_CACHE", Path.home() / ".cache" / "merkit")) / "bench" / "content_scan.json"
LENGTHS = (1.5, 3.0, 5.0, 10.0, 20.0, 30.0)
SNIPPET_EVERY = 4  # snippets of every 4th clip (the full window of every clip)


def real_clips() -> list[tuple[str, Path]]:
    out = [("emotify", p) for p in sorted((SHARED / "emotify" / "audio").glob("*/*.mp3"))]
    out += [("mirex_mood", p) for p in sorted((SHARED / "mirex_mood" / "audio").glob("*.opus"))]
    renders = Path(os.environ.get("MERKIT_CACHE", Path.home() / ".cache" / "merkit")) / "emopia" / "44100"
    out += [("emopia", p) for p in sorted(renders.glob("*.wav"))]
    return out


_FRONT = None


def _front():
    global _FRONT
    if _FRONT is None:
        from merkit.config import AudioConfig, FeatureConfig
        from merkit.frontend import FrontEnd

        _FRONT = FrontEnd(AudioConfig(), FeatureConfig(), ("mel", "coch"))
    return _FRONT


def window_stats(win: np.ndarray, lufs: float) -> dict:
    """Every statistic the check reads, of one analysis window."""
    from merkit.content import sound_stats, spectral_stats

    front = _front()
    out = {"loudness_lufs": float(lufs)}
    out.update(spectral_stats(front.spectral(win).mel))
    out.update(sound_stats(win, front.audio.sample_rate))
    return out


def clip_stats(job: tuple[int, str, str]) -> dict:
    """Statistics of one file's analysis window, and of snippets of it (every SNIPPET_EVERY-th)."""
    from merkit.audio import AudioError, load_window, prepare

    i, corpus, path = job
    cfg = _front().audio
    try:
        win, info = load_window(path, cfg)
    except AudioError as e:
        return {"corpus": corpus, "path": path, "error": str(e)}
    row = {"corpus": corpus, "path": path, "duration": info.duration, "full": window_stats(win, info.loudness_lufs)}
    if i % SNIPPET_EVERY == 0:
        # snippets of the music itself (the window before normalisation is the same music at another level)
        for L in LENGTHS:
            snip, sinfo = prepare(win[:int(L * cfg.sample_rate)], cfg.sample_rate, cfg, name=path)
            row[str(L)] = window_stats(snip, sinfo.loudness_lufs)
    return row


def scan(workers: int) -> None:
    jobs = [(i, c, str(p)) for i, (c, p) in enumerate(real_clips())]
    t0 = time.time()
    rows = []
    with ProcessPoolExecutor(workers) as pool:
        for k, row in enumerate(pool.map(clip_stats, jobs, chunksize=8)):
            rows.append(row)
            if k % 200 == 0:
                print(f"{k}/{len(jobs)} {time.time() - t0:.0f} s", flush=True)
    SCAN.parent.mkdir(parents=True, exist_ok=True)
    tmp = SCAN.with_suffix(".tmp")
    tmp.write_text(json.dumps({"rows": rows, "seconds": time.time() - t0}))
    os.replace(tmp, SCAN)
    print(f"{len(rows)} clips in {time.time() - t0:.0f} s -> {SCAN}")


# ---- generated non-music ------------------------------------------------------------------------

SPEECH_TEXTS = {
    "en": ("The central bank raised interest rates by a quarter of a percentage point on Wednesday, citing "
           "persistent inflation in services and a labour market that remains tight. Officials said further "
           "increases could not be ruled out, while several members argued for a pause. In other news, heavy "
           "rain caused flooding in the north of the country, where hundreds of homes were evacuated overnight."),
    "de": ("Die Regierung hat am Mittwoch ein neues Gesetz vorgestellt, das die Energiepreise fuer Haushalte "
           "senken soll. Kritiker bemaengeln, dass die Kosten fuer den Staatshaushalt zu hoch seien. Die "
           "Opposition kuendigte Widerstand im Parlament an. Das Wetter: morgen regnerisch, am Wochenende sonniger."),
    "fr": ("Le gouvernement a presente mercredi un nouveau projet de loi visant a reduire les prix de l energie "
           "pour les menages. Les critiques estiment que le cout pour le budget de l Etat est trop eleve. "
           "L opposition a annonce qu elle s y opposerait au parlement. Demain, il pleuvra sur tout le pays."),
}
VOICES = [("en-us", "en"), ("en+f3", "en"), ("en-gb+m3", "en"), ("de", "de"), ("de+f2", "de"), ("fr+m3", "fr")]


def speak(voice: str, text: str, sr: int) -> np.ndarray | None:
    """espeak-ng's reading of ``text`` at ``sr`` (None where espeak-ng is not installed)."""
    import shutil
    import subprocess
    import tempfile

    import soundfile as sf

    from merkit.audio import resample

    if shutil.which("espeak-ng") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["espeak-ng", "-v", voice, "-w", f"{tmp}/s.wav", text], check=True, capture_output=True)
        y, rate = sf.read(f"{tmp}/s.wav", dtype="float32")
    return resample(y, rate, sr)


def sweep(seconds: float, sr: int, f0=100.0, f1=8000.0, log=True) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    if log:
        phase = 2 * np.pi * f0 * seconds / np.log(f1 / f0) * ((f1 / f0) ** (t / seconds) - 1)
    else:
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds))
    return (0.3 * np.sin(phase)).astype(np.float32)


def pluck(freq: float, seconds: float, sr: int, seed=0) -> np.ndarray:
    """One plucked string (Karplus-Strong)."""
    rng = np.random.default_rng(seed)
    n = int(round(sr / freq))
    buf = rng.uniform(-1, 1, n)
    out = np.empty(int(seconds * sr))
    for i in range(len(out)):  # a few seconds: fast enough in Python for a benchmark
        out[i] = buf[i % n]
        buf[i % n] = 0.996 * 0.5 * (buf[i % n] + buf[(i + 1) % n])
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def non_music(sr: int) -> list[tuple[str, str, np.ndarray]]:
    """(kind, name, signal): what should be "not music" (kind speech / single) and speech over
    music (kind voice+music: keeps its emotion)."""
    from merkit.audio import read_mono

    out = []
    for voice, lang in VOICES:
        y = speak(voice, SPEECH_TEXTS[lang], sr)
        if y is not None:
            out.append(("speech", f"espeak-ng {voice}", y))
    music = {g: read_mono(SHARED / "emotify" / "audio" / g / f"{i}.mp3", sr) for g, i in (("classical", 12), ("pop", 7))
             if (SHARED / "emotify" / "audio" / g / f"{i}.mp3").exists()}
    for voice, lang in VOICES[:3]:
        y = speak(voice, SPEECH_TEXTS[lang], sr)
        for g, m in music.items() if y is not None else ():
            for db in (-6, -12):
                n = min(len(y), len(m))
                bed = m[:n] / np.sqrt(np.mean(m[:n] ** 2)) * np.sqrt(np.mean(y[:n] ** 2)) * 10 ** (db / 20)
                out.append(("voice+music", f"{voice} over {g} at {db} dB", (y[:n] + bed).astype(np.float32)))
    for secs in (5.0, 10.0, 30.0):
        out.append(("single", f"log sweep 100-8000 Hz, {secs:g} s", sweep(secs, sr)))
        out.append(("single", f"linear sweep 100-8000 Hz, {secs:g} s", sweep(secs, sr, log=False)))
    for freq, secs in ((110.0, 3.0), (220.0, 2.0), (440.0, 1.0), (330.0, 6.0)):
        out.append(("single", f"one plucked note {freq:g} Hz, {secs:g} s", pluck(freq, secs, sr)))
    # as files hold them: 16-bit PCM (quantisation noise in the quiet bins) and MP3 (a codec's)
    for kind, name, y in [o for o in out if o[0] == "single" and ("10 s" in o[1] or "note" in o[1])]:
        for fmt, subtype in (("WAV", "PCM_16"), ("MP3", None)):
            out.append((kind, f"{name}, {fmt if fmt == 'MP3' else '16-bit WAV'}", coded(y, sr, fmt, subtype)))
    return out


def coded(y: np.ndarray, sr: int, fmt: str, subtype: str | None) -> np.ndarray:
    """``y`` written to a ``fmt`` file in memory and read back."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0]


NEW_RULES = ("a single tone", "a single sound", "speech")


# ---- tables -------------------------------------------------------------------------------------

def verdict(stats: dict, check) -> str | None:
    """The check's reason on stored statistics (merkit.content.judge)."""
    from merkit.content import judge

    return judge(stats, -70.0, check)


def tables() -> int:
    from merkit.audio import prepare
    from merkit.config import AudioConfig
    from merkit.content import ContentCheck

    check = ContentCheck()
    data = json.loads(SCAN.read_text())
    rows = [r for r in data["rows"] if "full" in r]
    lines = ["# The not-music check on real music and on generated non-music", "",
             f"Run: `python bench/content_check.py --scan` ({data['seconds'] / 60:.0f} min on 2 cores, "
             f"{time.strftime('%Y-%m-%d')}). Thresholds: `merkit.content.ContentCheck` "
             f"(max_peak {check.max_peak} with max_tone_flux {check.max_tone_flux} or tone_glide {check.tone_glide}, min_flux {check.min_flux}, "
             f"speech_pause {check.speech_pause}, speech_glide {check.speech_glide}, speech_held {check.speech_held}, "
             f"speech_flux {check.speech_flux}; "
             f"the older rules: min_variation {check.min_variation}, min_roughness {check.min_roughness}). The new "
             "thresholds were chosen looking at the full windows of every other clip (the first, third, ...) and at "
             "the generated signals; the other half is the held-out check (last column).", ""]
    # distributions on real music
    lines += ["## Statistics of real music (full analysis window)", "",
              "| corpus | clips | flux min / 1st pct | peak 99th pct / max | pause 99th pct / max | glide 99th pct / max "
              "| held 1st pct / min |",
              "|---|---|---|---|---|---|---|"]
    for corpus in ("emopia", "mirex_mood", "emotify"):
        rs = [r["full"] for r in rows if r["corpus"] == corpus]
        if not rs:
            continue
        f, pk, pa, g, h = (np.array([r[k] for r in rs]) for k in ("flux", "peak", "pause", "glide", "held"))
        lines.append(f"| {corpus} | {len(rs)} | {f.min():.3f} / {np.percentile(f, 1):.3f} | "
                     f"{np.percentile(pk, 99):.3f} / {pk.max():.3f} | "
                     f"{np.percentile(pa, 99):.3f} / {pa.max():.3f} | {np.percentile(g, 99):.3f} / {g.max():.3f} | "
                     f"{np.percentile(h, 1):.3f} / {h.min():.3f} |")
    # false alarms by length
    lines += ["", "## False alarms on real music, by clip length", "",
              "Snippets are the first L seconds of the analysis window of every "
              f"{SNIPPET_EVERY}th clip, looped to the window as merkit does with short files.", "",
              "| length | clips | called not music (all rules) | by the older rules (silence, steady, noise) | by the new "
              "rules (tone or sweep, single sound, speech) | held-out half: not music |",
              "|---|---|---|---|---|---|"]
    result = {"check": check.to_dict(), "lengths": {}, "non_music": []}
    for key in [str(L) for L in LENGTHS] + ["full"]:
        rs = [(i, r[key]) for i, r in enumerate(rows) if key in r]
        if not rs:
            continue
        v = [(i, verdict(s, check)) for i, s in rs]
        bad = [i for i, reason in v if reason]
        new = [i for i, reason in v if reason and reason.startswith(NEW_RULES)]
        held_out = {i for k, (i, _) in enumerate(rs) if k % 2}  # every other clip of this row
        odd = sorted(held_out)
        odd_bad = [i for i in bad if i in held_out]
        label = "full window (60 s)" if key == "full" else f"{key} s"
        pct = lambda k: f"{k} ({100 * k / len(rs):.1f} %)"  # noqa: E731
        lines.append(f"| {label} | {len(rs)} | {pct(len(bad))} | {pct(len(bad) - len(new))} | {pct(len(new))} | "
                     f"{len(odd_bad)} of {len(odd)} |")
        result["lengths"][key] = {"clips": len(rs), "not_music": len(bad), "new_rules": len(new),
                                  "examples": {rows[i]["path"]: verdict(dict(rs_i), check) for i, rs_i in rs if i in bad[:8]}}
    # generated non-music
    cfg = AudioConfig()
    lines += ["", "## Generated non-music", "", "| kind | signal | expected | merkit says | ok |", "|---|---|---|---|---|"]
    for kind, name, y in non_music(cfg.sample_rate):
        win, info = prepare(y, cfg.sample_rate, cfg, name=name)
        s = window_stats(win, info.loudness_lufs)
        reason = verdict(s, check)
        says = f"not music: {reason}" if reason else "emotion"
        expected = {"speech": "not music: speech", "single": "not music", "voice+music": "emotion"}[kind]
        ok = (reason is not None and (kind != "speech" or reason.startswith("speech"))) if kind != "voice+music" \
            else reason is None
        lines.append(f"| {kind} | {name} | {expected} | {says[:90]} | {'✓' if ok else '✗'} |")
        result["non_music"].append({"kind": kind, "name": name, "says": says, "ok": ok,
                                    **{k: round(s[k], 4) for k in ("pause", "glide", "flux", "peak", "held")}})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "content_check.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "content_check.json").write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scan", action="store_true", help="compute the statistics of every real clip first")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    if args.scan or not SCAN.exists():
        scan(args.workers)
    return tables()


if __name__ == "__main__":
    sys.exit(main())
