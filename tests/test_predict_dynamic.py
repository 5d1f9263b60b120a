"""A dynamic (DSAML) model end to end: extract-dynamic -> merkit train --model dsaml -> merkit
predict --timeline (2 Hz curve, JSON, plot), and the page-facing fields."""
import json

import numpy as np
import pytest
import soundfile as sf

from conftest import melody
from merkit.cli import main
from merkit.data.manifest import Track
from merkit.dynamic_features import DynamicGrid, extract_dynamic

SR = 22_050


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("dyn")
    tracks = []
    rng = np.random.default_rng(0)
    for i in range(12):
        p = d / f"t{i}.wav"
        sf.write(p, melody(16.0, SR, seed=i), SR)
        tracks.append(Track(track_id=f"t{i}", path=str(p), split="train" if i < 8 else "val" if i < 10 else "test"))
    grid = DynamicGrid(start=0.0, n_frames=30)
    la = np.cumsum(rng.normal(0, 0.1, (12, 30)), 1).clip(-1, 1)
    extract_dynamic(tracks, d / "feats", grid, labels=(la, -la), progress=False)
    rc = main(["train", "--model", "dsaml", "--data", str(d / "feats"), "--epochs", "3", "--seeds", "0",
               "--run-dir", str(d / "run")])
    assert rc == 0
    return d


def test_train_writes_a_self_describing_model(trained):
    res = json.loads((trained / "run" / "results.json").read_text())
    assert set(res["test"][0]) >= {"v_rmse", "a_r", "v_ccc"}
    from merkit.predict import load_model
    from merkit.predictors.dynamic import DynamicModel

    m = load_model(trained / "run" / "seed_0" / "model.pt")
    assert isinstance(m, DynamicModel) and m.hop == 0.5


def test_predict_timeline_is_a_2hz_curve(trained, tmp_path, capsys):
    song = tmp_path / "song.wav"
    sf.write(song, melody(20.0, SR, seed=40), SR)
    model = str(trained / "run" / "seed_0" / "model.pt")
    assert main(["predict", str(song), "--model", model, "--timeline", "--format", "json", "-o",
                 str(tmp_path / "o.json"), "--plot", str(tmp_path / "plots")]) == 0
    r = json.loads((tmp_path / "o.json").read_text())["results"][0]
    tl = r["timeline"]
    assert len(tl) == 40 and tl[0]["start"] == pytest.approx(0.0) and tl[1]["start"] == pytest.approx(0.5)
    for w in tl + [r["prediction"]]:
        v, a = w["valence_score"], w["arousal_score"]
        assert -1 <= v <= 1 and -1 <= a <= 1 and w["arousal"] is None and w["certainty"] is None
        assert w["quadrant"] == {(True, True): 1, (False, True): 2, (False, False): 3, (True, False): 4}[(v >= 0, a >= 0)]
    assert (tmp_path / "plots" / "song.wav.png").is_file()
    # the curve follows the music: not one constant value
    assert np.std([w["valence_score"] for w in tl]) > 0
    assert main(["predict", str(song), "--model", model]) == 0
    assert "Q" in capsys.readouterr().out
