"""Speech, sweeps and single notes are not music (merkit.content.sound_stats and its rules):
known answers on generated signals, speech by espeak-ng where it is installed (install.sh puts
it there), and the CLI's answer end to end. False alarms on the 2 369 real clips are measured by
bench/content_check.py (bench/results/content_check.md)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import melody
from merkit.audio import prepare, resample
from merkit.config import AudioConfig
from merkit.content import ContentCheck, judge, sound_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from content_check import SPEECH_TEXTS, pluck, sweep  # noqa: E402  (the bench's own signals)

SR = 44_100
CFG = AudioConfig()


def _stats(y):
    win, _ = prepare(np.asarray(y, dtype=np.float32), SR, CFG)
    return sound_stats(win, SR)


def _reason(y):
    return judge({"loudness_lufs": -23.0, **_stats(y)}, CFG.silence_lufs)


def _speak(voice, text, tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (install.sh installs it)")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(tmp_path / "s.wav"), text], check=True, capture_output=True)
    y, rate = sf.read(tmp_path / "s.wav", dtype="float32")
    return resample(y, rate, SR)


def test_known_answers_of_the_statistics():
    t = np.arange(30 * SR) / SR
    tone = _stats(0.3 * np.sin(2 * np.pi * 440 * t))
    assert tone["peak"] > 0.99 and tone["glide"] == 0.0 and tone["held"] > 0.95 and tone["pause"] == 0.0
    s = _stats(sweep(30.0, SR))
    assert s["peak"] > 0.99 and s["flux"] < 0.06 and s["glide"] > 0.1  # one sinusoid, gliding
    m = _stats(melody(75.0, SR, seed=3))  # notes held 0.2-0.6 s, then a jump
    assert m["peak"] < 0.9 and m["flux"] > 0.05 and m["held"] > 0.2 and m["glide"] < 0.05
    gaps = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 1.0 * t) > 0)  # sound half of the time
    assert 0.4 < _stats(gaps)["pause"] < 0.6


@pytest.mark.parametrize("signal", ["log sweep 5 s", "linear sweep 30 s", "pluck 220 Hz 2 s", "pluck 110 Hz 3 s"])
def test_sweeps_and_single_notes_are_not_music(signal):
    y = {"log sweep 5 s": lambda: sweep(5.0, SR), "linear sweep 30 s": lambda: sweep(30.0, SR, log=False),
         "pluck 220 Hz 2 s": lambda: pluck(220.0, 2.0, SR), "pluck 110 Hz 3 s": lambda: pluck(110.0, 3.0, SR)}[signal]()
    reason = _reason(y)
    assert reason is not None and reason.startswith(("a single tone or sweep", "a single sound")), reason


@pytest.mark.parametrize("signal", ["log sweep 20 s", "pluck 220 Hz 2 s", "pluck 330 Hz 6 s"])
def test_a_16_bit_file_is_judged_as_its_float_signal(signal, tmp_path):
    # quantisation noise fills the bins a sweep or a decaying note leaves empty; its random shape
    # once read as spectral change (a 16-bit sweep was given Q1, a plucked note Q3)
    y = {"log sweep 20 s": lambda: sweep(20.0, SR), "pluck 220 Hz 2 s": lambda: pluck(220.0, 2.0, SR),
         "pluck 330 Hz 6 s": lambda: pluck(330.0, 6.0, SR)}[signal]()
    sf.write(tmp_path / "x.wav", y, SR, subtype="PCM_16")
    y16, _ = sf.read(tmp_path / "x.wav", dtype="float32")
    assert abs(_stats(y16)["flux"] - _stats(y)["flux"]) < 0.01
    reason = _reason(y16)
    assert reason is not None and reason.startswith(("a single tone or sweep", "a single sound")), reason


def test_music_passes_and_thresholds_are_settings():
    for seed in range(3):
        assert _reason(melody(60.0, SR, seed=seed)) is None
    stats = {"loudness_lufs": -23.0, **_stats(sweep(10.0, SR))}
    assert judge(stats, -70.0, ContentCheck(max_peak=1.01, min_flux=0.0)) is None  # the rules can be loosened


@pytest.mark.parametrize("voice, lang", [("en-us", "en"), ("de+f2", "de")])
def test_speech_is_not_music_and_speech_over_music_keeps_its_emotion(voice, lang, tmp_path):
    y = _speak(voice, SPEECH_TEXTS[lang], tmp_path)
    reason = _reason(y)
    assert reason is not None and reason.startswith("speech"), reason
    bed = melody(len(y) / SR, SR, seed=4)[:len(y)]
    bed = bed / np.sqrt(np.mean(bed ** 2)) * np.sqrt(np.mean(y ** 2)) * 10 ** (-6 / 20)
    assert _reason(y + bed) is None  # a voice over music: the music's emotion is given


def test_cli_says_speech_is_not_music(tmp_path):
    from merkit.cli import main

    y = _speak("en-us", SPEECH_TEXTS["en"], tmp_path)
    sf.write(tmp_path / "news.wav", y, SR)
    out = tmp_path / "out.json"
    assert main(["predict", str(tmp_path / "news.wav"), "--format", "json", "-o", str(out), "--no-progress",
                 "--no-cache"]) == 0
    res = json.loads(out.read_text())["results"][0]
    assert res["status"] == "not_music" and res["error"].startswith("not music: speech") and res["prediction"] is None
