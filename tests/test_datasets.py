"""Dataset readers on the shared data (EMOPIA, Emotify, DEAM/PMEmo/emoMusic labels) and on
generated folders; skipped where the shared data is absent."""
import csv
import logging
import math
import shutil
from collections import Counter, defaultdict

import numpy as np
import pytest
import soundfile as sf

from merkit.data.emopia import QUADRANT_SIGNS, emopia_manifest, parse_clip_name
from merkit.data.emotify import GEMS, GEMS_CIRCUMPLEX_DEG, emotify_manifest, gems_to_va, read_annotations
from merkit.data.manifest import quadrant_from_va
from merkit.data.paths import DatasetError, cache_dir, shared_data_root
from merkit.midi import RenderError, find_fluidsynth, find_soundfont
from merkit.data.dynamic import pmemo_dynamic
from merkit.data.static_va import (centre_static, labels_dir, read_static_labels,
                                   static_va_manifest)


def _shared(*parts):
    try:
        p = shared_data_root().joinpath(*parts)
    except DatasetError as e:
        pytest.skip(str(e))
    if not p.exists():
        pytest.skip(f"{p} not found")
    return p


def _write_wav(path, seconds=0.5, sr=8000, freq=440.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t), sr)
    return path


# --- paths -----------------------------------------------------------------------------------

def test_shared_data_and_cache_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("MERKIT_SHARED_DATA", str(tmp_path))
    assert shared_data_root() == tmp_path.resolve()
    monkeypatch.setenv("MERKIT_SHARED_DATA", str(tmp_path / "absent"))
    with pytest.raises(DatasetError, match="absent.*MERKIT_SHARED_DATA"):
        shared_data_root()
    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "c"))
    assert cache_dir("emopia") == tmp_path / "c" / "emopia"


# --- EMOPIA ----------------------------------------------------------------------------------

def test_clip_names_keep_underscores_in_youtube_ids():
    assert parse_clip_name("Q2_L3_TadjSQQ0_0") == (2, "L3_TadjSQQ0", 0)
    assert parse_clip_name("Q4_u_7b9CwyM8Q_12") == (4, "u_7b9CwyM8Q", 12)
    assert parse_clip_name("Q1_-x-_3") == (1, "-x-", 3)
    for bad in ("Q5_abc_1", "Q1_abc", "x1_abc_1"):
        with pytest.raises(DatasetError):
            parse_clip_name(bad)


