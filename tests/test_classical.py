"""Handcrafted descriptors (merkit.features.descriptors) and the scikit-learn baselines
(merkit.models.classical): known answers, agreement with librosa, chunking, selection, files."""
import inspect
import os
import pickle

import librosa
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from merkit.metrics import accuracy, r2
from merkit.features.descriptors import (PITCH_CLASSES, SPECTRAL_STATS, DescriptorSettings,
                                         chroma_from_cochleagram, descriptor_names,
                                         handcrafted_descriptors, mean_mfcc, mel_band_frequencies,
                                         mfcc_from_log_mel, spectral_statistics)
from merkit.models.classical import LOGREG_C_GRID, ClassicalModel


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """The models here are tiny: BLAS threads only contend on a shared 2-core machine."""
    with threadpool_limits(1):
        yield


SR = 44_100
FLOOR_LOG10_COCH = np.log10(1e-10) / 3  # gt_power = 1/3 applied to the floored energy
A4_CHANNEL = 45  # C1 (MIDI 24) + 45 semitones = A4 (MIDI 69)


# --- descriptors ---------------------------------------------------------------------------------

def test_mfcc_matches_librosa(rng):
    power = rng.gamma(0.5, 1.0, size=(3, 128, 40)) + 1e-6
    ref = librosa.feature.mfcc(S=librosa.power_to_db(power, top_db=None), n_mfcc=20)
    got = mfcc_from_log_mel(np.log(power).astype(np.float64), n_mfcc=20)
    assert got.shape == (3, 20, 40)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-9)


def test_mel_band_frequencies_are_the_filter_centres():
    f = mel_band_frequencies(128, fmin=0.0, fmax=SR / 2)
    np.testing.assert_allclose(f, librosa.mel_frequencies(130, fmin=0.0, fmax=SR / 2)[1:-1], rtol=1e-12)
    # the peaks of librosa's triangles lie at these frequencies (to the FFT bin spacing)
    n_fft = 16_384
    fb = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=128)
    peaks = librosa.fft_frequencies(sr=SR, n_fft=n_fft)[fb.argmax(axis=1)]
    assert np.abs(peaks[10:] - f[10:]).max() <= SR / n_fft


def test_spectral_statistics_known_answers():
    f = mel_band_frequencies(128, fmax=SR / 2)
    mel = np.full((3, 128, 5), -np.inf)  # ln 0: no energy
    k = 40
    mel[0, k] = 0.0  # all energy in band k
    mel[1] = 1.5  # flat spectrum, E = e^1.5 in every band
    mel[2, k] = mel[2, k + 1] = 2.0  # two equal bands
    st = spectral_statistics(mel, f)
    assert st.shape == (3, len(SPECTRAL_STATS), 5)
    centroid, bandwidth, flatness, rolloff, log_energy = st.transpose(1, 0, 2)
    np.testing.assert_allclose(centroid[0], f[k], rtol=1e-12)
    np.testing.assert_allclose(bandwidth[0], 0.0, atol=1e-9)
    np.testing.assert_allclose(rolloff[0], f[k])
    np.testing.assert_allclose(flatness[0], 0.0)
    np.testing.assert_allclose(log_energy[0], 0.0, atol=1e-12)
    np.testing.assert_allclose(flatness[1], 1.0, rtol=1e-12)
    np.testing.assert_allclose(log_energy[1], np.log(128) + 1.5, rtol=1e-12)
    np.testing.assert_allclose(centroid[2], (f[k] + f[k + 1]) / 2, rtol=1e-12)
    np.testing.assert_allclose(bandwidth[2], (f[k + 1] - f[k]) / 2, rtol=1e-9)
    np.testing.assert_allclose(rolloff[2], f[k + 1])  # 85 % is reached only in the upper band
    np.testing.assert_allclose(log_energy[2], np.log(2) + 2.0, rtol=1e-12)


