"""2 Hz frame features (merkit.dynamic_features): a frame is its patch's features, the layout
round-trips with labels, reruns resume."""
import numpy as np
import pytest
import soundfile as sf

from conftest import melody
from merkit.data.manifest import Track
from merkit.dynamic_features import DynamicGrid, extract_dynamic, frame_features, load_dynamic


@pytest.fixture(scope="module")
def enc():
    from merkit.encoders import get_encoder

    return get_encoder("musicnn")


def test_a_frame_is_its_centred_patch(enc):
    y = melody(12.0, 16_000, seed=1)
    f = frame_features(enc, y, np.array([3.0, 6.0]))
    assert f.shape == (2, 953)
    # the patch centred on 6 s, embedded on its own, gives the same penultimate features up to
    # the patch's edges (which see their real neighbours in the shared pass)
    p = enc.patch_frames * enc.front_end.hop_length
    lo = int(6.0 * 16_000) - p // 2
    alone = enc.embed(y[lo:lo + p]).sequence[0]
    assert np.corrcoef(f[1, :200], alone)[0, 1] > 0.95
    assert not np.allclose(f[0], f[1])


def test_layout_round_trip_and_resume(tmp_path, enc, monkeypatch):
    tracks = []
    for i, secs in enumerate((20.0, 8.0, 20.0)):
        p = tmp_path / f"t{i}.wav"
        sf.write(p, melody(secs, 22_050, seed=i), 22_050)
        tracks.append(Track(track_id=f"t{i}", path=str(p)))
    tracks.append(Track(track_id="bad", path=str(tmp_path / "missing.wav")))
    grid = DynamicGrid(start=2.0, n_frames=30)
    la = np.tile(np.linspace(-1, 1, 30), (4, 1))
    rep = extract_dynamic(tracks, tmp_path / "out", grid, labels=(la, -la), progress=False)
    assert rep == {"n": 4, "done": 3, "failed": 1}
    ds = load_dynamic(tmp_path / "out")
    assert ds.frames.shape == (3, 30, 953) and ds.global_.shape == (3, 1906)
    assert ds.times[0] == 2.0 and ds.times[-1] == pytest.approx(16.5)
    assert np.isfinite(ds.frames[0]).all()
    # the 8 s clip has frames up to 8 s only: 2.0 ... 8.0 -> 13 frames, NaN after
    assert np.isfinite(ds.frames[1, :13]).all() and np.isnan(ds.frames[1, 13:]).all()
    assert np.allclose(ds.dyn_a, la[:3]) and np.allclose(ds.dyn_v, -la[:3])
    assert "missing.wav" in (tmp_path / "out" / "failures.csv").read_text()


def test_interrupted_run_resumes_to_the_same_arrays(tmp_path, monkeypatch):
    import merkit.dynamic_features as dyn

    tracks = []
    for i in range(3):
        p = tmp_path / f"t{i}.wav"
        sf.write(p, melody(10.0, 22_050, seed=10 + i), 22_050)
        tracks.append(Track(track_id=f"t{i}", path=str(p)))
    grid = DynamicGrid(start=1.0, n_frames=12)
    extract_dynamic(tracks, tmp_path / "once", grid, progress=False)
    real, calls = dyn.track_features, []

    def stop_on_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(dyn, "track_features", stop_on_second)
    with pytest.raises(KeyboardInterrupt):
        extract_dynamic(tracks, tmp_path / "twice", grid, progress=False)
    monkeypatch.setattr(dyn, "track_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    extract_dynamic(tracks, tmp_path / "twice", grid, progress=False)
    assert len(calls) == 4  # the first track was not redone
    a, b = load_dynamic(tmp_path / "once"), load_dynamic(tmp_path / "twice")
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.global_, b.global_)
