"""MIDI rendering: SMF timing known answers, FluidSynth renders of generated and real MIDI, the cache."""
import os
import struct

import numpy as np
import pytest
import soundfile as sf

from merkit.data.paths import DatasetError, shared_data_root
from merkit.midi import (RenderError, cached_render_path, find_fluidsynth, find_soundfont, midi_duration,
                                render_many, render_midi)


def _varlen(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def _track(events) -> bytes:
    """events: (absolute tick, raw event bytes) -> an MTrk chunk ending with End of Track."""
    body, now = b"", 0
    for tick, ev in sorted(events, key=lambda e: e[0]):
        body += _varlen(tick - now) + ev
        now = tick
    body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def smf(tracks, division=480) -> bytes:
    return b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), division) + b"".join(_track(t) for t in tracks)


def tempo(tick, us_per_quarter):
    return tick, b"\xff\x51\x03" + us_per_quarter.to_bytes(3, "big")


def note(tick, pitch, on=True, velocity=100):
    return tick, bytes([0x90 if on else 0x80, pitch, velocity if on else 0])


def one_note_midi(path, pitch=69, beats=2, us_per_quarter=500_000):
    """Piano (program 0) holding one note for ``beats`` quarter notes."""
    path.write_bytes(smf([[tempo(0, us_per_quarter)],
                          [(0, b"\xc0\x00"), note(0, pitch), note(beats * 480, pitch, on=False)]]))
    return path


@pytest.fixture
def synth():
    try:
        find_fluidsynth()
        find_soundfont()
    except RenderError as e:
        pytest.skip(str(e))


# --- SMF timing (no FluidSynth needed) -------------------------------------------------------

def test_midi_duration_follows_tempo_map(tmp_path):
    # 960 ticks at 120 BPM (0.5 s / quarter) = 1 s, then 960 ticks at 240 BPM = 0.5 s; the
    # longest track (tempo track, end at 1920) decides.
    p = tmp_path / "t.mid"
    p.write_bytes(smf([[tempo(0, 500_000), tempo(960, 250_000), (1920, b"\xff\x01\x01x")],
                       [(0, b"\xc0\x00"), note(0, 60), note(100, 64), note(1440, 60, on=False)]]))
    assert midi_duration(p) == pytest.approx(1.5)


def test_midi_duration_default_tempo_and_running_status(tmp_path):
    # No tempo event: 120 BPM. Running status (note-on without repeated status byte).
    body = (_varlen(0) + b"\x90\x3c\x64" + _varlen(480) + b"\x40\x64" + _varlen(480) + b"\x3c\x00"
            + _varlen(480) + b"\x40\x00" + b"\x00\xff\x2f\x00")
    p = tmp_path / "rs.mid"
    p.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(body)) + body)
    assert midi_duration(p) == pytest.approx(1.5)  # 1440 ticks x 0.5 s / 480


def test_midi_duration_smpte_division(tmp_path):
    division = ((256 - 25) << 8) | 40  # 25 frames/s x 40 ticks/frame = 1000 ticks/s
    p = tmp_path / "smpte.mid"
    p.write_bytes(smf([[note(0, 60), note(2500, 60, on=False)]], division=division))
    assert midi_duration(p) == pytest.approx(2.5)


@pytest.mark.parametrize("data, reason", [
    (b"RIFF\x00\x00\x00\x00WAVE", "no MThd"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x40\x00\x90", "truncated"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0" + _track([note(0, 60)]), "no MTrk"),
])
def test_corrupt_midi_is_named(tmp_path, data, reason):
    p = tmp_path / "broken.mid"
    p.write_bytes(data)
    with pytest.raises(RenderError, match=rf"broken\.mid: corrupt MIDI file: .*{reason}"):
        midi_duration(p)


# --- soundfont lookup ------------------------------------------------------------------------

def test_explicit_missing_soundfont_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MERKIT_SOUNDFONT", raising=False)
    with pytest.raises(RenderError, match="no General MIDI soundfont found.*nope.sf2"):
        find_soundfont(tmp_path / "nope.sf2")
    monkeypatch.setenv("MERKIT_SOUNDFONT", str(tmp_path / "env.sf2"))
    with pytest.raises(RenderError, match="MERKIT_SOUNDFONT.*env.sf2"):
        find_soundfont()
    sf2 = tmp_path / "mine.sf2"
    sf2.write_bytes(b"RIFF")
    assert find_soundfont(sf2) == sf2  # an explicit choice is used as given