def test_emopia_manifest_without_rendering():
    root = _shared("emopia")
    tracks = emopia_manifest(root, render=False)
    assert len(tracks) == 1078
    assert Counter(t.split for t in tracks) == {"train": 767, "val": 198, "test": 86, "": 27}
    for t in tracks:
        q = int(t.track_id[1])
        assert t.quadrant == q and (t.label_a, t.label_v) == QUADRANT_SIGNS[q]
        assert quadrant_from_va(t.label_v, t.label_a) == q  # labels and quadrant agree
        assert t.path.endswith(".mid") and t.path == t.extra["midi"]
        assert t.track_id.startswith(f"Q{q}_{t.group}_")
        assert 10.0 < t.duration < 150.0
    # The official split is song-level: no song has clips in two splits.
    splits_of_song = defaultdict(set)
    for t in tracks:
        if t.split:
            splits_of_song[t.group].add(t.split)
    assert all(len(s) == 1 for s in splits_of_song.values())
    # Quadrants from the file names agree with the labels in the split files.
    for name in ("train", "val", "test"):
        with open(root / "split" / f"{name}.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                assert row["label"] == row["fname"][:2]


def test_emopia_render_batch_skips_corrupt_clip(tmp_path, caplog):
    try:
        find_fluidsynth()
        find_soundfont()
    except RenderError as e:
        pytest.skip(str(e))
    src = _shared("emopia", "midis")
    root = tmp_path / "emopia"
    (root / "midis").mkdir(parents=True)
    (root / "split").mkdir()
    clips = ["Q1_0vLPYiPN7qY_0", "Q3_c6CwY8Gbw0c_2"]
    for c in clips:
        if not (src / f"{c}.mid").is_file():
            pytest.skip(f"{c}.mid missing")
        shutil.copy(src / f"{c}.mid", root / "midis")
    (root / "midis" / "Q2_broken_id_1.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk")
    (root / "split" / "train.csv").write_text("fname,label\nQ1_0vLPYiPN7qY_0,Q1\nQ2_broken_id_1,Q2\n")
    (root / "split" / "val.csv").write_text("fname,label\n")
    (root / "split" / "test.csv").write_text("fname,label\nQ3_c6CwY8Gbw0c_2,Q3\n")
    with caplog.at_level(logging.WARNING):
        tracks = emopia_manifest(root, cache_dir=tmp_path / "cache", workers=2, progress=False)
    assert [t.track_id for t in tracks] == clips
    assert "Q2_broken_id_1" in caplog.text and "corrupt MIDI" in caplog.text
    for t in tracks:
        info = sf.info(t.path)
        assert info.samplerate == 44_100 and t.path.endswith(".wav")
        assert t.duration == pytest.approx(info.duration)
    assert [t.split for t in tracks] == ["train", "test"]


# --- Emotify ---------------------------------------------------------------------------------

def test_gems_to_va_known_answers():
    for g, deg in GEMS_CIRCUMPLEX_DEG.items():
        v, a = gems_to_va({g: 0.4})  # one category: its own position, whatever the share
        assert (v, a) == pytest.approx((math.cos(math.radians(deg)), math.sin(math.radians(deg))))
    v, a = gems_to_va({"power": 0.5, "sadness": 0.5})
    pv, pa = gems_to_va({"power": 1})
    sv, sa = gems_to_va({"sadness": 1})
    assert (v, a) == pytest.approx(((pv + sv) / 2, (pa + sa) / 2))
    assert all(math.isnan(x) for x in gems_to_va({}))
    # Quadrants of the prototypical categories.
    assert quadrant_from_va(*gems_to_va({"joyful_activation": 1})) == 1
    assert quadrant_from_va(*gems_to_va({"tension": 1})) == 2
    assert quadrant_from_va(*gems_to_va({"sadness": 1})) == 3
    assert quadrant_from_va(*gems_to_va({"calmness": 1})) == 4


def test_emotify_annotations_with_spaces_after_commas(tmp_path):
    header = "track id, genre, " + ", ".join(GEMS) + ", mood, liked, disliked, age, gender, mother tongue\n"
    votes_a = "1, 0, 0, 0, 0, 1, 0, 0, 0"
    votes_b = "1, 1, 0, 0, 0, 0, 0, 0, 0"
    p = tmp_path / "annotations.csv"
    p.write_text(header + f"101, rock, {votes_a}, 3, 1, 0, 30, 1, Dutch\n"
                 f"101, rock, {votes_b}, 2, 0, 0, 25, 0, English\n"
                 f"2, classical, {votes_b}, 2, 0, 0, 25, 0, English\n")
    ann = read_annotations(p)
    assert sorted(ann) == [2, 101]
    assert ann[101]["n_listeners"] == 2 and ann[101]["genre"] == "rock"
    assert ann[101]["gems"]["amazement"] == 1.0
    assert ann[101]["gems"]["solemnity"] == 0.5 and ann[101]["gems"]["power"] == 0.5
    p.write_text(header + f"101, pop, {votes_a}, 3, 1, 0, 30, 1, Dutch\n")
    with pytest.raises(DatasetError, match="track id 101 does not belong to genre 'pop'"):
        read_annotations(p)


def test_emotify_manifest():
    root = _shared("emotify")
    tracks = emotify_manifest(root)
    assert len(tracks) == 400
    assert Counter(t.extra["genre"] for t in tracks) == {g: 100 for g in ("classical", "rock", "electronic", "pop")}
    assert sorted(int(t.track_id) for t in tracks) == list(range(1, 401))
    for t in tracks:
        assert set(t.extra["gems"]) == set(GEMS)
        assert all(0.0 <= s <= 1.0 for s in t.extra["gems"].values())
        assert 11 <= t.extra["n_listeners"] <= 59
        assert f"/audio/{t.extra['genre']}/" in t.path and sf.info(t.path).duration > 20
        assert t.quadrant == quadrant_from_va(t.label_v, t.label_a) and t.group == t.track_id
    # Median-centred: binarising at 0 halves the corpus.
    for dim in ("label_a", "label_v"):
        x = np.array([getattr(t, dim) for t in tracks])
        assert abs(np.median(x)) < 1e-12 and 190 <= (x >= 0).sum() <= 210
    # Two paths: the labels are the heuristic of the shares, shifted by one constant per dimension.
    raw = np.array([gems_to_va(t.extra["gems"]) for t in tracks])
    got = np.array([(t.label_v, t.label_a) for t in tracks])
    shift = raw - got
    assert np.allclose(shift, shift[0])


# --- DEAM, PMEmo, emoMusic -------------------------------------------------------------------

@pytest.mark.parametrize("name, n_songs, n_split", [
    ("deam", 1802, {"train": 1261, "val": 271, "test": 270}),
    ("pmemo", 767, {"train": 536, "val": 116, "test": 115}),
    ("emomusic", 744, {"train": 495, "val": 124, "test": 125}),
])
def test_static_va_with_partial_audio(tmp_path, caplog, name, n_songs, n_split):
    folder = _shared("labels", name)
    labels = read_static_labels(folder / "static_annotations.csv")
    everything = static_va_manifest(name, labels_root=folder.parent, require_audio=False)
    assert len(everything) == n_songs and all(t.path == "" for t in everything)
    assert Counter(t.split for t in everything) == n_split
    by_split = defaultdict(list)
    for t in everything:
        by_split[t.split].append(t.track_id)
    ids = by_split["train"][:2] + by_split["test"][:1]
    # Audio in nested folders, as the corpora ship it; one song in two formats (wav before flac).
    audio = tmp_path / "audio"
    _write_wav(audio / "clips" / f"{ids[0]}.wav")
    _write_wav(audio / f"{ids[0]}.flac")
    _write_wav(audio / f"{ids[1]}.flac")
    _write_wav(audio / "x" / "y" / f"{ids[2]}.ogg")
    (audio / "notes.txt").write_text("not audio: ignored")
    with caplog.at_level(logging.WARNING):
        tracks = static_va_manifest(name, audio, labels_root=folder)  # the corpus folder itself works too
    assert [t.track_id for t in tracks] == sorted(ids, key=int)
    assert next(t for t in tracks if t.track_id == ids[0]).path.endswith(f"clips/{ids[0]}.wav")
    assert f"{n_songs - 3} of {n_songs} {name} songs have no audio" in caplog.text
    for t in tracks:
        lab = labels[t.track_id]
        assert t.label_v == pytest.approx((lab["valence_mean"] - 5) / 4)
        assert t.label_a == pytest.approx((lab["arousal_mean"] - 5) / 4)
        assert -1 <= t.label_a <= 1 and -1 <= t.label_v <= 1
        assert t.quadrant == quadrant_from_va(t.label_v, t.label_a) and t.source == name
        assert t.duration == pytest.approx(0.5) and t.group == t.track_id
    assert {t.track_id: t.split for t in tracks} == dict(zip(ids, ["train", "train", "test"]))


def test_static_va_needs_audio_dir(monkeypatch):
    _shared("labels", "deam")
    monkeypatch.delenv("MERKIT_DEAM_AUDIO", raising=False)
    with pytest.raises(DatasetError, match="deam audio is not on this machine"):
        static_va_manifest("deam")
    with pytest.raises(DatasetError, match="unknown static V/A corpus"):
        static_va_manifest("nope", require_audio=False)


def test_centre_static_maps_scale_ends():
    assert centre_static([1, 5, 9]).tolist() == [-1.0, 0.0, 1.0]


def test_pmemo_dynamic_agrees_with_static():
    folder = _shared("labels", "pmemo")
    dyn = pmemo_dynamic(folder.parent)
    cen = pmemo_dynamic(folder.parent, centred=True)
    assert len(dyn) == 767
    for sid, (t, a, v) in dyn.items():
        assert np.all(np.diff(t) > 0) and np.allclose(np.diff(t), 0.5)  # 2 Hz
        assert a.min() >= 0 and a.max() <= 1 and v.min() >= 0 and v.max() <= 1
        assert np.allclose(cen[sid][1], 2 * a - 1) and np.allclose(cen[sid][2], 2 * v - 1)
    # Two annotations of one corpus: the song-level labels track the mean of the 2 Hz ones.
    static = {t.track_id: t for t in static_va_manifest("pmemo", labels_root=labels_dir("pmemo", folder.parent),
                                                           require_audio=False)}
    ids = sorted(set(static) & set(cen))
    for dim, k in (("label_a", 1), ("label_v", 2)):
        s = np.array([getattr(static[i], dim) for i in ids])
        d = np.array([cen[i][k].mean() for i in ids])
        assert np.corrcoef(s, d)[0, 1] > 0.95 and np.mean(np.abs(s - d)) < 0.1


# --- MIREX-like mood -------------------------------------------------------------------------
def test_mirex_cluster_positions():
    from merkit.data.mirex_mood import CONFIDENT_AROUSAL, cluster_va

    quadrants = {c: quadrant_from_va(*cluster_va(c)) for c in range(1, 6)}
    assert quadrants == {1: 1, 2: 1, 3: 3, 4: 1, 5: 2}
    for c in CONFIDENT_AROUSAL:
        assert abs(cluster_va(c)[1]) >= 0.8
    assert cluster_va(1, {1: 180.0})[0] == pytest.approx(-1.0)  # positions are configurable


def test_mirex_mood_manifest_on_shared_data():
    from merkit.data.mirex_mood import cluster_labels, mirex_mood_manifest

    _shared("mirex_mood", "audio")
    tracks = mirex_mood_manifest()
    assert len(tracks) == 891
    assert Counter(cluster_labels(tracks).tolist()) == {1: 168, 2: 160, 3: 212, 4: 190, 5: 161}
    assert all(t.path.endswith(".opus") and t.source == "mirex_mood" for t in tracks)
    by_artist = defaultdict(set)
    for t in tracks:
        by_artist[t.group].add(t.extra["artist"])
    # one artist per group; spelling variants of a name are one artist
    merged = [a for a in by_artist.values() if len(a) > 1]
    assert {"AC/DC", "AC-DC"} in merged and all(len(a) == 2 for a in merged) and len(merged) <= 5
    assert len(by_artist) < len(tracks)  # several clips share an artist
    assert sf.info(tracks[0].path).samplerate == 48000


def test_mirex_mood_bad_rows_name_the_line(tmp_path):
    from merkit.data.mirex_mood import mirex_mood_manifest

    (tmp_path / "audio").mkdir()
    _write_wav(tmp_path / "audio" / "001.wav")
    rows = "id,file,cluster,category,title,artist,album,year\n001,audio/001.wav,2,Fun,T,A,B,2000\n"
    (tmp_path / "labels.csv").write_text(rows)
    assert mirex_mood_manifest(tmp_path)[0].extra["cluster"] == 2
    (tmp_path / "labels.csv").write_text(rows + "002,audio/002.wav,7,X,T,A,B,2000\n")
    with pytest.raises(DatasetError, match=r"labels.csv:3: cluster 7"):
        mirex_mood_manifest(tmp_path)
    (tmp_path / "labels.csv").write_bytes(rows.encode() + b"003,\xff\xfe,1,X,T,A,B,1\n")
    with pytest.raises(DatasetError, match="labels.csv: not UTF-8"):
        mirex_mood_manifest(tmp_path)
