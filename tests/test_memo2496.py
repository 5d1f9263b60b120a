import math

import numpy as np
import pytest

from merkit.data.manifest import Track, quadrant_from_va, read_manifest, write_manifest
from merkit.data.memo2496 import FeatureSet, LayoutError, is_memo2496_dir, load_memo2496, save_memo2496


def _fs(rng, n=5, t=7):
    tracks = [Track(track_id=f"x{i}", source="t", split="train" if i < 3 else "test", label_a=float(i) - 2,
                    label_v=2.0 - i, quadrant=1, group=f"g{i // 2}", extra={"genre": "rock", "k": [1, 2]})
              for i in range(n)]
    return FeatureSet(mel=rng.standard_normal((n, 128, t)).astype(np.float32),
                      coch=rng.standard_normal((n, 84, t)).astype(np.float32),
                      label_a=np.array([t.label_a for t in tracks], np.float32),
                      label_v=np.array([t.label_v for t in tracks], np.float32), tracks=tracks,
                      feature_info={"note": "test"})


def test_round_trip(tmp_path, rng):
    fs = _fs(rng)
    save_memo2496(fs, tmp_path)
    assert is_memo2496_dir(tmp_path)
    back = load_memo2496(tmp_path)
    np.testing.assert_array_equal(back.mel, fs.mel)
    np.testing.assert_array_equal(back.coch, fs.coch)
    np.testing.assert_array_equal(back.label_v, fs.label_v)
    assert repr(back.tracks) == repr(fs.tracks) and back.feature_info == {"note": "test"}  # nan != nan
    assert isinstance(back.mel, np.memmap)  # never the whole corpus in RAM
    sub = back.subset(back.splits == "test")
    assert [t.track_id for t in sub.tracks] == ["x3", "x4"] and sub.mel.shape == (2, 128, 7)
    np.testing.assert_array_equal(sub.labels("a"), [1.0, 2.0])


def test_official_layout_without_manifest(tmp_path, rng):
    """The figshare download has only the four arrays."""
    fs = _fs(rng)
    save_memo2496(fs, tmp_path)
    (tmp_path / "tracks.csv").unlink()
    (tmp_path / "features.json").unlink()
    back = load_memo2496(tmp_path)
    assert [t.track_id for t in back.tracks] == ["0", "1", "2", "3", "4"]
    assert back.tracks[4].label_a == pytest.approx(2.0) and back.tracks[0].split == ""


def test_layout_errors_name_the_file(tmp_path, rng):
    fs = _fs(rng)
    save_memo2496(fs, tmp_path)
    np.save(tmp_path / "labels" / "label_a.npy", np.zeros(4, np.float32))
    with pytest.raises(LayoutError, match=r"label_a\.npy: 4 rows, but mel_spec\.npy has 5"):
        load_memo2496(tmp_path)
    np.save(tmp_path / "labels" / "label_a.npy", np.zeros((5, 2), np.float32))
    with pytest.raises(LayoutError, match=r"label_a\.npy: labels must be 1-D"):
        load_memo2496(tmp_path)
    save_memo2496(fs, tmp_path)
    np.save(tmp_path / "cochlegram.npy", np.zeros((5, 84, 6), np.float32))
    with pytest.raises(LayoutError, match="T=7 frames but coch has T=6"):
        load_memo2496(tmp_path)
    (tmp_path / "mel_spec.npy").unlink()
    with pytest.raises(LayoutError, match="missing mel_spec.npy"):
        load_memo2496(tmp_path)


def test_manifest_length_mismatch(tmp_path, rng):
    fs = _fs(rng)
    save_memo2496(fs, tmp_path)
    write_manifest(fs.tracks[:3], tmp_path / "tracks.csv")
    with pytest.raises(LayoutError, match="3 tracks, but the arrays have 5 rows"):
        load_memo2496(tmp_path)


def test_manifest_round_trip_and_bad_row(tmp_path):
    tracks = [Track("a", label_a=0.5), Track("b", label_v=-1.0, quadrant=3, extra={"x": 1.5})]
    write_manifest(tracks, tmp_path / "m.csv")
    back = read_manifest(tmp_path / "m.csv")
    assert repr(back) == repr(tracks) and math.isnan(back[0].label_v)
    (tmp_path / "bad.csv").write_text("track_id,label_a\nq,notanumber\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2"):
        read_manifest(tmp_path / "bad.csv")


@pytest.mark.parametrize("v,a,q", [(0.5, 0.5, 1), (-0.5, 0.5, 2), (-0.5, -0.5, 3), (0.5, -0.5, 4),
                                   (float("nan"), 0.2, 0)])
def test_quadrants(v, a, q):
    assert quadrant_from_va(v, a) == q


def test_arrays_must_match_features_json(tmp_path):
    """A Mel array of 64 bands in a folder whose features.json says 128 is refused on load."""
    import json

    from merkit.data.memo2496 import LayoutError, load_memo2496

    n = 4
    np.save(tmp_path / "mel_spec.npy", np.zeros((n, 64, 87), np.float32))
    np.save(tmp_path / "cochlegram.npy", np.zeros((n, 84, 87), np.float32))
    (tmp_path / "labels").mkdir()
    np.save(tmp_path / "labels" / "label_a.npy", np.zeros(n, np.float32))
    np.save(tmp_path / "labels" / "label_v.npy", np.zeros(n, np.float32))
    (tmp_path / "features.json").write_text(json.dumps({"features": {"n_mels": 128, "n_gammatone": 84},
                                                        "geometry": {"n_frames": 87}}))
    with pytest.raises(LayoutError, match=r"mel_spec.npy: 64 bands x 87 frames, but features.json says 128 x 87"):
        load_memo2496(tmp_path)
    np.save(tmp_path / "mel_spec.npy", np.zeros((n, 128, 87), np.float32))
    assert load_memo2496(tmp_path).mel.shape == (n, 128, 87)
    # a truncated array names its file
    data = (tmp_path / "cochlegram.npy").read_bytes()
    (tmp_path / "cochlegram.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(LayoutError, match=r"cochlegram.npy: not a readable .npy array"):
        load_memo2496(tmp_path)


def test_non_utf8_csv_names_the_file(tmp_path):
    from merkit.data.manifest import read_manifest

    p = tmp_path / "tracks.csv"
    p.write_bytes(b"track_id,source\n\xff\xfe1,x\n")
    with pytest.raises(ValueError, match=r"tracks.csv: not UTF-8 text"):
        read_manifest(p)
