"""Time-varying labels: PMEmo's real file, DEAM/emoMusic's wide format, the 2 Hz grid."""
import numpy as np
import pytest

from merkit.data.dynamic import on_grid, read_corpus, read_pmemo, read_wide_pair
from merkit.data.paths import DatasetError


def test_pmemo_real_file(shared_data):
    curves = read_pmemo(shared_data / "labels" / "pmemo" / "dynamic_annotations.csv")
    assert len(curves) > 700  # 767 songs with static labels; the dynamic file covers most
    c = curves["1"]
    assert c.times[0] == pytest.approx(15.5) and np.allclose(np.diff(c.times), 0.5)
    raw = 0.4376625  # the file's first row: song 1, 15.5 s, Arousal(mean)
    assert c.arousal[0] == pytest.approx(2 * raw - 1)
    allv = np.concatenate([np.r_[x.arousal, x.valence] for x in curves.values()])
    assert np.all(np.abs(allv) <= 1.0) and allv.std() > 0.1
    assert read_corpus("pmemo", shared_data / "labels" / "pmemo")["1"].times[0] == pytest.approx(15.5)


def test_wide_format_with_blank_tails(tmp_path):
    a = tmp_path / "dynamic (per second annotations)" / "arousal.csv"
    a.parent.mkdir()
    a.write_text("song_id,sample_15000ms,sample_15500ms,sample_16000ms\n2,0.1,0.2,0.3\n3,-0.5,-0.4,\n")
    v = a.parent / "valence.csv"
    v.write_text("song_id,sample_15000ms,sample_15500ms,sample_16000ms\n2,0.0,0.0,0.1\n3,0.5,,0.2\n")
    curves = read_wide_pair(a, v)
    assert curves["2"].times.tolist() == [15.0, 15.5, 16.0]
    assert curves["3"].times.tolist() == [15.0]  # only where both dimensions are annotated
    assert read_corpus("deam", tmp_path)["2"].valence.tolist() == [0.0, 0.0, 0.1]
    times, ga, gv = on_grid(curves, ["3", "2", "missing"])
    assert times.tolist() == [15.0, 15.5, 16.0]
    assert ga[1].tolist() == [0.1, 0.2, 0.3] and np.isnan(ga[0, 1:]).all() and np.isnan(ga[2]).all()
    with pytest.raises(DatasetError, match="bad number"):
        v.write_text("song_id,sample_15000ms\n2,abc\n")
        read_wide_pair(a, v)


def test_grid_of_pmemo_starts_at_15s(shared_data):
    curves = read_pmemo(shared_data / "labels" / "pmemo" / "dynamic_annotations.csv")
    times, a, v = on_grid(curves, ["1", "4"], n_frames=40)
    assert times[0] == 15.0 and np.isnan(a[0, 0]) and np.isfinite(a[0, 1])  # song 1 starts at 15.5 s
    assert a.shape == v.shape == (2, 40)


def test_deam_per_rater_layout(tmp_path):
    from merkit.data.dynamic import read_deam_raters

    base = tmp_path / "annotations per each rater" / "dynamic (per second annotations)"
    for dim, sign in (("arousal", 1), ("valence", -1)):
        (base / dim).mkdir(parents=True)
        (base / dim / "10.csv").write_text(
            "WorkerId,sample_15000ms,sample_15500ms\n"
            f"w1,{0.1 * sign},{0.2 * sign}\nw2,{0.3 * sign},\n")
    raters = read_deam_raters(tmp_path)
    assert set(raters) == {"10"} and set(raters["10"]) == {"w1", "w2"}
    assert raters["10"]["w1"].arousal.tolist() == [0.1, 0.2] and raters["10"]["w1"].valence.tolist() == [-0.1, -0.2]
    assert raters["10"]["w2"].times.tolist() == [15.0]


def test_pmemo_per_annotator_layout(tmp_path):
    from merkit.data.dynamic import read_pmemo_raters

    base = tmp_path / "PMEmo" / "Annotations"
    (base / "Arousal").mkdir(parents=True)
    (base / "Valence").mkdir(parents=True)
    # one row per annotator: id, static rating, then 2 Hz dynamic ratings on [0, 1]
    (base / "Arousal" / "7-A.csv").write_text("subject,static,15,15.5,16\ns1,0.5,0.5,1.0,0.75\ns2,0.2,0.0,0.25,\n")
    (base / "Valence" / "7-V.csv").write_text("subject,static,15,15.5,16\ns1,0.5,0.25,0.5,0.5\ns2,0.2,1.0,1.0,1.0\n")
    (base / "Arousal" / "8-A.csv").write_text("a,b,c,d\nx,0.5,0.5,0.5\n")  # no valence file: skipped
    raters = read_pmemo_raters(tmp_path / "PMEmo")
    assert set(raters) == {"7"} and set(raters["7"]) == {"s1", "s2"}
    s1, s2 = raters["7"]["s1"], raters["7"]["s2"]
    assert s1.times.tolist() == [15.0, 15.5, 16.0]
    assert s1.arousal.tolist() == [0.0, 1.0, 0.5] and s1.valence.tolist() == [-0.5, 0.0, 0.0]
    assert s2.times.tolist() == [15.0, 15.5] and s2.arousal.tolist() == [-1.0, -0.5]  # blank cell dropped


def test_pmemo_per_annotator_header_without_times(tmp_path):
    from merkit.data.dynamic import read_pmemo_raters
    from merkit.data.paths import DatasetError

    for dim in ("Arousal", "Valence"):
        (tmp_path / dim).mkdir()
        (tmp_path / dim / f"3-{dim[0]}.csv").write_text("id,static,d1,d2\nr,0.5,0.5,0.5\n")
    assert read_pmemo_raters(tmp_path)["3"]["r"].times.tolist() == [15.0, 15.5]  # the 2 Hz grid from 15 s
    (tmp_path / "Arousal" / "3-A.csv").write_text("id,static,d1\nr,0.5,oops\n")
    with pytest.raises(DatasetError, match="bad number"):
        read_pmemo_raters(tmp_path)
