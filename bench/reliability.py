"""Bad input, as a new user would try it: every case through the CLI in a fresh process, with
what merkit did, whether a traceback or a confident answer leaked out, and the peak memory.

    python bench/reliability.py --real-feats feats/emopia feats/mirex_mood feats/emotify
                                                # writes bench/results/reliability.md (+ .json)
    python bench/reliability.py --quick         # without the 10-hour files

Each case runs ``python -m merkit ...`` in its own process; its peak RSS comes from
``os.wait4``. A case passes when merkit did what docs/reliability.md promises
(the ``expect`` column). The CI suite runs a fast subset of these as tests (tests/test_content.py,
test_serve.py, test_extract.py, test_classical.py, test_memo2496.py, test_predict.py).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED = Path(os.environ.get("MERKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
SR = 44_100
MEMORY_BOUND_MB = 1300  # the bound docs/reliability.md states for any input (predict, extract, serve)


def run(argv: list[str], cwd: Path, timeout: float = 1800, env: dict | None = None) -> dict:
    """Run ``python -m merkit ARGV``; its exit code, output and peak RSS (MB)."""
    out, err = cwd / "stdout.txt", cwd / "stderr.txt"
    t0 = time.perf_counter()
    with open(out, "wb") as fo, open(err, "wb") as fe:
        p = subprocess.Popen([sys.executable, "-m", "merkit", *argv], cwd=cwd, stdout=fo, stderr=fe,
                             env={**os.environ, **(env or {})})
        deadline = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.05)
    p.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": p.returncode, "out": out.read_text(errors="replace"), "err": err.read_text(errors="replace"),
            "rss_mb": ru.ru_maxrss / 1024, "seconds": time.perf_counter() - t0}


def write_long_flac(path: Path, hours: float) -> None:
    """A silent FLAC of ``hours`` (written block by block: a few MB on disk)."""
    block = np.zeros((SR * 60, 2), dtype=np.int16)
    with sf.SoundFile(path, "w", samplerate=SR, channels=2, subtype="PCM_16", format="FLAC") as f:
        for _ in range(int(hours * 60)):
            f.write(block)


def write_long_music(path: Path, hours: float) -> None:
    """``hours`` of music-like audio (ten different minutes of :func:`melody`, in turn), written
    minute by minute in the format of ``path``'s suffix (MP3 by libsndfile, M4A by PyAV)."""
    minutes = [melody(60.0, seed=100 + k) for k in range(10)]
    n = int(round(hours * 60))
    if path.suffix == ".m4a":
        _encode_av(path, (minutes[k % 10] for k in range(n)), "mp4", "aac")
        return
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, format="MP3") as f:
        for k in range(n):
            f.write(minutes[k % 10])


def melody(seconds: float, seed: int = 0) -> np.ndarray:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import melody as m

    return m(seconds, SR, seed=seed)


# ---- cases --------------------------------------------------------------------------------------

