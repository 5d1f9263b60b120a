"""Generic folders + label CSVs, the dataset registry, resolve_input and `merkit datasets`."""
import argparse
import logging
import math

import numpy as np
import pytest
import soundfile as sf

from merkit.commands import datasets as datasets_cmd
from merkit.data.generic import generic_manifest
from merkit.data.manifest import Track, read_manifest, write_manifest
from merkit.data.memo2496 import FeatureSet, save_memo2496
from merkit.data.paths import DatasetError, shared_data_root
from merkit.data.registry import DATASETS, get_manifest, resolve_input


def _write_wav(path, seconds=0.25, sr=8000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * sr)) + 0.1, sr)
    return path


@pytest.fixture
def folder(tmp_path):
    """A small corpus: two genres in sub-folders, a MIDI file and a non-audio file."""
    root = tmp_path / "corpus"
    _write_wav(root / "rock" / "a.wav")
    _write_wav(root / "rock" / "b.flac")
    _write_wav(root / "jazz" / "c.ogg")
    _write_wav(root / "jazz" / "d.wav")
    (root / "jazz" / "e.mid").write_bytes(b"MThd")
    (root / "readme.txt").write_text("not audio")
    (root / ".hidden").mkdir()
    _write_wav(root / ".hidden" / "x.wav")
    return root


