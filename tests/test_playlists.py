"""Playlists on generated libraries with known scores: moods, regions, mood arcs, neighbours,
and the M3U8 file (relative paths, merkit's own file kind)."""
import csv
import math

import numpy as np

from merkit.cli import main
from merkit.outputs import own_kind
from merkit.playlists import MOODS, arc, in_region, load_library, nearest


def _library(tmp_path, n=15):
    """An n x n grid of tracks over the plane, written as a `merkit predict` CSV (relative paths)."""
    music = tmp_path / "music"
    music.mkdir()
    rows = []
    for i, v in enumerate(np.linspace(-0.9, 0.9, n)):
        for j, a in enumerate(np.linspace(-0.9, 0.9, n)):
            name = f"v{i:02d}_a{j:02d}.mp3"
            (music / name).write_bytes(b"")
            rows.append({"kind": "track", "path": f"music/{name}", "status": "ok", "valence_score": v,
                         "arousal_score": a, "valence": (v + 1) / 2, "arousal": (a + 1) / 2, "quadrant": 1,
                         "mood_words": "x"})
    rows.append({"kind": "track", "path": "music/broken.mp3", "status": "error"})
    rows.append({"kind": "window", "path": f"music/{name}", "status": "ok", "valence_score": 0, "arousal_score": 0})
    lib = tmp_path / "library.csv"
    with open(lib, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["kind", "path", "status", "valence_score", "arousal_score", "valence",
                                          "arousal", "quadrant", "mood_words"])
        w.writeheader()
        w.writerows(rows)
    return lib


def test_library_reads_track_rows_only(tmp_path):
    tracks = load_library(_library(tmp_path))
    assert len(tracks) == 225 and all(t.path.startswith(str(tmp_path / "music")) for t in tracks)


def test_mood_and_region_known_answers(tmp_path):
    tracks = load_library(_library(tmp_path))
    calm = nearest(tracks, MOODS["calm"], 5)
    d = [math.dist((t.v, t.a), MOODS["calm"]) for t in tracks]
    assert sorted(math.dist((t.v, t.a), MOODS["calm"]) for t in calm) == sorted(d)[:5]
    region = in_region(tracks, valence=(0.6, 1.0), arousal=(0.0, 0.4))
    assert region and all(t.p_valence >= 0.6 and t.p_arousal <= 0.4 for t in region)
    assert len(region) == sum(1 for t in tracks if t.p_valence >= 0.6 and t.p_arousal <= 0.4)


def test_a_mood_arc_moves_in_steady_steps(tmp_path):
    tracks = load_library(_library(tmp_path))
    start, end = MOODS["energetic"], MOODS["calm"]
    path = arc(tracks, start, end, 20)
    pts = np.array([[t.v, t.a] for t in path])
    assert len({t.path for t in path}) == 20
    assert math.dist(pts[0], start) < 0.1 and math.dist(pts[-1], end) < 0.1
    steps = np.hypot(*np.diff(pts, axis=0).T)
    spacing = math.dist(start, end) / 19
    assert steps.max() < spacing + 2 * 1.8 / 14  # no big jump: one target step plus the grid's spacing
    proj = (pts - start) @ (np.subtract(end, start)) / math.dist(start, end) ** 2
    assert np.all(np.diff(proj) > -0.05)  # always onwards


def test_cli_writes_a_relative_m3u8_and_finds_neighbours(tmp_path, capsys):
    lib = _library(tmp_path)
    out = tmp_path / "lists" / "calm.m3u8"
    out.parent.mkdir()
    assert main(["playlist", str(lib), "--mood", "calm", "-n", "10", "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "#EXTM3U" and own_kind(out) == "playlist"
    entries = [ln for ln in lines if not ln.startswith("#")]
    assert len(entries) == 10 and all((out.parent / e).resolve().is_file() for e in entries)
    assert all(e.startswith("../music/") for e in entries)
    assert main(["playlist", str(lib), "--near", str(tmp_path / "music" / "v07_a07.mp3"), "-n", "4",
                 "-o", str(out)]) == 0  # its own file: replaced
    near = [ln for ln in out.read_text().splitlines() if not ln.startswith("#")]
    assert "../music/v07_a07.mp3" not in near and len(near) == 4
    assert set(near) == {"../music/v06_a07.mp3", "../music/v08_a07.mp3", "../music/v07_a06.mp3", "../music/v07_a08.mp3"}
    (tmp_path / "mine.m3u8").write_text("#EXTM3U\nsong.mp3\n")  # someone else's playlist
    assert main(["playlist", str(lib), "--mood", "sad", "-o", str(tmp_path / "mine.m3u8")]) == 1
    assert "was not written by merkit" in capsys.readouterr().err
    assert main(["playlist", str(lib), "--from", "happy", "-o", str(out)]) == 1
    assert main(["playlist", str(lib), "--mood", "grumpy", "-o", str(out)]) == 1
    assert "unknown mood 'grumpy'" in capsys.readouterr().err
    assert main(["playlist", str(lib), "--valence", "0.6:", "--arousal", ":0.4", "-n", "500", "-o", str(out)]) == 0
    assert "only" in capsys.readouterr().err