def test_render_with_missing_soundfont_fails_before_writing(tmp_path, synth):
    midi = one_note_midi(tmp_path / "a.mid")
    out = tmp_path / "a.wav"
    with pytest.raises(RenderError, match="no General MIDI soundfont"):
        render_midi(midi, out, soundfont=tmp_path / "missing.sf2")
    assert not out.exists()


# --- rendering ------------------------------------------------------------------------------

def test_render_one_note_known_answer(tmp_path, synth):
    midi = one_note_midi(tmp_path / "a4.mid", pitch=69, beats=2)  # A4 = 440 Hz for 1 s
    out = render_midi(midi, tmp_path / "out" / "a4.wav", sample_rate=22_050)
    y, sr = sf.read(out, always_2d=True)
    assert sr == 22_050 and y.shape[1] == 2
    # Tail trimmed at -60 dB: the note's release remains, the seconds of near-silence do not.
    assert 1.0 <= len(y) / sr < 2.5
    mono = y.mean(axis=1)[: sr]  # the held note
    spec = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    freqs = np.fft.rfftfreq(len(mono), 1 / sr)
    assert freqs[np.argmax(spec)] == pytest.approx(440.0, abs=3.0)
    assert not list(out.parent.glob(".*tmp*"))  # no temporary left behind


def test_render_rejects_silent_midi(tmp_path, synth):
    midi = tmp_path / "empty.mid"
    midi.write_bytes(smf([[tempo(0, 500_000), (960, b"\xff\x01\x01x")]]))
    with pytest.raises(RenderError, match="empty.mid: the render is silent"):
        render_midi(midi, tmp_path / "empty.wav")
    assert not (tmp_path / "empty.wav").exists()


def test_render_many_reports_bad_files_and_reuses_cache(tmp_path, synth):
    good = [one_note_midi(tmp_path / f"n{p}.mid", pitch=p, beats=1) for p in (60, 67)]
    bad = tmp_path / "corrupt.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x01\x00\x00\x90\x3c")
    missing = tmp_path / "missing.mid"
    cache = tmp_path / "cache"
    paths, failures = render_many([good[0], bad, missing, good[1]], cache, workers=2, sample_rate=22_050,
                                  progress=False)
    assert list(paths) == good
    assert all(p == cached_render_path(m, cache, 22_050) and sf.info(p).samplerate == 22_050
               for m, p in paths.items())
    assert [f for f, _ in failures] == [bad, missing]
    assert "corrupt MIDI" in failures[0][1] and "not found" in failures[1][1]

    # Second run: complete renders are reused untouched; a damaged cache file is rendered again.
    stamp = paths[good[0]].stat().st_mtime_ns
    paths[good[1]].write_bytes(b"not a wav")
    again, failures2 = render_many(good, cache, workers=1, sample_rate=22_050, progress=False)
    assert again == paths and failures2 == []
    assert paths[good[0]].stat().st_mtime_ns == stamp
    assert sf.info(paths[good[1]]).frames > 0


def test_render_many_stem_collision(tmp_path, synth):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a = one_note_midi(tmp_path / "x" / "same.mid", beats=1)
    b = one_note_midi(tmp_path / "y" / "same.mid", beats=1)
    paths, failures = render_many([a, b], tmp_path / "cache", workers=1, progress=False)
    assert list(paths) == [a]
    assert failures[0][0] == b and "same file name" in failures[0][1]


def _emopia_midis():
    try:
        root = shared_data_root() / "emopia" / "midis"
    except DatasetError as e:
        pytest.skip(str(e))
    if not root.is_dir():
        pytest.skip(f"EMOPIA MIDI not found at {root}")
    # Two of the shortest clips (about 18-20 s) keep the test quick.
    return [root / "Q1_0vLPYiPN7qY_0.mid", root / "Q3_c6CwY8Gbw0c_2.mid"]


def test_render_real_emopia_clips(tmp_path, synth):
    for midi in _emopia_midis():
        if not midi.is_file():
            pytest.skip(f"{midi} missing")
        out = render_midi(midi, tmp_path / (midi.stem + ".wav"))
        y, sr = sf.read(out, always_2d=True)
        assert sr == 44_100
        length = midi_duration(midi)
        # The render ends where the sound falls 60 dB below its peak: near the MIDI's end (a
        # reverb tail after it, or a last note decayed before it; -1.3..+0.6 s on 40 clips).
        assert abs(len(y) / sr - length) < 1.5
        rms_db = 10 * np.log10(np.mean(y ** 2))
        assert rms_db > -45.0, f"{midi.name}: render too quiet ({rms_db:.1f} dBFS)"
        assert os.path.getsize(out) > 0
