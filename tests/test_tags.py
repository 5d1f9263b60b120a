"""Mood tags in the files (merkit.tags, `merkit tag`): they round-trip through mutagen on MP3,
FLAC, Ogg Vorbis, Opus and M4A with the audio unchanged and other tags kept; read-only, damaged
and interrupted files are left as they were; a tagged library is re-tagged without analysis."""
import os

import numpy as np
import pytest
import soundfile as sf

from conftest import melody
from merkit.audio import decode
from merkit.tags import KEYS, TagError, read_tags, write_tags

mutagen = pytest.importorskip("mutagen")
SR = 44_100
VALUES = {"MERKIT_AROUSAL": "0.812", "MERKIT_VALENCE": "0.301", "MERKIT_QUADRANT": "Q2",
          "MERKIT_QUADRANT_WORD": "angry/tense", "MERKIT_MOOD": "aggressive, fiery", "MERKIT_MODEL": "merkit default 0123abcd"}


def make(path, seconds=3.0, seed=0):
    """An audio file of ``path``'s format with a title tag of its own."""
    y = 0.4 * melody(seconds, SR, seed=seed)
    suffix = path.suffix
    if suffix == ".m4a":
        from test_av_decode import encode

        encode(path, y)
    else:
        fmt = {".mp3": ("MP3", None), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"), ".opus": ("OGG", "OPUS")}
        f, sub = fmt[suffix]
        if suffix == ".opus":  # Opus runs at 48 kHz
            import soxr

            sf.write(path, soxr.resample(y, SR, 48_000), 48_000, format=f, subtype=sub)
        else:
            sf.write(path, y, SR, format=f, subtype=sub)
    f = mutagen.File(str(path))
    if f.tags is None:
        f.add_tags()
    if suffix == ".mp3":
        from mutagen.id3 import TIT2

        f.tags.add(TIT2(encoding=3, text=["My Song"]))
    elif suffix == ".m4a":
        f.tags["\xa9nam"] = ["My Song"]
    else:
        f.tags["title"] = ["My Song"]
    f.save()
    return path


def title(path):
    f = mutagen.File(str(path))
    if path.suffix == ".mp3":
        return str(f.tags["TIT2"].text[0])
    return f.tags["\xa9nam" if path.suffix == ".m4a" else "title"][0]


def audio_bytes(path):
    """The bytes a tag writer must not touch, where the format makes them easy to cut out."""
    data = path.read_bytes()
    if path.suffix == ".mp3":
        from mutagen.id3 import ID3

        return data[ID3(str(path)).size:]
    if path.suffix == ".flac":
        return mutagen.File(str(path)).info.md5_signature
    return None


FORMATS = [".mp3", ".flac", ".ogg", ".opus", ".m4a"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_tags_round_trip_with_the_audio_unchanged(tmp_path, suffix):
    if suffix == ".m4a":
        pytest.importorskip("av")
    path = make(tmp_path / f"song{suffix}")
    pcm, raw = decode(path)[0], audio_bytes(path)
    write_tags(path, VALUES)
    assert read_tags(path) == VALUES and title(path) == "My Song"
    np.testing.assert_array_equal(decode(path)[0], pcm)
    assert audio_bytes(path) == raw
    write_tags(path, {**VALUES, "MERKIT_QUADRANT": "Q3"})  # a second run replaces, never duplicates
    assert read_tags(path)["MERKIT_QUADRANT"] == "Q3"
    write_tags(path, None, remove=True)
    assert read_tags(path) == {} and title(path) == "My Song"
    np.testing.assert_array_equal(decode(path)[0], pcm)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary copy left


def test_read_only_damaged_and_interrupted_files_are_left_as_they_were(tmp_path, monkeypatch):
    ro = make(tmp_path / "ro.flac")
    ro.chmod(0o444)
    before = ro.read_bytes()
    with pytest.raises(TagError, match="read-only; left as it is"):
        write_tags(ro, VALUES)
    assert ro.read_bytes() == before
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00" * 5000)
    with pytest.raises(TagError, match="bad.mp3"):
        write_tags(bad, VALUES)
    assert bad.read_bytes() == b"\x00" * 5000
    ok = make(tmp_path / "ok.ogg")
    before = ok.read_bytes()
    monkeypatch.setattr(type(mutagen.File(str(ok))), "save", lambda self, *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_tags(ok, VALUES)
    assert ok.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp3", "ok.ogg", "ro.flac"]
    ro.chmod(0o644)


def test_cli_tags_a_library_with_predict_values_and_retags_without_analysis(tmp_path, monkeypatch, capsys):
    import json

    import merkit.predictors.base as base
    from merkit.cli import main

    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "cache"))
    lib = tmp_path / "lib"
    lib.mkdir()
    a, b = make(lib / "a.flac", 12.0, 1), make(lib / "b.mp3", 12.0, 2)
    (lib / "c.mid").write_bytes(b"MThd")  # a format without tags: reported, not touched
    before = {p: p.read_bytes() for p in (a, b)}
    assert main(["tag", str(lib), "--dry-run", "--no-progress"]) == 0
    assert {p: p.read_bytes() for p in (a, b)} == before and "would tag" in capsys.readouterr().out
    calls = []
    real = base.Predictor.analyse_files
    monkeypatch.setattr(base.Predictor, "analyse_files", lambda self, files, **kw: calls.append(len(files)) or real(self, files, **kw))
    assert main(["tag", str(lib), "--no-progress"]) == 0
    cap = capsys.readouterr()
    assert "1 in a format without tags" in cap.err and cap.out.count("\ttagged\t") == 2
    assert calls == []  # the dry run's predictions came from the store
    assert main(["predict", str(lib / "a.flac"), str(lib / "b.mp3"), "--format", "json", "--no-cache"]) == 0
    pred = {os.path.basename(r["path"]): r["prediction"] for r in json.loads(capsys.readouterr().out)["results"]}
    for p in (a, b):
        t = read_tags(p)
        assert set(t) <= set(KEYS) and t["MERKIT_QUADRANT"] == f"Q{pred[p.name]['quadrant']}"
        assert float(t["MERKIT_AROUSAL"]) == pytest.approx(pred[p.name]["arousal"], abs=5e-4)
        assert title(p) == "My Song"
    n = len(calls)
    assert main(["tag", str(lib), "--no-progress"]) == 0 and len(calls) == n  # tagged already: no analysis
    assert main(["tag", str(lib), "--remove", "--no-progress"]) == 0
    assert read_tags(a) == {} and read_tags(b) == {}