def audio_cases(d: Path, rng) -> list[dict]:
    n = 75 * SR
    t = np.arange(n) / SR
    files = {
        "digital silence (75 s)": ("silence.wav", np.zeros(n)),
        "DC offset": ("dc.wav", np.full(n, 0.5)),
        "full-scale white noise": ("white.flac", rng.uniform(-1, 1, n)),
        "1 kHz test tone": ("tone.wav", 0.5 * np.sin(2 * np.pi * 1000 * t)),
        "50 Hz hum": ("hum.wav", 0.5 * np.sin(2 * np.pi * 50 * t)),
        "generated melody": ("melody.wav", melody(75.0)),
        "3 s clip (looped)": ("short.wav", melody(3.0, seed=1)),
        "0.5 s clip": ("tiny.wav", melody(0.5, seed=2)),
        "8 kHz mono": ("lowrate.wav", None),
        "192 kHz": ("highrate.wav", None),
        "8 channels": ("eight.wav", None),
    }
    cases = []
    for name, (fname, y) in files.items():
        p = d / fname
        if fname == "lowrate.wav":
            sf.write(p, melody(40.0, 3)[::5], 8820)
        elif fname == "highrate.wav":
            import soxr

            sf.write(p, soxr.resample(melody(40.0, 4), SR, 192_000), 192_000)
        elif fname == "eight.wav":
            sf.write(p, np.stack([melody(40.0, 5)] * 8, axis=1), SR)
        else:
            sf.write(p, np.asarray(y, dtype=np.float32), SR, subtype="FLOAT" if fname.endswith("wav") else "PCM_16")
        expect = ("not music" if name in ("digital silence (75 s)", "DC offset", "full-scale white noise",
                                         "1 kHz test tone", "50 Hz hum")
                  else "error: too short" if fname == "tiny.wav" else "emotion")
        cases.append({"case": name, "argv": ["predict", str(p), "--format", "json", "--no-progress"],
                      "expect": expect})
    bad = {"empty file": ("empty.wav", b""), "random bytes named .mp3": ("random.mp3", rng.bytes(50_000)),
           "text named .wav": ("text.wav", b"this is not audio\n" * 100)}
    for name, (fname, data) in bad.items():
        (d / fname).write_bytes(data)
        cases.append({"case": name, "argv": ["predict", str(d / fname), "--format", "json", "--no-progress"],
                      "expect": "error"})
    wav = d / "melody.wav"
    data = wav.read_bytes()
    (d / "truncated.wav").write_bytes(data[:len(data) // 3])
    cases.append({"case": "truncated wav", "argv": ["predict", str(d / "truncated.wav"), "--format", "json",
                                                    "--no-progress"], "expect": "emotion"})
    y = melody(30.0, 6)
    y[1000:2000] = np.nan
    sf.write(d / "nan.wav", y, SR, subtype="FLOAT")
    cases.append({"case": "NaN samples", "argv": ["predict", str(d / "nan.wav"), "--format", "json", "--no-progress"],
                  "expect": "error"})
    return cases


def folder_cases(d: Path) -> list[dict]:
    music = d / "folder"
    for sub in ("a", "b", "c"):
        (music / sub).mkdir(parents=True, exist_ok=True)
        sf.write(music / sub / "1.flac", melody(20.0, seed=ord(sub)), SR)
    sf.write(music / "x.aiff", melody(20.0, seed=9), SR, format="AIFF")
    if not (music / "gone.mp3").is_symlink():
        (music / "gone.mp3").symlink_to(d / "does-not-exist.mp3")
    for old in ("plots", "feats", "folder.csv"):
        shutil.rmtree(d / old, ignore_errors=True) if (d / old).is_dir() else (d / old).unlink(missing_ok=True)
    (d / "exists.png").write_bytes(b"x")
    (d / "outdir").mkdir(exist_ok=True)
    return [
        {"case": "folder: dangling symlink, .aiff, three 1.flac", "expect": "4 emotions + 1 error, 4 PNGs",
         "argv": ["predict", str(music), "--timeline", "--plot", str(d / "plots"), "--format", "csv",
                  "-o", str(d / "folder.csv"), "--no-progress"], "check": "plots"},
        {"case": "predict -o EXISTING_DIR", "expect": "error before any work",
         "argv": ["predict", str(music), "-o", str(d / "outdir"), "--no-progress"]},
        {"case": "predict --plot EXISTING_FILE", "expect": "error before any work",
         "argv": ["predict", str(music), "--timeline", "--plot", str(d / "exists.png"), "--no-progress"]},
        {"case": "extract folder with dangling symlink and .aiff", "expect": "4 extracted, 1 failure listed",
         "argv": ["extract", str(music), "-o", str(d / "feats"), "--workers", "0", "--no-progress"],
         "check": "extract"},
    ]


def data_cases(d: Path, rng) -> list[dict]:
    feats = d / "feats_bad"
    (feats / "labels").mkdir(parents=True, exist_ok=True)
    np.save(feats / "mel_spec.npy", np.zeros((40, 64, 87), np.float32))
    np.save(feats / "cochlegram.npy", np.zeros((40, 84, 87), np.float32))
    np.save(feats / "labels" / "label_a.npy", np.ones(40, np.float32))
    np.save(feats / "labels" / "label_v.npy", np.ones(40, np.float32))
    (feats / "features.json").write_text(json.dumps({"features": {"n_mels": 128, "n_gammatone": 84},
                                                     "geometry": {"n_frames": 87}}))
    onec = d / "feats_oneclass"
    (onec / "labels").mkdir(parents=True, exist_ok=True)
    for f in ("mel_spec.npy", "cochlegram.npy"):
        np.save(onec / f, rng.standard_normal((60, 128 if f.startswith("mel") else 84, 87)).astype(np.float32))
    np.save(onec / "labels" / "label_a.npy", np.ones(60, np.float32))
    np.save(onec / "labels" / "label_v.npy", np.ones(60, np.float32))
    trunc = d / "feats_trunc"
    shutil.rmtree(trunc, ignore_errors=True)
    shutil.copytree(onec, trunc)
    raw = (trunc / "cochlegram.npy").read_bytes()
    (trunc / "cochlegram.npy").write_bytes(raw[:len(raw) // 2])
    (d / "labels_latin1.csv").write_bytes("track_id,path,label_a,label_v\n1,caf\xe9.wav,0.1,0.2\n".encode("latin-1"))

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {d / 'PWNED'}",)

    run_dir = d / "evil_run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "model.pkl").write_bytes(pickle.dumps(Exploit()))
    return [
        {"case": "64-band Mel, features.json says 128", "expect": "error naming the file",
         "argv": ["train", "--data", str(feats), "--epochs", "1", "--no-progress"]},
        {"case": "labels all one class", "expect": "error: nothing to learn",
         "argv": ["train", "--data", str(onec), "--epochs", "1", "--no-progress"]},
        {"case": "truncated .npy", "expect": "error naming the file",
         "argv": ["train", "--data", str(trunc), "--epochs", "1", "--no-progress"]},
        {"case": "non-UTF-8 manifest CSV", "expect": "error naming the file",
         "argv": ["extract", str(d / "labels_latin1.csv"), "-o", str(d / "f2"), "--workers", "0", "--no-progress"]},
        {"case": "evaluate a pickled model.pkl with os.system inside", "expect": "refused, nothing run",
         "argv": ["evaluate", str(run_dir / "model.pkl"), "--data", str(onec)], "check": "pwned"},
        {"case": "serve --port 99999", "expect": "error", "argv": ["serve", "--port", "99999"]},
        {"case": "serve --max-upload-mb -5", "expect": "error", "argv": ["serve", "--max-upload-mb", "-5"]},
    ]


def long_cases(d: Path) -> list[dict]:
    long = d / "ten_hours.flac"
    if not long.exists():
        write_long_flac(long, 10.0)
    return [
        {"case": "10-hour silent FLAC: predict", "expect": f"not music, < {MEMORY_BOUND_MB} MB",
         "argv": ["predict", str(long), "--format", "json", "--no-progress"], "memory": True},
        {"case": "10-hour silent FLAC: predict --timeline", "expect": f"not music, < {MEMORY_BOUND_MB} MB",
         "argv": ["predict", str(long), "--timeline", "--format", "json", "--no-progress"], "memory": True},
        {"case": "10-hour silent FLAC: predict --timeline --no-content-check", "expect":
         f"timeline of the first 10 min + note, < {MEMORY_BOUND_MB} MB",
         "argv": ["predict", str(long), "--timeline", "--no-content-check", "--format", "json", "--no-progress"],
         "memory": True},
        {"case": "10-hour silent FLAC: extract", "expect": f"1 track extracted, < {MEMORY_BOUND_MB} MB per process",
         "argv": ["extract", str(long.parent / "long_only"), "-o", str(d / "feats_long"), "--workers", "0",
                  "--no-progress"], "memory": True, "setup": "long_only"},
    ]


def real_clips(d: Path, n: int) -> list[Path]:
    """``n`` real 30 s MP3 clips (Emotify, from ../shared/data) copied read-only into ``d``, or
    generated MP3s where the shared data is absent."""
    d.mkdir(parents=True, exist_ok=True)
    src = sorted((SHARED / "emotify" / "audio" / "pop").glob("*.mp3"), key=lambda p: int(p.stem))[:n]
    out = []
    for i in range(n):
        dst = d / f"{i:02d}.mp3"
        if not dst.exists():
            if i < len(src):
                shutil.copyfile(src[i], dst)
            else:
                sf.write(dst, melody(30.0, seed=200 + i), SR, format="MP3")
            os.chmod(dst, 0o444)
        out.append(dst)
    return out


def _sums(paths) -> dict:
    return {str(p): Path(p).read_bytes() for p in paths}


def _one_line(r: dict) -> tuple[str, bool]:
    lines = [ln for ln in r["err"].strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "(nothing on stderr)"), len(lines) == 1


def _tmp_left(folder: Path) -> list[str]:
    return [p.name for p in Path(folder).rglob("*") if ".tmp" in p.name]


def _mount_tmpfs(path: Path, size: str, *options: str) -> bool:
    """A small tmpfs at ``path`` (root only): a real full or read-only disk."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join((f"size={size}", *options))
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode == 0


def _fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` so that ``leave`` bytes stay free."""
    st = os.statvfs(disk)
    (disk / "fill").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


def data_loss_cases(d: Path) -> list[dict]:
    """Issue 20: no command may overwrite an input or a file merkit did not write; a full disk
    keeps the previous output, leaves no temporary file and says so in one line."""
    clips = real_clips(d / "loss", 3)
    a, b, c = clips
    sums = _sums(clips)
    (d / "loss" / "afile").write_text("a regular file")
    user = d / "loss" / "user_folder"
    user.mkdir(exist_ok=True)
    (user / "tracks.csv").write_text("my own list\n")
    ro_csv = d / "loss" / "readonly.csv"
    if ro_csv.exists():
        os.chmod(ro_csv, 0o644)
    ro_csv.write_text("kind,path,status,window_start\n")  # merkit's own predictions header
    os.chmod(ro_csv, 0o444)
    ex = d / "loss" / "examples.csv"
    ex.write_text("path,quadrant\n" + "".join(f"{p},{q}\n" for p, q in zip(clips, (1, 2, 3))))
    shutil.rmtree(d / "loss" / "newdir", ignore_errors=True)
    (d / "loss" / "newdir").unlink(missing_ok=True)

    def intact(extra=lambda: True, no=()):
        def check(r):
            line, one = _one_line(r)
            ok = r["rc"] != 0 and one and _sums(clips) == sums and extra() and not any(Path(x).exists() for x in no)
            return line, ok
        return check

    cases = [
        {"case": "predict b.mp3 -o b.mp3", "expect": "refused, file intact",
         "argv": ["predict", str(b), "-o", str(b)], "check": intact()},
        {"case": "predict --format csv -o *.mp3 (shell glob)", "expect": "refused, files intact",
         "argv": ["predict", "--format", "csv", "-o", str(a), str(b), str(c)], "check": intact()},
        {"case": "predict -o READ-ONLY AUDIO (as root)", "expect": "refused, file intact",
         "argv": ["predict", str(a), "-o", str(c)], "check": intact()},
        {"case": "predict -o READ-ONLY merkit CSV (as root)", "expect": "refused, file intact",
         "argv": ["predict", str(a), "--format", "csv", "-o", str(ro_csv)],
         "check": intact(lambda: ro_csv.read_text() == "kind,path,status,window_start\n")},
        {"case": "predict -o newdir/ (trailing slash)", "expect": "refused, no file 'newdir'",
         "argv": ["predict", str(a), "-o", str(d / "loss" / "newdir") + "/"],
         "check": intact(no=[d / "loss" / "newdir"])},
        {"case": "export -o INSIDE_A_FILE/m.onnx", "expect": "one line, before any work",
         "argv": ["export", "-o", str(d / "loss" / "afile" / "m.onnx")], "check": intact()},
        {"case": "adapt -o INSIDE_A_FILE/m.pt", "expect": "one line, before any work",
         "argv": ["adapt", "--examples", str(ex), "-o", str(d / "loss" / "afile" / "m.pt")], "check": intact()},
        {"case": "adapt -o ONE_OF_ITS_EXAMPLES", "expect": "refused, file intact",
         "argv": ["adapt", "--examples", str(ex), "-o", str(a)], "check": intact()},
        {"case": "extract -o FOLDER_WITH_A_USERS_tracks.csv", "expect": "refused, file intact",
         "argv": ["extract", str(d / "loss"), "-o", str(user), "--workers", "0", "--no-progress"],
         "check": intact(lambda: (user / "tracks.csv").read_text() == "my own list\n")},
    ]
    for case in cases:
        case["expect_before_work"] = True
    return cases


def round2_cases(d: Path) -> list[dict]:
    """Issue 24 (reliability, round two): one-line errors, one rule for worker counts, damaged
    MP3s decoded where they can be, library formats and linked folders in a scan."""
    r2 = d / "round2"
    r2.mkdir(exist_ok=True)
    song = r2 / "song.wav"
    sf.write(song, melody(20.0, seed=21), SR)
    sf.write(r2 / "damaged.mp3", melody(90.0, seed=22), SR, format="MP3")
    data = bytearray((r2 / "damaged.mp3").read_bytes())
    data[len(data) // 2:len(data) // 2 + 60_000] = bytes(60_000)
    (r2 / "damaged.mp3").write_bytes(bytes(data))
    lib = r2 / "library"
    shutil.rmtree(lib, ignore_errors=True)
    lib.mkdir()
    for k, (suffix, fmt, codec) in enumerate([(".m4a", "mp4", "aac"), (".aac", "adts", "aac"), (".mp4", "mp4", "alac"),
                                               (".webm", "webm", "libopus"), (".wma", "asf", "wmav2"),
                                               (".mka", "matroska", "flac")]):
        _encode_av(lib / f"song{k}{suffix}", melody(20.0, seed=30 + k), fmt, codec)
    drive = r2 / "drive"
    shutil.rmtree(drive, ignore_errors=True)
    drive.mkdir()
    sf.write(drive / "linked.flac", melody(20.0, seed=40), SR)
    (lib / "drive").symlink_to(drive)
    (lib / "cover.jpg").write_bytes(b"\xff\xd8")

    def folder_check(r):
        try:
            res = json.loads(r["out"])["results"]
        except (ValueError, KeyError):
            return _one_line(r)[0], False
        ok = sum(x["status"] == "ok" for x in res) == 7 and r["rc"] == 0 and "1 not audio or MIDI (.jpg)" in r["err"]
        return f"{sum(x['status'] == 'ok' for x in res)} of {len(res)} analysed; stderr: {r['err'].strip()[:80]}", ok

    def note_check(r):
        try:
            res = json.loads(r["out"])["results"][0]
        except (ValueError, KeyError, IndexError):
            return _one_line(r)[0], False
        return (f"{res['status']}: {res.get('note') or res.get('error')}",
                res["status"] == "ok" and (res.get("note") or "").startswith(("damaged audio", "the analysis window starts")))

    def one_line(r):
        line, one = _one_line(r)
        return line, r["rc"] != 0 and one

    def same_rule(r):  # argparse's usage line, then the one rule's message
        line, _ = _one_line(r)
        return line, r["rc"] == 2 and "must be a whole number >= 0 (0: in this process)" in line

    def whole_timeline(r):  # every 5 s of the 3 hours, in bounded memory
        try:
            res = json.loads(r["out"])["results"][0]
        except (ValueError, KeyError, IndexError):
            return _one_line(r)[0], False
        n = len(res.get("timeline") or [])
        last = (res.get("timeline") or [{}])[-1].get("end", 0.0)
        return (f"{res['status']}: {n} timeline windows to {last / 3600:.2f} h, peak {r['rss_mb']:.0f} MB",
                res["status"] == "ok" and n >= 2150 and last >= 3 * 3600 - 1)

    def says(prefix):  # the file's status and message, one line; ok when it starts with prefix
        def check(r):
            try:
                res = json.loads(r["out"])["results"][0]
            except (ValueError, KeyError, IndexError):
                return _one_line(r)[0], False
            msg = res.get("error") or (f"Q{res['prediction']['quadrant']} {res['prediction']['quadrant_word']}"
                                       if res.get("prediction") else "")
            return f"{res['status']}: {msg}", msg.startswith(prefix) if prefix else res["status"] == "ok"
        return check

    sys.path.insert(0, str(ROOT / "bench"))
    from content_check import SPEECH_TEXTS, pluck, speak, sweep

    from merkit.audio import read_mono

    sf.write(r2 / "sweep.wav", sweep(20.0, SR), SR)
    sf.write(r2 / "pluck.wav", pluck(220.0, 2.0, SR), SR)
    sound_cases = [
        {"case": "a 100-8000 Hz sine sweep (20 s)", "expect": "not music", "check": says("not music"),
         "argv": ["predict", str(r2 / "sweep.wav"), "--format", "json", "--no-cache"]},
        {"case": "one plucked note (2 s)", "expect": "not music", "check": says("not music"),
         "argv": ["predict", str(r2 / "pluck.wav"), "--format", "json", "--no-cache"]},
    ]
    speech = speak("en-us", SPEECH_TEXTS["en"], SR)
    if speech is not None:  # espeak-ng installed (install.sh)
        sf.write(r2 / "speech.wav", speech, SR)
        bed = read_mono(SHARED / "emotify" / "audio" / "classical" / "12.mp3", SR) if (SHARED / "emotify").is_dir() \
            else melody(len(speech) / SR, seed=24)
        n = min(len(bed), len(speech))
        bed = bed[:n] / np.sqrt(np.mean(bed[:n] ** 2)) * np.sqrt(np.mean(speech[:n] ** 2)) * 10 ** (-12 / 20)
        sf.write(r2 / "speech_over_music.wav", speech[:n] + bed, SR)
        sound_cases += [
            {"case": "espeak-ng news reading (28 s)", "expect": "not music: speech", "check": says("not music: speech"),
             "argv": ["predict", str(r2 / "speech.wav"), "--format", "json", "--no-cache"]},
            {"case": "the same speech over quiet classical music (-12 dB)", "expect": "emotion", "check": says(""),
             "argv": ["predict", str(r2 / "speech_over_music.wav"), "--format", "json", "--no-cache"]},
        ]

    long_mp3, long_m4a = r2 / "three_hours.mp3", r2 / "three_hours.m4a"
    for path in (long_mp3, long_m4a):
        if not path.exists():
            write_long_music(path, 3.0)
    intro = np.concatenate([np.zeros(90 * SR, np.float32), 0.5 * melody(60.0, seed=23).astype(np.float32)])
    sf.write(r2 / "silent_intro.wav", intro, SR)
    cases = sound_cases + [
        {"case": "90 s of silence, then 60 s of music", "expect": "emotion, with a note",
         "argv": ["predict", str(r2 / "silent_intro.wav"), "--format", "json", "--no-cache"], "check": note_check},
        {"case": "predict --timeline-max-minutes inf", "expect": "one-line error",
         "argv": ["predict", str(song), "--timeline", "--timeline-max-minutes", "inf"], "check": one_line},
        {"case": "predict --threads -1", "expect": "usage error, the rule of extract",
         "argv": ["predict", str(song), "--threads", "-1"], "check": same_rule},
        {"case": "extract --workers -1", "expect": "usage error, the rule of predict",
         "argv": ["extract", str(song), "-o", str(r2 / "feats"), "--workers", "-1"], "check": same_rule},
        {"case": "damaged MP3 (60 kB zeroed mid-file)", "expect": "emotion, with a note on the gap",
         "argv": ["predict", str(song.parent / "damaged.mp3"), "--format", "json", "--no-cache"], "check": note_check},
        {"case": "3-hour MP3: predict --timeline --timeline-max-minutes 200", "expect":
         f"a timeline of all 3 hours, < {MEMORY_BOUND_MB} MB", "memory": True, "check": whole_timeline,
         "argv": ["predict", str(long_mp3), "--timeline", "--timeline-max-minutes", "200", "--format", "json",
                  "--no-cache", "--no-progress"]},
        {"case": "3-hour M4A: predict", "expect": f"emotion, < {MEMORY_BOUND_MB} MB", "memory": True,
         "argv": ["predict", str(long_m4a), "--format", "json", "--no-cache", "--no-progress"]},
        {"case": "folder: m4a, aac, mp4, webm, wma, mka, a linked folder, a .jpg", "expect": "7 analysed, the .jpg named",
         "argv": ["predict", str(lib), "--format", "json", "--no-cache", "--no-progress"], "check": folder_check},
    ]
    exp = r2 / "export"
    shutil.rmtree(exp, ignore_errors=True)
    exp.mkdir()
    if run(["export", "-o", str(exp / "model.onnx")], r2)["rc"] == 0:
        (exp / "model.onnx").write_bytes(np.random.default_rng(0).bytes(2000))
        cases.append({"case": "--backend onnx with a corrupt graph", "expect": "one-line error",
                      "argv": ["predict", str(song), "--backend", "onnx", "--model", str(exp / "model.onnx")],
                      "check": one_line})
    return cases


def _encode_av(path: Path, y, fmt: str, codec: str) -> None:
    """Encode mono float audio ``y`` (an array, or consecutive arrays for a long file) with PyAV."""
    import av

    rate = 48_000 if codec == "libopus" else SR
    sample_fmt = [f.name for f in av.codec.Codec(codec, "w").audio_formats][0]
    pieces = [y] if isinstance(y, np.ndarray) else y
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate)
        s.layout, s.format = "mono", sample_fmt
        if codec == "wmav2":
            s.bit_rate = 128_000
        left, pts = np.zeros(0, np.float32), 0
        for piece in [*pieces, None]:
            if piece is not None:
                if rate != SR:
                    import soxr

                    piece = soxr.resample(piece, SR, rate)
                left = np.concatenate([left, piece])
            usable = len(left) if piece is None else len(left) // 1024 * 1024  # whole frames until the end
            pcm = np.clip(np.round(left[:usable] * 32767), -32768, 32767).astype(np.int16)
            left = left[usable:]
            data = {"s16": pcm, "s16p": pcm, "s32p": pcm.astype(np.int32) << 16,
                    "fltp": pcm.astype(np.float32) / 32768, "flt": pcm.astype(np.float32) / 32768}[sample_fmt]
            for i in range(0, len(pcm), 1024):
                frame = av.AudioFrame.from_ndarray(data[None, i:i + 1024], format=sample_fmt, layout="mono")
                frame.sample_rate, frame.pts = rate, pts
                pts += frame.samples
                for packet in s.encode(frame):
                    c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)


def _start_serve(*flags: str) -> tuple[subprocess.Popen, int]:
    """`merkit serve` on a free port, once it answers /api/health: (process, port)."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "merkit", "serve", "--port", str(port), *flags],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    return p, port


def _upload(path: Path, content_type: str) -> tuple[bytes, dict]:
    """A multipart/form-data body holding ``path`` in field "file", and its headers."""
    import uuid

    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def serve_burst_case(d: Path) -> dict:
    """20 uploads of a real 60 s clip at once to `merkit serve`: every answer JSON (200, or 503
    with Retry-After beyond 2 running + 4 waiting), the peak (VmHWM) under the bound, and the
    resident size 5 s after the burst (malloc_trim after each request)."""
    import threading
    import urllib.error
    import urllib.request

    clip = next(iter(sorted((SHARED / "emotify" / "audio").rglob("*.mp3"))), None) or d / "round2" / "song.wav"
    p, port = _start_serve()
    statuses = []
    try:
        body, headers = _upload(clip, "audio/mpeg")

        def one():
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/predict", data=body, method="POST",
                                         headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=600) as r:
                    statuses.append((r.status, "json" in r.headers.get("content-type", "")))
            except urllib.error.HTTPError as e:
                statuses.append((e.code, "json" in e.headers.get("content-type", "")))
        t0 = time.perf_counter()
        threads = [threading.Thread(target=one) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - t0
        time.sleep(5)
        status = {ln.split(":")[0]: int(ln.split()[1]) / 1024 for ln in open(f"/proc/{p.pid}/status")
                  if ln.startswith(("VmHWM", "VmRSS"))}
    finally:
        p.terminate()
        p.wait(timeout=30)
    ok200 = sum(s == 200 for s, _ in statuses)
    busy = sum(s == 503 for s, _ in statuses)
    ok = (len(statuses) == 20 and all(j for _, j in statuses) and ok200 + busy == 20 and ok200 >= 6
          and status["VmHWM"] < MEMORY_BOUND_MB)
    return {"case": "serve: 20 uploads of a 60 s MP3 at once", "expect": "JSON answers (200 or 503), bounded memory",
            "rc": 0, "what": f"{ok200} answered, {busy} told busy (503) in {took:.0f} s; resident "
                             f"{status['VmRSS']:.0f} MB 5 s later", "rss_mb": round(status["VmHWM"]), "ok": bool(ok),
            "seconds": round(took, 1), "traceback": False}


def port_in_use_case(d: Path) -> dict:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run(["serve", "--port", str(port)], d, timeout=60)
    line, one = _one_line(r)
    ok = r["rc"] == 1 and one and r["out"] == "" and "already in use" in line
    return {"case": "serve --port IN_USE", "expect": "one line, no banner", "rc": r["rc"], "what": line[:150],
            "rss_mb": round(r["rss_mb"]), "seconds": round(r["seconds"], 1), "ok": ok,
            "traceback": "Traceback" in r["out"] + r["err"]}


def signal_case(d: Path, sig: int) -> dict:
    """`merkit predict FOLDER -o out.csv` on 40 real clips, sent ``sig`` 15 s in (mid-folder)."""
    clips = real_clips(d / "signal_clips", 40)
    out = d / f"signal_{sig}.csv"
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "merkit", "predict", str(clips[0].parent), "--format", "csv",
                          "-o", str(out), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(15.0)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=120)
    rows = len(out.read_text().splitlines()) - 1 if out.exists() else 0
    line, one = _one_line({"err": stderr})
    name = signal.Signals(sig).name
    ok = p.returncode == 128 + sig and 0 < rows < 40 and one and f"after {rows} of 40" in line and not _tmp_left(d)
    return {"case": f"predict FOLDER -o out.csv, {name} mid-folder", "expect": "finished rows kept, one line",
            "what": f"{rows} rows in out.csv; {line.replace(str(d), '…')}", "ok": ok, "rc": p.returncode, "rss_mb": None,
            "seconds": round(time.perf_counter() - t0, 1), "traceback": "Traceback" in stderr}


def full_disk_cases(d: Path) -> list[dict]:
    """A real, nearly full file system (a small tmpfs; root only) under predict -o and extract."""
    disk = d / "full_disk"
    if not _mount_tmpfs(disk, "512k"):
        return [{"case": "full disk (tmpfs)", "expect": "skipped: cannot mount a tmpfs here", "what": "not run",
                 "ok": True, "rc": None, "rss_mb": None, "seconds": None, "traceback": False}]
    rows = []
    try:
        clips = real_clips(d / "loss", 3)
        r = run(["predict", str(clips[0]), "--format", "csv", "-o", str(disk / "pred.csv")], d)
        previous = (disk / "pred.csv").read_bytes()
        _fill(disk, leave=0)
        many = [str(p) for p in real_clips(d / "signal_clips", 40)[:11]]
        r = run(["predict", *many, "--format", "csv", "-o", str(disk / "pred.csv"), "--no-progress"], d)
        line, one = _one_line(r)
        printed = len(r["out"].strip().splitlines()) - 1
        ok = (r["rc"] == 1 and one and "no space left on device" in line and printed == 11
              and (disk / "pred.csv").read_bytes() == previous and not _tmp_left(disk))
        rows.append({"case": "predict 11 files -o on a full disk", "expect": "previous file kept, rows on stdout, one line",
                     "what": f"{printed} rows on stdout; {line.replace(str(d), '…')}", "ok": ok, "rc": r["rc"],
                     "rss_mb": round(r["rss_mb"]), "seconds": round(r["seconds"], 1), "traceback": "Traceback" in r["err"]})
        (disk / "fill").unlink()
        (disk / "pred.csv").unlink()
        _fill(disk, leave=120 * 1024)  # room for one track's Mel + cochleagram rows, not three
        argv = ["extract", str(clips[0].parent), "-o", str(disk / "feats"), "--workers", "0", "--no-progress"]
        r = run(argv, d)
        line, one = _one_line(r)
        done = int(np.load(disk / "feats" / ".partial" / "done.npy").sum()) if (disk / "feats" / ".partial" / "done.npy").exists() else -1
        (disk / "fill").unlink()
        r2 = run(argv, d)
        ok = (r["rc"] == 1 and one and "no space left on device" in line and not _tmp_left(disk) and r2["rc"] == 0
              and (disk / "feats" / "mel_spec.npy").exists())
        rows.append({"case": "extract onto a full disk, then rerun", "expect": "one line, resumable, no temp file",
                     "what": f"{done} track(s) kept; {line.replace(str(d), '…')}; rerun: {r2['out'].strip()[:60].replace(str(d), '…')}",
                     "ok": ok, "rc": r["rc"], "rss_mb": round(r["rss_mb"]), "seconds": round(r["seconds"], 1),
                     "traceback": "Traceback" in r["err"] + r2["err"]})
    finally:
        _umount(disk)
    ro = d / "ro_disk"
    if _mount_tmpfs(ro, "64k", "ro"):
        try:
            r = run(["export", "-o", str(ro / "m.onnx")], d)
            line, one = _one_line(r)
            rows.append({"case": "export -o on a read-only file system", "expect": "one line, before any work",
                         "what": line.replace(str(d), "…"), "ok": r["rc"] == 1 and one and "read-only" in line,
                         "rc": r["rc"], "rss_mb": round(r["rss_mb"]), "seconds": round(r["seconds"], 1),
                         "traceback": "Traceback" in r["err"]})
        finally:
            _umount(ro)
    return rows


def judge(case: dict, r: dict, d: Path) -> tuple[str, bool]:
    """(what merkit did, in one line; whether that is what docs/reliability.md promises)."""
    if callable(case.get("check")):
        what, ok = case["check"](r)
        if case.get("expect_before_work"):
            ok &= r["seconds"] < 30
        if case.get("memory"):
            ok &= r["rss_mb"] < MEMORY_BOUND_MB
        return what.replace(str(d), "…")[:150], bool(ok and "Traceback" not in r["out"] + r["err"])
    text = r["out"] + r["err"]
    tb = "Traceback" in text
    exp = case["expect"]
    what = ""
    ok = not tb
    res = None
    try:
        res = json.loads(r["out"])["results"][0] if r["out"].lstrip().startswith("{") else None
    except (ValueError, KeyError, IndexError):
        res = None
    if res is not None:
        if res["status"] == "ok":
            p = res["prediction"]
            what = f"Q{p['quadrant']} {p['quadrant_word']}, certainty {p['certainty']:.2f}"
            if res.get("note"):
                what += f"; note: {res['note']}"
        else:
            what = res["error"].replace(str(d), "…")
    else:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        what = (lines[-1] if lines else "(no output)").replace(str(d), "…")
    if exp == "not music" or exp.startswith("not music,"):
        ok &= res is not None and res["status"] == "not_music"
    elif exp == "emotion":
        ok &= res is not None and res["status"] == "ok"
    elif exp.startswith("error"):
        ok &= r["rc"] != 0 and res is None or (res is not None and res["status"] == "error")
    if case.get("memory"):
        ok &= r["rss_mb"] < MEMORY_BOUND_MB
    if case.get("check") == "plots":
        pngs = sorted(p.relative_to(d / "plots").as_posix() for p in (d / "plots").rglob("*.png"))
        rows = (d / "folder.csv").read_text().splitlines() if (d / "folder.csv").exists() else []
        errors = [r for r in rows if ",error," in r]
        what = f"{len(pngs)} PNGs ({', '.join(pngs)}); {len(errors)} error row(s)"
        ok &= len(pngs) == 4 and len(errors) == 1
    if case.get("check") == "extract":
        fails = (d / "feats" / "failures.csv").read_text().splitlines()[1:] if (d / "feats" / "failures.csv").exists() else []
        n = len(np.load(d / "feats" / "labels" / "label_a.npy")) if (d / "feats" / "labels" / "label_a.npy").exists() else 0
        what = f"{n} extracted; failures.csv: {len(fails)} ({fails[0].split(',')[-1][:60] if fails else ''})"
        ok &= n == 4 and len(fails) == 1
    if case.get("check") == "pwned":
        ok &= not (d / "PWNED").exists() and r["rc"] != 0
    if exp == "error before any work":
        ok &= r["rc"] != 0 and r["seconds"] < 30
    return what[:150], bool(ok)


def kill_case(d: Path) -> dict:
    """merkit extract killed with SIGKILL: do its workers go too?"""
    audio = d / "kill_audio"
    audio.mkdir(exist_ok=True)
    shutil.rmtree(d / "kill_out", ignore_errors=True)
    for i in range(40):
        sf.write(audio / f"{i:02d}.wav", melody(30.0, seed=100 + i), SR)
    p = subprocess.Popen([sys.executable, "-m", "merkit", "extract", str(audio), "-o", str(d / "kill_out"),
                          "--workers", "2", "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children():
        out = []
        for x in os.listdir("/proc"):
            if x.isdigit():
                try:
                    if int(open(f"/proc/{x}/stat").read().rsplit(")", 1)[1].split()[1]) == p.pid:
                        out.append(int(x))
                except OSError:
                    pass
        return out

    def alive(pid):
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    kids = []
    for _ in range(600):
        kids = children()
        if len(kids) >= 3 and (d / "kill_out" / ".partial").exists():
            break
        time.sleep(0.2)
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(5.0)
    left = [k for k in kids if alive(k)]
    for k in left:
        os.kill(k, signal.SIGKILL)
    return {"case": "extract killed with SIGKILL mid-run", "expect": "no process left",
            "what": f"{len(kids)} child processes before, {len(left)} left 5 s after", "ok": not left and bool(kids),
            "rc": -9, "rss_mb": None}


def serve_case(d: Path) -> list[dict]:
    """`merkit serve` given a 10-hour and a 55-minute upload: JSON answers, bounded memory
    (the server's peak RSS from /proc/PID/status VmHWM after both requests)."""
    import urllib.error
    import urllib.request

    hour = d / "55_minutes.flac"
    if not hour.exists():
        write_long_flac(hour, 55 / 60)
    p, port = _start_serve()
    rows = []
    try:
        for name, path in (("10-hour silent FLAC upload", d / "ten_hours.flac"), ("55-minute silent FLAC upload", hour)):
            body, headers = _upload(path, "audio/flac")
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/predict", data=body, method="POST",
                                         headers=headers)
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=600) as r:
                    status, ctype, text = r.status, r.headers.get("content-type", ""), r.read().decode()
            except urllib.error.HTTPError as e:
                status, ctype, text = e.code, e.headers.get("content-type", ""), e.read().decode()
            hwm = next((int(ln.split()[1]) / 1024 for ln in open(f"/proc/{p.pid}/status") if ln.startswith("VmHWM")), 0)
            try:
                msg = json.loads(text).get("error") or "ok"
            except ValueError:
                msg = text[:80]
            ok = "json" in ctype and status in (200, 422) and hwm < MEMORY_BOUND_MB
            ok &= ("too long" in msg) if name.startswith("10-hour") else ("not music" in msg)
            rows.append({"case": f"serve: {name} ({path.stat().st_size / 1e6:.0f} MB)",
                         "expect": "JSON answer, server keeps serving, bounded memory", "rc": status,
                         "what": f"HTTP {status} JSON: {msg} ({time.perf_counter() - t0:.1f} s)",
                         "rss_mb": round(hwm), "ok": bool(ok), "seconds": None, "traceback": "Traceback" in text})
    finally:
        p.terminate()
        p.wait(timeout=30)
    return rows


def false_alarms(folders: list[str]) -> list[dict]:
    """The not-music check on every clip of real feature folders (the stored Mel is exactly what
    the check sees at predict time; the window's loudness is in tracks.csv)."""
    from merkit.content import ContentCheck, check_window
    from merkit.data.memo2496 import load_memo2496

    rows = []
    for folder in folders:
        fs = load_memo2496(folder)
        silence = float((fs.feature_info or {}).get("audio", {}).get("silence_lufs", -70.0))
        flagged, var, rough = [], [], []
        for i, t in enumerate(fs.tracks):
            reason, st = check_window(float(t.extra.get("lufs", 0.0)), np.asarray(fs.mel[i]), silence, ContentCheck())
            var.append(st.get("variation", np.inf))
            rough.append(st.get("roughness", np.inf))
            if reason:
                flagged.append(f"{t.track_id}: {reason}")
        name = Path(folder).name
        rows.append({"case": f"real recordings, {name} ({len(fs)} clips): not-music false alarms",
                     "expect": "none flagged", "rc": 0,
                     "what": f"{len(flagged)} flagged; lowest variation {min(var):.2f}, lowest roughness {min(rough):.2f}"
                             + (f"; {flagged[0]}" if flagged else ""),
                     "rss_mb": None, "seconds": None, "ok": not flagged, "traceback": False})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the 10-hour files")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--real-feats", nargs="*", default=[], metavar="DIR",
                    help="feature folders of real recordings (merkit extract emopia|mirex_mood|emotify): "
                         "count the not-music check's false alarms on every clip")
    ap.add_argument("--only", choices=("data-loss", "round-2"), default=None,
                    help="run only these cases (data-loss: issue 20's; round-2: issue 24's) and update their rows "
                         "in the committed table, keeping the other rows")
    ap.add_argument("--case", action="append", default=[], metavar="TEXT",
                    help="with --only: just the cases whose name holds TEXT (repeatable)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    d = Path(args.work or tempfile.mkdtemp(prefix="merkit-reliability-"))
    d.mkdir(parents=True, exist_ok=True)
    if args.only:
        rows = []
        for case in (data_loss_cases(d) if args.only == "data-loss" else round2_cases(d)):
            if args.case and not any(t in case["case"] for t in args.case):
                continue
            work = d / f"run_loss_{len(rows):02d}"
            work.mkdir(exist_ok=True)
            r = run(case["argv"], work)
            what, ok = judge(case, r, d)
            rows.append({"case": case["case"], "expect": case["expect"], "rc": r["rc"], "what": what,
                         "rss_mb": round(r["rss_mb"]), "seconds": round(r["seconds"], 1), "ok": ok,
                         "traceback": "Traceback" in r["out"] + r["err"]})
        if not args.case:  # the cases outside the table's list run only when none is named
            rows += ([signal_case(d, signal.SIGTERM), signal_case(d, signal.SIGHUP)] + full_disk_cases(d)
                     if args.only == "data-loss" else [port_in_use_case(d), serve_burst_case(d)])
        for row in rows:
            print(f"{'ok ' if row['ok'] else 'BAD'} {row['case']}: {row['what']}", flush=True)
        old = json.loads((RESULTS / "reliability.json").read_text())["rows"] if (RESULTS / "reliability.json").exists() else []
        names = {r["case"] for r in rows}
        return write_tables([r for r in old if r["case"] not in names] + rows, updated=True)
    cases = audio_cases(d, rng) + folder_cases(d) + data_cases(d, rng) + data_loss_cases(d) + round2_cases(d)
    if not args.quick:
        (d / "long_only").mkdir(exist_ok=True)
        cases += long_cases(d)
        if not (d / "long_only" / "ten_hours.flac").exists():
            os.link(d / "ten_hours.flac", d / "long_only" / "ten_hours.flac")
    for old in ("feats_long", "f2"):  # extraction outputs of an earlier run would only be resumed
        shutil.rmtree(d / old, ignore_errors=True)
    rows = []
    for case in cases:
        work = d / f"run_{len(rows):02d}"
        work.mkdir(exist_ok=True)
        r = run(case["argv"], work, env=case.get("env"))
        what, ok = judge(case, r, d)
        rows.append({"case": case["case"], "expect": case["expect"], "rc": r["rc"], "what": what,
                     "rss_mb": round(r["rss_mb"]), "seconds": round(r["seconds"], 1), "ok": ok,
                     "traceback": "Traceback" in r["out"] + r["err"]})
        print(f"{'ok ' if ok else 'BAD'} {case['case']}: {what} (rc {r['rc']}, {r['rss_mb']:.0f} MB)", flush=True)
    for row in false_alarms(args.real_feats):
        rows.append(row)
        print(f"{'ok ' if row['ok'] else 'BAD'} {row['case']}: {row['what']}", flush=True)
    if not args.quick and sys.platform.startswith("linux"):
        for row in serve_case(d):
            rows.append(row)
            print(f"{'ok ' if row['ok'] else 'BAD'} {row['case']}: {row['what']} ({row['rss_mb']} MB)", flush=True)
    extra = [signal_case(d, signal.SIGTERM), signal_case(d, signal.SIGHUP)] if hasattr(signal, "SIGHUP") else []
    extra += [port_in_use_case(d), serve_burst_case(d)]
    for row in extra + full_disk_cases(d):
        rows.append(row)
        print(f"{'ok ' if row['ok'] else 'BAD'} {row['case']}: {row['what']}", flush=True)
    if sys.platform.startswith("linux"):
        k = kill_case(d)
        rows.append({**k, "seconds": None, "traceback": False})
        print(f"{'ok ' if k['ok'] else 'BAD'} {k['case']}: {k['what']}", flush=True)
    # rows this run did not make (the false-alarm scan without --real-feats, the 10-hour cases
    # with --quick) are carried over from the committed table, and the header says so
    old = json.loads((RESULTS / "reliability.json").read_text())["rows"] if (RESULTS / "reliability.json").exists() else []
    names = {r["case"] for r in rows}
    carried = [r for r in old if r["case"] not in names]
    return write_tables(rows + carried, updated=bool(carried))


def write_tables(rows: list[dict], updated: bool = False) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"), "memory_bound_mb": MEMORY_BOUND_MB}
    if updated:
        meta["note"] = "rows this run did not make are carried over from the previous table"
    (RESULTS / "reliability.json").write_text(json.dumps({"protocol": meta, "rows": rows}, indent=2) + "\n")
    lines = ["# Reliability (`python bench/reliability.py`)", "",
             f"{meta['machine']}; {meta['date']}{' (' + meta['note'] + ')' if updated else ''}. "
             "Each case: `python -m merkit ...` in a fresh process; "
             "peak RSS of that process (os.wait4). ✓: merkit did what docs/reliability.md promises.", "",
             "| case | expected | exit | what merkit did | peak RSS (MB) | traceback | |",
             "|---|---|--:|---|--:|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['expect']} | {r['rc']} | {r['what'].replace('|', '/')} | "
                     f"{r['rss_mb'] if r['rss_mb'] is not None else '—'} | {'yes' if r['traceback'] else 'no'} | "
                     f"{'✓' if r['ok'] else '✗'} |")
    (RESULTS / "reliability.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