def test_spectral_statistics_match_librosa(rng):
    f = mel_band_frequencies(128, fmax=SR / 2)
    power = rng.gamma(0.5, 1.0, size=(3, 128, 30)) + 1e-6
    st = spectral_statistics(np.log(power), f)
    S = np.sqrt(power)  # librosa's spectral features take a magnitude spectrogram
    refs = {"centroid": librosa.feature.spectral_centroid(S=S, freq=f),
            "bandwidth": librosa.feature.spectral_bandwidth(S=S, freq=f),
            "flatness": librosa.feature.spectral_flatness(S=S, power=2.0),
            "rolloff": librosa.feature.spectral_rolloff(S=S, freq=f, roll_percent=0.85)}
    for name, ref in refs.items():
        np.testing.assert_allclose(st[:, SPECTRAL_STATS.index(name)], ref[:, 0], rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(st[:, SPECTRAL_STATS.index("log_energy")], np.log(power.sum(axis=1)),
                               rtol=1e-12)


def test_chroma_a4_peaks_at_a():
    coch = np.full((84, 4), FLOOR_LOG10_COCH)
    coch[A4_CHANNEL] = 0.5
    chroma = chroma_from_cochleagram(coch)
    assert chroma.shape == (12, 4)
    assert PITCH_CLASSES[int(chroma[:, 0].argmax())] == "A"
    np.testing.assert_allclose(chroma[PITCH_CLASSES.index("A")], 1.0)
    assert chroma[np.arange(12) != 9].max() < 0.01


def test_chroma_folds_every_channel_to_its_pitch_class_and_ignores_scale():
    coch = np.full((84, 84), FLOOR_LOG10_COCH)
    coch[np.arange(84), np.arange(84)] = 0.0  # frame k: energy in channel k only
    chroma = chroma_from_cochleagram(coch)
    np.testing.assert_array_equal(chroma.argmax(axis=0), np.arange(84) % 12)  # C1 is C
    # chroma is normalised per frame: a constant in log10 (a gain) changes nothing
    np.testing.assert_allclose(chroma_from_cochleagram(coch + 40.0), chroma, rtol=1e-12)
    with pytest.raises(ValueError, match="halfway"):
        chroma_from_cochleagram(coch[:24], bins_per_octave=24)


def _features(rng, n, T=32):
    mel = rng.normal(-6.0, 1.0, size=(n, 128, T)).astype(np.float32)
    coch = rng.normal(-1.5, 0.3, size=(n, 84, T)).astype(np.float32)
    return mel, coch


def test_descriptor_layout_and_mean_mfcc(rng):
    mel, coch = _features(rng, 5)
    d = handcrafted_descriptors(mel, coch)
    names = descriptor_names()
    assert d.shape == (5, len(names)) == (5, 74)
    assert names[0] == "mfcc0_mean" and names[37] == "mfcc0_std" and names[-1] == "log_energy_std"
    mm = mean_mfcc(mel)
    np.testing.assert_allclose(mm, mfcc_from_log_mel(mel).mean(axis=-1), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(d[:, :20], mm, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(d[:, 37:57], mfcc_from_log_mel(mel).std(axis=-1), rtol=1e-10)
    np.testing.assert_allclose(d[:, 20:32], chroma_from_cochleagram(coch).mean(axis=-1), rtol=1e-12)


def test_chunking_and_memmap_do_not_change_descriptors(rng, tmp_path):
    mel, coch = _features(rng, 7)
    whole = handcrafted_descriptors(mel, coch, chunk_size=1000)
    per_item = np.concatenate([handcrafted_descriptors(mel[i:i + 1], coch[i:i + 1]) for i in range(7)])
    np.testing.assert_allclose(handcrafted_descriptors(mel, coch, chunk_size=3), whole, rtol=1e-12)
    np.testing.assert_allclose(per_item, whole, rtol=1e-12)
    np.testing.assert_allclose(mean_mfcc(mel, chunk_size=2), mean_mfcc(mel), rtol=1e-12)
    np.save(tmp_path / "mel.npy", mel)
    np.save(tmp_path / "coch.npy", coch)
    mm = handcrafted_descriptors(np.load(tmp_path / "mel.npy", mmap_mode="r"),
                                 np.load(tmp_path / "coch.npy", mmap_mode="r"), chunk_size=2)
    np.testing.assert_array_equal(mm, handcrafted_descriptors(mel, coch, chunk_size=2))


def test_bad_track_stays_in_its_row(rng):
    mel, coch = _features(rng, 4)
    mel[2, 5, 3] = np.nan
    d = handcrafted_descriptors(mel, coch)
    assert np.isfinite(d[[0, 1, 3]]).all() and not np.isfinite(d[2]).all()


def test_feature_info_sets_the_frequencies(rng):
    assert DescriptorSettings.from_feature_info(None).mel_fmax == SR / 2
    info = {"audio": {"sample_rate": 22_050}, "features": {"mel_fmin": 30.0, "mel_fmax": None}}
    st = DescriptorSettings.from_feature_info(info)
    assert (st.sample_rate, st.mel_fmin, st.mel_fmax) == (22_050, 30.0, 11_025.0)
    mel, coch = _features(rng, 2)
    centroid = descriptor_names().index("centroid_mean")
    lo = handcrafted_descriptors(mel, coch, info)[:, centroid]
    hi = handcrafted_descriptors(mel, coch)[:, centroid]
    assert np.all(lo < hi)
    with pytest.raises(ValueError, match="disagree"):
        handcrafted_descriptors(mel, coch[:1])


# --- classical models ------------------------------------------------------------------------------

def _classes(rng, n, n_classes, T=32):
    """Class k adds energy to Mel bands 10+12k..19+12k and cochleagram channels 30+6k..35+6k."""
    y = rng.permutation(np.arange(n) % n_classes)
    mel, coch = _features(rng, n, T)
    for k in range(n_classes):
        mel[y == k, 10 + 12 * k:20 + 12 * k] += 2.0
        coch[y == k, 30 + 6 * k:36 + 6 * k] += 0.5
    return mel, coch, y


def _regression(rng, n, T=32):
    """A continuous target that shifts the log energy of Mel bands 10-19 linearly."""
    y = rng.uniform(-1.0, 1.0, n)
    mel, coch = _features(rng, n, T)
    mel[:, 10:20] += 2.0 * y[:, None, None]
    coch[:, 30:36] += 0.5 * y[:, None, None]
    return mel, coch, y


@pytest.mark.parametrize("kind", ["svm", "logreg"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_learns_separable_classes(kind, n_classes):
    rng = np.random.default_rng(n_classes)
    tr, va, te = _classes(rng, 160, n_classes), _classes(rng, 60, n_classes), _classes(rng, 80, n_classes)
    model = ClassicalModel(kind, n_classes=n_classes, seed=0)
    report = model.fit(*tr, *va)
    assert report["selection"] == "validation" and report["chosen"] in report["grid"]
    proba = model.predict_heads(te[0], te[1])["out"]
    assert proba.shape == (80, n_classes)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)
    assert accuracy(te[2], proba.argmax(axis=1)) > 0.9


@pytest.mark.parametrize("kind", ["svm", "logreg"])
def test_regression_on_linear_target(kind):
    rng = np.random.default_rng(7)
    tr, va, te = _regression(rng, 200), _regression(rng, 60), _regression(rng, 80)
    model = ClassicalModel(kind, n_classes=1)
    report = model.fit(*tr, *va)
    assert report["metric"] == "ccc" and report["param"] == ("C" if kind == "svm" else "alpha")
    pred = model.predict_heads(te[0], te[1])["out"]
    assert pred.shape == (80,)
    assert r2(te[2], pred) > 0.8


def test_grid_is_scored_on_validation_only():
    # the test part cannot reach fit: it takes a training and a validation part, nothing else
    assert list(inspect.signature(ClassicalModel.fit).parameters) == [
        "self", "mel_tr", "coch_tr", "y_tr", "mel_val", "coch_val", "y_val", "groups"]
    rng = np.random.default_rng(3)
    # a hard task (small shift, few tracks), so that the grid values score differently
    y = rng.permutation(np.arange(120) % 2)
    mel, coch = _features(rng, 120)
    mel[y == 1, 10:20] += 0.05
    tr, va = slice(0, 80), slice(80, 120)
    model = ClassicalModel("logreg", n_classes=2)
    report = model.fit(mel[tr], coch[tr], y[tr], mel[va], coch[va], y[va])
    # second path: each grid value fitted on the training part, scored on the validation part
    X_tr, X_va = mean_mfcc(mel[tr]), mean_mfcc(mel[va])
    expected = [accuracy(y[va], make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
                         .fit(X_tr, y[tr]).predict(X_va)) for c in LOGREG_C_GRID]
    np.testing.assert_allclose(report["scores"], expected)
    assert len(set(expected)) > 1  # the grid values really differ on this task
    best = [c for c, a in zip(LOGREG_C_GRID, expected) if a == max(expected)]
    chosen_loss = report["losses"][LOGREG_C_GRID.index(report["chosen"])]
    # the best accuracy wins; among equals, the lowest validation log-loss
    assert report["chosen"] in best
    assert chosen_loss == min(report["losses"][LOGREG_C_GRID.index(c)] for c in best)
    assert model.estimator[-1].C == report["chosen"]


def test_cross_validation_without_validation_matches_gridsearch():
    rng = np.random.default_rng(4)
    y = rng.permutation(np.arange(100) % 2)
    mel, coch = _features(rng, 100)
    mel[y == 1, 10:20] += 0.1
    model = ClassicalModel("logreg", n_classes=2, seed=5)
    report = model.fit(mel, coch, y)
    assert report["selection"] == "5-fold cv" and report["n_val"] == 0
    search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
                          {"logisticregression__C": list(LOGREG_C_GRID)},
                          scoring={"acc": "accuracy", "nll": "neg_log_loss"}, refit=False,
                          cv=StratifiedKFold(5, shuffle=True, random_state=5)).fit(mean_mfcc(mel), y)
    acc, nll = search.cv_results_["mean_test_acc"], -search.cv_results_["mean_test_nll"]
    np.testing.assert_allclose(report["scores"], acc)
    np.testing.assert_allclose(report["losses"], nll, rtol=1e-9)
    best = min((i for i in range(len(acc)) if acc[i] == acc.max()), key=lambda i: nll[i])
    assert report["chosen"] == LOGREG_C_GRID[best]


def test_absent_class_gets_zero_probability_and_bad_rows_are_skipped():
    rng = np.random.default_rng(5)
    mel, coch, y = _classes(rng, 90, 3)
    mel[0, 0, 0] = np.nan  # one broken training track
    model = ClassicalModel("logreg", n_classes=4)  # class 3 never occurs in training
    with pytest.warns(UserWarning, match="skipping 1 of 60"):
        report = model.fit(mel[:60], coch[:60], y[:60], mel[60:], coch[60:], y[60:])
    assert report["n_skipped"] == 1 and report["n_train"] == 59 and report["n_val"] == 30
    out = model.predict_heads(mel[:5], coch[:5])["out"]
    assert np.isnan(out[0]).all() and np.isfinite(out[1:]).all()
    np.testing.assert_array_equal(out[1:, 3], 0.0)
    with pytest.raises(ValueError, match="class indices"):
        ClassicalModel("svm", n_classes=2).fit(mel, coch, y)  # label 2 with two classes


@pytest.mark.parametrize("kind,n_classes", [("svm", 2), ("logreg", 1), ("svm", 1), ("logreg", 2)])
def test_save_load_round_trip(tmp_path, kind, n_classes):
    rng = np.random.default_rng(6)
    data = _classes(rng, 80, 2) if n_classes == 2 else _regression(rng, 80)
    model = ClassicalModel(kind, n_classes=n_classes, seed=2, feature_info={"audio": {"sample_rate": 22_050}})
    # the SVM chooses C on a validation part, the Ridge by cross-validation: both paths saved
    model.fit(*(a[:60] for a in data), *(a[60:] for a in data)) if kind == "svm" else model.fit(*data)
    path = model.save(tmp_path / "sub" / "model.skops")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.skops"]  # no temporary left
    back = ClassicalModel.load(path)
    assert (back.kind, back.n_classes, back.chosen, back.feature_info) == (
        kind, n_classes, model.chosen, model.feature_info)
    np.testing.assert_array_equal(back.predict_heads(data[0], data[1])["out"],
                                  model.predict_heads(data[0], data[1])["out"])


def test_load_rejects_garbage_naming_the_file(tmp_path):
    garbage = tmp_path / "garbage.skops"
    garbage.write_bytes(b"\x00not a model at all" * 10)
    with pytest.raises(ValueError, match="garbage.skops: not a readable merkit classical model"):
        ClassicalModel.load(garbage)
    import skops.io as sio

    other = tmp_path / "other.skops"
    sio.dump({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="other.skops: not a merkit classical model"):
        ClassicalModel.load(other)


class _Exploit:
    """Unpickling this runs a shell command (what an attacker would put in a model file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_model_file_never_runs_code(tmp_path):
    import skops.io as sio

    marker = tmp_path / "pwned"
    for name in ("model.pkl", "model.skops"):  # a pickle, whatever its name
        evil = tmp_path / name
        evil.write_bytes(pickle.dumps({"format": "merkit-classical", "x": _Exploit(marker)}))
        with pytest.raises(ValueError, match="pickled model file"):
            ClassicalModel.load(evil)
    assert not marker.exists()
    # a skops file with a type no merkit model holds is refused before anything is built
    odd = tmp_path / "odd.skops"
    sio.dump({"format": "merkit-classical", "estimator": os.system}, odd)
    with pytest.raises(ValueError, match="refused, it holds types .*system"):
        ClassicalModel.load(odd)
    # torch checkpoints load with weights_only=True: the same exploit does not run
    import torch

    from merkit.checkpoint import load_checkpoint

    ckpt = tmp_path / "best.pt"
    torch.save({"config": {}, "x": _Exploit(marker)}, ckpt)
    with pytest.raises(Exception):
        load_checkpoint(ckpt)
    assert not marker.exists()


def test_unfitted_model_refuses_to_predict():
    with pytest.raises(RuntimeError, match="not fitted"):
        ClassicalModel("svm", n_classes=2).predict_heads(np.zeros((1, 128, 4)), np.zeros((1, 84, 4)))
