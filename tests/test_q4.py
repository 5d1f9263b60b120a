"""The 4Q corpus (merkit.data.q4) on a generated copy of its layout: quadrants and their exact
V/A signs, artist groups shared with the MIREX-like set's rule, artist-grouped folds, the
registry and `merkit datasets`, one-line errors."""
import csv

import numpy as np
import pytest
import soundfile as sf

from conftest import melody
from merkit.data.mirex_mood import artist_group
from merkit.data.paths import DatasetError
from merkit.data.q4 import q4_manifest

FIELDS = ["Song", "Artist", "Title", "Quadrant", "PQuad", "MoodsTotal", "Moods", "MoodsFoundStr", "MoodsStr",
          "MoodsStrSplit", "Genres", "GenresStr", "Sample", "SampleURL"]


def _dataset(root, n=40, *, audio=True):
    (root / "audios").mkdir(parents=True)
    rows = []
    for i in range(n):
        song = f"MT{i:010d}"
        rows.append({"Song": song, "Artist": f"The Artist {i // 4}!", "Title": f"Song {i}", "Quadrant": f"Q{1 + i % 4}",
                     "PQuad": "0.5", "MoodsStrSplit": "Happy; Bright", "GenresStr": "Pop/Rock; Jazz" if i % 2 else "Blues"})
        if audio:
            sf.write(root / "audios" / f"{song}.mp3", melody(2.0, 22_050, seed=i), 22_050, format="MP3")
    with open(root / "panda_dataset_taffc_metadata.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, quoting=csv.QUOTE_ALL)
        w.writeheader()
        w.writerows(rows)
    return root


def test_manifest_labels_and_groups(tmp_path):
    tracks = q4_manifest(_dataset(tmp_path / "q4"))
    assert len(tracks) == 40 and {t.source for t in tracks} == {"q4"}
    for t in tracks:
        assert (np.sign(t.label_v), np.sign(t.label_a)) == {1: (1, 1), 2: (-1, 1), 3: (-1, -1), 4: (1, -1)}[t.quadrant]
        assert t.group == artist_group(t.extra["artist"]) == t.extra["artist"].lower().rstrip("!")
    assert tracks[1].extra["genres"] == ["Pop/Rock", "Jazz"] and tracks[0].extra["genres"] == ["Blues"]


def test_artist_grouped_folds(tmp_path):
    from merkit.data.multi_corpus import Corpus, corpus_splits

    tracks = q4_manifest(_dataset(tmp_path / "q4", audio=False), require_audio=False)
    n = len(tracks)
    corpus = Corpus(name="q4", x=np.zeros((n, 2), np.float32), va=np.array([[t.label_v, t.label_a] for t in tracks]),
                    quadrant=np.array([t.quadrant - 1 for t in tracks]), mirex=np.full(n, -1),
                    gems=np.full((n, 9), np.nan), tracks=tracks, groups=np.array([t.group for t in tracks]))
    tests = []
    for seed in range(5):
        s = corpus_splits(corpus, seed)
        assert not set(corpus.groups[s.test]) & set(corpus.groups[np.concatenate([s.train, s.val])])
        tests.append(set(s.test))
    assert set().union(*tests) == set(range(n)) and sum(map(len, tests)) == n  # 5 folds cover each clip once


def test_errors_and_the_registry(tmp_path, monkeypatch, capsys):
    with pytest.raises(DatasetError, match="4Q metadata not found"):
        q4_manifest(tmp_path / "nowhere")
    root = _dataset(tmp_path / "q4", n=4)
    text = (root / "panda_dataset_taffc_metadata.csv").read_text().replace('"Q3"', '"Q5"')
    (root / "panda_dataset_taffc_metadata.csv").write_text(text)
    with pytest.raises(DatasetError, match=r"metadata.csv:4: quadrant 'Q5' is not Q1-Q4"):
        q4_manifest(root)
    from merkit.data.registry import DATASETS, resolve_input

    good = _dataset(tmp_path / "good", n=8)
    monkeypatch.setenv("MERKIT_Q4_DIR", str(good))
    assert DATASETS["q4"].has_audio_here() and len(resolve_input("q4")) == 8