def _labels(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _same(a: list[Track], b: list[Track]) -> bool:
    """Tracks equal field by field, nan == nan."""
    def key(t):
        return [(k, "nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in vars(t).items()]
    return [key(t) for t in a] == [key(t) for t in b]


# --- generic ---------------------------------------------------------------------------------

def test_generic_folder_without_labels(folder):
    tracks = generic_manifest(folder)
    assert [t.track_id for t in tracks] == ["jazz/c", "jazz/d", "jazz/e", "rock/a", "rock/b"]
    assert all(t.group == t.track_id and math.isnan(t.label_a) and t.quadrant == 0 for t in tracks)
    _write_wav(folder / "rock" / "a.mp3")  # same name, other format: ids keep the extension
    ids = [t.track_id for t in generic_manifest(folder)]
    assert "rock/a.wav" in ids and "rock/a.mp3" in ids and "rock/a" not in ids


def test_generic_labels_csv(folder, tmp_path, caplog):
    csv_path = _labels(tmp_path / "labels.csv",
                       "file, arousal, valence, split, group, quadrant, artist\n"
                       "rock/a.wav, 7, 3, train, song1, , X\n"
                       "b, 5, 9, validation, song1, , Y\n"
                       "c.ogg, 1, 1, test, , Q4, \n")
    with caplog.at_level(logging.WARNING):
        tracks = generic_manifest(folder, csv_path, centre=5.0)
    assert [t.track_id for t in tracks] == ["rock/a", "rock/b", "jazz/c"]
    a, b, c = tracks
    assert (a.label_a, a.label_v, a.quadrant, a.split, a.group) == (2.0, -2.0, 2, "train", "song1")
    assert (b.label_a, b.label_v, b.quadrant, b.split) == (0.0, 4.0, 1, "val")
    assert (c.quadrant, c.group, c.split) == (4, "jazz/c", "test")  # the CSV's quadrant wins
    assert a.extra == {"artist": "X"} and c.extra == {}
    assert "2 files" in caplog.text and "no labels" in caplog.text  # d.wav and e.mid
    kept = generic_manifest(folder, csv_path, keep_unlabelled=True)
    assert [t.track_id for t in kept][3:] == ["jazz/d", "jazz/e"] and kept[3].quadrant == 0


def test_generic_label_errors(folder, tmp_path):
    with pytest.raises(DatasetError, match=r"2 ids name no file .*nope.wav, ghost"):
        generic_manifest(folder, _labels(tmp_path / "l1.csv", "track_id,arousal\nnope.wav,1\nghost,2\na,0\n"))
    _write_wav(folder / "jazz" / "a.wav")
    with pytest.raises(DatasetError, match="match several files"):
        generic_manifest(folder, _labels(tmp_path / "l2.csv", "filename,valence\na,1\n"))
    with pytest.raises(DatasetError, match=r"l3.csv:2: arousal 'high' is not a number"):
        generic_manifest(folder, _labels(tmp_path / "l3.csv", "file,arousal\nrock/a.wav,high\n"))
    with pytest.raises(DatasetError, match="no id column"):
        generic_manifest(folder, _labels(tmp_path / "l4.csv", "name,arousal\nb,1\n"))
    with pytest.raises(DatasetError, match="split 'dev'"):
        generic_manifest(folder, _labels(tmp_path / "l5.csv", "file,split\nb,dev\n"))
    with pytest.raises(DatasetError, match="same file as line 2"):
        generic_manifest(folder, _labels(tmp_path / "l6.csv", "file\nb\nrock/b.flac\n"))
    with pytest.raises(DatasetError, match="audio folder not found"):
        generic_manifest(tmp_path / "nowhere")


def test_generic_manifest_round_trip(folder, tmp_path):
    csv_path = _labels(tmp_path / "labels.csv", "file,label_a,label_v,split\nrock/a.wav,0.5,-0.25,train\nd,,0.1,\n")
    tracks = generic_manifest(folder, csv_path)
    out = write_manifest(tracks, tmp_path / "m" / "tracks.csv")
    assert _same(read_manifest(out), tracks)
    assert _same(resolve_input(out), tracks)


# --- registry --------------------------------------------------------------------------------

def test_registry_lists_every_dataset():
    assert set(DATASETS) == {"emopia", "emotify", "mirex_mood", "q4", "deam", "pmemo", "emomusic", "generic", "synthetic", "memo2496"}
    for d in DATASETS.values():
        assert d.has_audio_here() in (True, False, None) and d.licence and d.description


def test_get_manifest_checks_names_and_options(folder):
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        get_manifest("nope")
    with pytest.raises(DatasetError, match="takes no option workers"):
        get_manifest("generic", audio_dir=folder, workers=2)
    with pytest.raises(DatasetError, match="needs option root"):
        get_manifest("memo2496")
    assert len(get_manifest("generic", audio_dir=folder, workers=None)) == 5  # None = not given


def test_registry_shared_datasets():
    try:
        shared_data_root()
    except DatasetError as e:
        pytest.skip(str(e))
    emopia = get_manifest("emopia", render=False)
    assert len(emopia) == 1078
    # Lenient resolution ignores options the dataset does not take (extract passes audio_dir).
    assert _same(resolve_input("emopia", render=False, audio_dir="/x"), emopia)
    assert len(resolve_input("emotify")) == 400
    assert len(get_manifest("deam", require_audio=False)) == 1802


def test_resolve_input_kinds(folder, tmp_path):
    # A folder of audio.
    assert [t.track_id for t in resolve_input(folder)] == ["jazz/c", "jazz/d", "jazz/e", "rock/a", "rock/b"]
    # A labels CSV next to the audio, and one elsewhere with audio_dir.
    _labels(folder / "labels.csv", "file,arousal\nrock/a.wav,0.5\n")
    assert [t.label_a for t in resolve_input(folder / "labels.csv")] == [0.5]
    _labels(tmp_path / "elsewhere.csv", "track_id,valence\nd,-0.5\n")
    assert [t.label_v for t in resolve_input(tmp_path / "elsewhere.csv", audio_dir=folder)] == [-0.5]
    # A manifest CSV with a relative path (relative to the CSV's folder), and a folder holding it.
    write_manifest([Track("one", path="rock/a.wav", label_a=0.1)], folder / "tracks.csv")
    got = resolve_input(folder / "tracks.csv")
    assert got[0].path == str(folder / "rock" / "a.wav") and got[0].label_a == 0.1
    assert _same(resolve_input(folder), got)
    # A Memo2496-layout folder.
    n, t = 3, 5
    fs = FeatureSet(mel=np.zeros((n, 4, t), np.float32), coch=np.zeros((n, 2, t), np.float32),
                    label_a=np.array([0.1, -0.2, 0.3]), label_v=np.array([0.0, 0.5, -0.5]),
                    tracks=[Track(str(i), label_a=0.1) for i in range(n)])
    save_memo2496(fs, tmp_path / "memo")
    assert [t.track_id for t in resolve_input(tmp_path / "memo")] == ["0", "1", "2"]
    with pytest.raises(DatasetError, match="neither a dataset name"):
        resolve_input(tmp_path / "missing")
    with pytest.raises(DatasetError, match="neither a manifest"):
        resolve_input(_labels(tmp_path / "odd.csv", "x,y\n1,2\n"))
    with pytest.raises(DatasetError, match="is the audio folder"):
        resolve_input(folder / "rock", strict=True, audio_dir=tmp_path)


def test_synthetic_through_registry(tmp_path):
    tracks = get_manifest("synthetic", root=tmp_path / "syn", n_tracks=2, duration=1.0, workers=1, progress=False)
    assert len(tracks) == 2 and all(sf.info(t.path).duration == pytest.approx(1.0) for t in tracks)


# --- merkit datasets -------------------------------------------------------------------------

def _cli(argv):
    p = argparse.ArgumentParser(prog="merkit")
    datasets_cmd.register(p.add_subparsers(dest="command"))
    args = p.parse_args(argv)
    return args.func(args)


def test_cli_lists_datasets(capsys):
    assert _cli(["datasets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in DATASETS) and "audio here" in out


def test_cli_writes_manifest_and_counts(folder, tmp_path, capsys):
    labels = _labels(tmp_path / "labels.csv", "file,arousal,valence,split\na,5.5,5.5,train\nb,4,5.5,test\n"
                                              "c,4,4,test\n")
    out = tmp_path / "out" / "tracks.csv"
    assert _cli(["datasets", "manifest", str(folder), "--labels", str(labels), "--centre", "5", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wrote 3 tracks" in text and "split: train 1, test 2" in text
    assert "quadrant: Q1 1, Q3 1, Q4 1" in text and "arousal: + 1, - 2" in text
    written = read_manifest(out)
    assert [t.track_id for t in written] == ["rock/a", "rock/b", "jazz/c"]
    assert [(t.label_a, t.label_v) for t in written] == [(0.5, 0.5), (-1.0, 0.5), (-1.0, -1.0)]
    with pytest.raises(DatasetError, match="takes no option render"):
        _cli(["datasets", "manifest", "generic", "--audio-dir", str(folder), "--no-render", "-o", str(out)])
