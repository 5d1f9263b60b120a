"""The unified model behind `merkit predict`: one consistent story (quadrant, V/A point and
probabilities agree), file = array, save -> load (float16) with a self-check, the CLI and the
Python API on a unified model file."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import melody
from merkit.config import AudioConfig, FeatureConfig
from merkit.models.unified import UnifiedConfig, UnifiedMER
from merkit.predict import load_model
from merkit.predictors.base import PredictorConfig
from merkit.results import Prediction
from merkit.predictors.unified import UnifiedModel, fit_calibration

SR = 22_050
CFG = PredictorConfig(audio=AudioConfig(sample_rate=SR, window_start=0.0, window_seconds=6.0),
                      features=FeatureConfig(n_frames=31), timeline_window=3.0, timeline_hop=1.5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = UnifiedMER(UnifiedConfig(input_dim=1906 + 31, hidden=32)).eval()
    # a readable normalisation: the embedding's scale, so that outputs vary with the input
    net.set_normalisation(torch.zeros(1937), torch.full((1937,), 0.5))
    return UnifiedModel(net, CFG, calibration={"valence": (2.0, 0.3), "arousal": (1.5, -0.2)})


def _signal(seed, seconds=7.0):
    rng = np.random.default_rng(seed)
    y = melody(seconds, SR, seed=seed, amp=0.3)
    return y + 0.02 * rng.standard_normal(len(y)).astype(np.float32)


def test_one_consistent_story(model):
    for seed in range(6):
        p = model.predict(_signal(seed), SR)
        q = p.quadrant_probs
        assert sum(q) == pytest.approx(1.0)
        assert p.quadrant == int(np.argmax(q)) + 1 and p.certainty == pytest.approx(max(q))
        # the quadrant is where the V/A probabilities point
        assert (p.arousal >= 0.5) == (p.quadrant in (1, 2))
        assert (p.valence >= 0.5) == (p.quadrant in (1, 4))
        assert -1 <= p.arousal_score <= 1 and -1 <= p.valence_score <= 1
        assert p.mood_cluster in range(1, 6) and p.mood_words and len(p.gems) == 9
        # P = sigmoid(slope * s + intercept) and the score field is tanh(s - s_half), s_half =
        # -intercept / slope: P = sigmoid(slope * atanh(score)), so the signs always agree
        assert p.valence == pytest.approx(1 / (1 + np.exp(-2.0 * np.arctanh(p.valence_score))), abs=1e-6)
        assert p.arousal == pytest.approx(1 / (1 + np.exp(-1.5 * np.arctanh(p.arousal_score))), abs=1e-6)
        assert (p.valence_score >= 0) == (p.valence >= 0.5) and (p.arousal_score >= 0) == (p.arousal >= 0.5)


def test_file_equals_array_and_timeline(model, tmp_path):
    y = _signal(1, 8.0)
    sf.write(tmp_path / "x.wav", y, SR, subtype="FLOAT")
    a = model.predict(y, SR)
    b = model.predict_file(tmp_path / "x.wav")
    assert a.quadrant == b.quadrant and a.mood_cluster == b.mood_cluster
    for k in ("arousal", "valence", "arousal_score", "valence_score", "start", "end"):
        assert getattr(a, k) == pytest.approx(getattr(b, k), abs=1e-5)
    tl = model.predict_file_timeline(tmp_path / "x.wav")
    assert [round(p.start, 2) for p in tl] == [0.0, 1.5, 3.0, 4.5]  # (a 0.5 s tail gets no window)
    r = model.analyse_file(tmp_path / "x.wav", timeline=True)
    assert r.ok and len(r.timeline) == len(tl)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"nope")
    results = list(model.analyse_files([bad, tmp_path / "x.wav"], workers=2))
    assert not results[0].ok and results[1].ok and str(bad) in results[0].error


def test_save_load_round_trip_and_check(model, tmp_path):
    model.reference = model.reference_probabilities()
    path = model.save(tmp_path / "m.pt")
    back = load_model(path)
    assert isinstance(back, UnifiedModel) and back.calibration == model.calibration
    assert back.check() < 0.02  # float16 weights reproduce the float32 reference
    y = _signal(3)
    assert back.predict(y, SR).quadrant_probs == pytest.approx(model.predict(y, SR).quadrant_probs, abs=0.02)
    blob = torch.load(path, weights_only=True)
    blob["predictor"]["reference"]["va"][0][0] += 1.0
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="differ from the stored reference"):
        load_model(tmp_path / "bad.pt").check()


def test_cli_predict_with_unified_model(model, tmp_path, capsys):
    from merkit.cli import main

    path = model.save(tmp_path / "m.pt")
    sf.write(tmp_path / "a.wav", _signal(4), SR)
    assert main(["predict", str(tmp_path / "a.wav"), "--model", str(path), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    pred = out["results"][0]["prediction"]
    assert pred["arousal_score"] is not None and pred["mood_words"] and pred["quadrant"] in (1, 2, 3, 4)
    assert main(["predict", str(tmp_path / "a.wav"), "--model", str(path), "--format", "csv"]) == 0
    import csv, io

    row = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["mood_words"] == pred["mood_words"] and float(row["valence_score"]) == pytest.approx(pred["valence_score"])
    assert main(["predict", str(tmp_path / "a.wav"), "--model", str(path)]) == 0
    assert pred["mood_words"].split(",")[0] in capsys.readouterr().out


def test_not_a_model_file(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a merkit model file"):
        load_model(tmp_path / "x.pt")


def test_fit_calibration_known_answer():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(5000)
    y = np.where(rng.random(5000) < 1 / (1 + np.exp(-(2.0 * s - 0.5))), 1.0, -1.0)
    slope, intercept = fit_calibration(s, y)
    assert slope == pytest.approx(2.0, rel=0.1) and intercept == pytest.approx(-0.5, abs=0.1)
    assert fit_calibration(s, np.ones(5000)) == (1.7, 0.0)  # one class: the default map


def test_quadrant_point_and_scores_agree_on_many_inputs(model):
    """The printed quadrant, the V/A point (2P - 1, as the page and the plots draw it), the
    scores and the certainty tell one story, for 2 000 random network inputs."""
    from merkit.results import quadrant_point

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2000, 1937)) * rng.uniform(0.1, 3.0, (2000, 1))).astype(np.float32)
    for f in model.predict_inputs(x):
        p = Prediction(**f, start=0.0, end=1.0)
        v, a = quadrant_point(p)
        assert p.quadrant == {(True, True): 1, (False, True): 2, (False, False): 3, (True, False): 4}[(v >= 0, a >= 0)]
        assert (p.valence_score >= 0) == (v >= 0) and (p.arousal_score >= 0) == (a >= 0)
        assert p.certainty == pytest.approx(max(p.quadrant_probs)) and p.certainty >= 0.25


def test_damer_fields_agree_on_many_inputs():
    """DAMER: the quadrant comes from the marginals too (a joint 4-class argmax disagreed with
    its own marginals), whichever networks a model holds."""
    from merkit.results import combine

    rng = np.random.default_rng(1)
    for tasks in (("quadrant",), ("quadrant", "a", "v"), ("a", "v"), ("quadrant", "a")):
        probs = {t: rng.dirichlet(np.ones(4 if t == "quadrant" else 2) * 0.7, 500) for t in tasks}
        for f in combine(probs, np.ones(500)):
            v, a = f["valence"] >= 0.5, f["arousal"] >= 0.5
            assert f["quadrant"] == {(True, True): 1, (False, True): 2, (False, False): 3, (True, False): 4}[(v, a)]
            assert f["certainty"] == pytest.approx(max(f["quadrant_probs"]))


def test_the_device_adapter_gives_the_encoders_outputs():
    """musicnn behind OnDevice (what --device cuda puts in the encoder) answers like the module
    itself; on CPU here, on a GPU in tests/test_cuda.py."""
    from merkit.encoders.musicnn import OnDevice, load_musicnn

    net = load_musicnn()
    x = torch.randn(3, 187, 96)
    with torch.inference_mode():
        ref, got = net(x), OnDevice(net, torch.device("cpu"))(x)
        assert torch.equal(OnDevice(net, torch.device("cpu")).frames(x), net.frames(x))
    for f in ("logits", "penultimate", "mean_pool", "max_pool", "midend"):
        assert torch.equal(getattr(ref, f), getattr(got, f)), f


def test_device_flag_without_cuda_is_a_clear_error(model, tmp_path, capsys):
    from merkit.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    sf.write(tmp_path / "a.wav", _signal(0), SR)
    assert main(["predict", str(tmp_path / "a.wav"), "--device", "cuda", "--no-progress"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err
    assert model.to_device("cpu").predict(_signal(1), SR).arousal == model.predict(_signal(1), SR).arousal


def test_mood_words_agree_with_the_quadrant():
    """Known answers: the words shown lie in the predicted quadrant, from the most likely cluster
    that has any there (issue 24: Q3 "sad" came with "aggressive"; every calm piece "literate")."""
    from merkit.data.mirex_mood import ADJECTIVE_QUADRANT, CLUSTERS, mood_words

    assert set(ADJECTIVE_QUADRANT) == {w for ws in CLUSTERS.values() for w in ws.split(", ")}
    aggressive = [0.05, 0.05, 0.1, 0.05, 0.75]  # cluster 5 most likely
    assert mood_words(2, aggressive) == (5, "aggressive, fiery, tense/anxious, intense, volatile, visceral")
    assert mood_words(3, aggressive) == (3, "poignant, wistful, bittersweet, brooding")  # never "aggressive"
    assert mood_words(4, aggressive) == (3, "literate, autumnal")  # cluster 3 is likelier than 2 and 4
    assert mood_words(4, [0.1, 0.5, 0.2, 0.1, 0.1]) == (2, "sweet, amiable/good-natured")
    assert mood_words(1, aggressive) == (1, "passionate, rousing, confident, boisterous, rowdy")  # ties: lowest cluster
    for q in (1, 2, 3, 4):
        for probs in np.random.default_rng(q).dirichlet(np.ones(5), 20):
            _, words = mood_words(q, probs)
            assert words and all(ADJECTIVE_QUADRANT[w] == q for w in words.split(", "))
