"""Unified model: masked multi-task losses across corpora, balanced sampling, distillation,
splits per corpus, metrics, checkpoint round trip, on synthetic corpora with known answers."""
import numpy as np
import pytest
import torch

from merkit.data.manifest import Track
from merkit.data.multi_corpus import Corpus, corpus_splits, va_scale
from merkit.evaluation.unified_eval import corpus_metrics, selection_score, va_quadrant
from merkit.models.unified import UnifiedConfig, UnifiedMER, load_unified, unified_checkpoint
from merkit.training.unified_fit import UnifiedTrainConfig, _losses, fit_teachers, fit_unified, predict_corpus

D = 16
pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tiny MLPs: threads only add overhead


def _corpus(name, n, rng, *, kind):
    """Clips whose V/A is a linear function of the first two input dimensions."""
    x = rng.standard_normal((n, D)).astype(np.float32)
    v, a = x[:, 0], x[:, 1]
    quadrant = np.full(n, -1)
    mirex = np.full(n, -1)
    gems = np.full((n, 9), np.nan)
    tracks = [Track(track_id=f"{name}{i}", source=name, group=f"{name}{i // 2}") for i in range(n)]
    if kind == "quadrant":
        va = np.stack([np.sign(v), np.sign(a)], 1)
        quadrant = va_quadrant(va)
        for i, t in enumerate(tracks):
            t.split = ["train", "train", "train", "val", "test"][i % 5]
    elif kind == "mirex":
        mirex = (x[:, 2] > 0).astype(int) + 2 * (a > 0)  # 4 of the 5 clusters
        va = np.stack([v, a], 1) * 0.5
    else:
        va = np.stack([v, a], 1) * 0.2  # another scale: the per-corpus scaling evens it out
        gems[:] = 1 / (1 + np.exp(-x[:, 3:12]))
    return Corpus(name=name, x=x, va=va, quadrant=quadrant, mirex=mirex, gems=gems, tracks=tracks,
                  groups=np.array([t.group for t in tracks]))


@pytest.fixture(scope="module")
def corpora():
    rng = np.random.default_rng(0)
    return [_corpus("emopia", 300, rng, kind="quadrant"), _corpus("mirex_mood", 300, rng, kind="mirex"),
            _corpus("emotify", 200, rng, kind="gems")]


FAST = UnifiedTrainConfig(epochs=40, patience=10, batch_per_corpus=32, seed=0)


def test_splits_follow_each_corpus_protocol(corpora):
    emopia, mirex, emotify = corpora
    s = corpus_splits(emopia, 0)
    assert {emopia.tracks[i].split for i in s.test} == {"test"} and {emopia.tracks[i].split for i in s.val} == {"val"}
    folds = [set(corpus_splits(mirex, k).test) for k in range(5)]
    assert set().union(*folds) == set(range(len(mirex)))  # 5 folds cover every clip once
    assert sum(len(f) for f in folds) == len(mirex)
    for k in range(5):
        sk = corpus_splits(mirex, k)
        groups_test = set(mirex.groups[sk.test])
        assert groups_test.isdisjoint(mirex.groups[sk.train]) and groups_test.isdisjoint(mirex.groups[sk.val])
    e0, e1 = corpus_splits(emotify, 0), corpus_splits(emotify, 1)
    assert abs(len(e0.test) - 30) <= 4 and set(e0.test) != set(e1.test)
    assert set(e0.train).isdisjoint(e0.val) and set(e0.train).isdisjoint(e0.test)


def test_fit_learns_every_head(corpora):
    splits = {c.name: corpus_splits(c, 0) for c in corpora}
    # lighter dropout than the shipped 0.7 / 0.5, which needs more than FAST's epochs on these few
    # clips: this test is about every head learning, not about regularisation
    res = fit_unified(corpora, splits, UnifiedConfig(input_dim=D, hidden=64, dropout=0.5, input_dropout=0.3), FAST)
    assert res.model.cfg.heads == ("va", "quadrant", "mirex", "gems")
    emopia, mirex, emotify = corpora
    for c in corpora:
        te = splits[c.name].test
        m = corpus_metrics(c, te, predict_corpus(res.model, c.x[te]))
        if c.name == "emopia":
            assert m["q_acc"] > 0.8 and m["a_acc"] > 0.85 and m["q_va_acc"] > 0.8
        elif c.name == "mirex_mood":
            assert m["mirex_f1"] > 0.5 and m["v_auc"] > 0.9
        else:
            assert m["a_r"] > 0.9 and m["v_r"] > 0.9
    assert 1 <= res.best_epoch <= FAST.epochs and np.isfinite(res.val_score)
    assert res.va_scales["emotify"][0] < res.va_scales["emopia"][0]


def test_heads_without_labels_are_left_out(corpora):
    emotify = corpora[2]
    res = fit_unified([emotify], {"emotify": corpus_splits(emotify, 0)}, UnifiedConfig(input_dim=D, hidden=32),
                      UnifiedTrainConfig(epochs=3, patience=3))
    assert res.model.cfg.heads == ("va", "gems")


def test_masked_losses_skip_missing_labels():
    out = {"va": torch.zeros(4, 2), "quadrant": torch.zeros(4, 4), "gems": torch.zeros(4, 9)}
    tgt = {"va": torch.tensor([[1.0, float("nan")]] * 4), "quadrant": torch.tensor([-1, -1, -1, -1]),
           "mirex": torch.tensor([-1] * 4), "gems": torch.full((4, 9), float("nan"))}
    losses = _losses(out, tgt, UnifiedTrainConfig(), {})
    assert set(losses) == {"va"} and float(losses["va"]) == pytest.approx(1.0)
    # distillation from a teacher equal to the student costs nothing
    kd = {"quadrant": torch.zeros(4, 4)}
    losses = _losses(out, tgt, UnifiedTrainConfig(kd_weight=1.0), kd)
    assert float(losses["kd_quadrant"]) == pytest.approx(0.0, abs=1e-7)
    kd = {"quadrant": torch.tensor([[5.0, 0, 0, 0]] * 4)}
    assert float(_losses(out, tgt, UnifiedTrainConfig(kd_weight=1.0), kd)["kd_quadrant"]) > 0.1


def test_distillation_gives_heads_to_clips_without_labels(corpora):
    splits = {c.name: corpus_splits(c, 0) for c in corpora}
    teachers = fit_teachers(corpora, splits, UnifiedConfig(input_dim=D, hidden=32), FAST)
    assert set(teachers) == {"emopia", "mirex_mood", "emotify"}
    assert teachers["emopia"].cfg.heads == ("va", "quadrant")
    res = fit_unified(corpora[:1], {"emopia": splits["emopia"]}, UnifiedConfig(input_dim=D, hidden=32),
                      UnifiedTrainConfig(epochs=20, patience=20, kd_weight=1.0),
                      teachers={"mirex_mood": teachers["mirex_mood"]})
    # the student learnt a MIREX head from EMOPIA clips and the MIREX teacher alone
    assert "mirex" in res.model.cfg.heads
    assert any("loss_kd_mirex" in h for h in res.history)
    mirex = corpora[1]
    te = splits["mirex_mood"].test
    agree = (predict_corpus(res.model, mirex.x[te])["mirex"].argmax(1)
             == predict_corpus(teachers["mirex_mood"], mirex.x[te])["mirex"].argmax(1)).mean()
    assert agree > 0.4  # far above chance (0.25: the synthetic corpus uses 4 clusters)


def test_selection_uses_validation_only(corpora, monkeypatch):
    """Corrupting the test labels does not change the chosen epoch or the weights."""
    import copy

    splits = {c.name: corpus_splits(c, 0) for c in corpora}
    a = fit_unified(corpora, splits, UnifiedConfig(input_dim=D, hidden=32), UnifiedTrainConfig(epochs=8, patience=8))
    broken = copy.deepcopy(corpora)
    for c in broken:
        te = splits[c.name].test
        c.va[te] = -c.va[te]
        c.quadrant[te] = (c.quadrant[te] + 1) % 4 if (c.quadrant >= 0).any() else c.quadrant[te]
    b = fit_unified(broken, splits, UnifiedConfig(input_dim=D, hidden=32), UnifiedTrainConfig(epochs=8, patience=8))
    assert a.best_epoch == b.best_epoch
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(v, b.model.state_dict()[k])


def test_checkpoint_round_trip(corpora, tmp_path):
    model = UnifiedMER(UnifiedConfig(input_dim=D, hidden=32))
    model.set_normalisation(torch.ones(D), 2 * torch.ones(D))
    torch.save(unified_checkpoint(model, note="x"), tmp_path / "m.pt")
    back = load_unified(torch.load(tmp_path / "m.pt", weights_only=True))
    x = torch.from_numpy(corpora[0].x[:5])
    for h, v in model.predict(x).items():
        torch.testing.assert_close(back.predict(x)[h], v)


def test_va_scale_and_selection_score(corpora):
    emotify = corpora[2]
    s = va_scale(emotify, np.arange(len(emotify)))
    np.testing.assert_allclose(s, np.nanstd(emotify.va, axis=0), rtol=1e-6)
    assert selection_score(corpora[0], {"q_acc": 0.5, "a_acc": 0.8, "v_acc": 0.2}) == pytest.approx(0.5)
    assert selection_score(corpora[1], {"mirex_f1": 0.4, "a_acc": 1.0}) == 0.4
    assert selection_score(emotify, {"a_r": 0.8, "v_r": 0.4}) == pytest.approx(0.6)
    np.testing.assert_array_equal(va_quadrant(np.array([[1, 1], [-1, 1], [-1, -1], [1, -1.0]])), [0, 1, 2, 3])


def _feature_folder(root, source, n, rng, *, kind, encoder_once=True):
    """A Memo2496-layout folder with a musicnn view, written directly (no audio)."""
    from merkit.config import AudioConfig, FeatureConfig
    from merkit.data.memo2496 import FeatureSet, save_memo2496
    from merkit.frontend import FrontEnd

    fe = FrontEnd(AudioConfig(sample_rate=22_050, window_start=0.0, window_seconds=6.0, encoder_once=encoder_once),
                  FeatureConfig(n_frames=31), "musicnn")
    info = fe.info()
    emb = rng.standard_normal((n, 1906)).astype(np.float32)
    tracks = []
    for i in range(n):
        t = Track(track_id=f"{source}{i}", source=source, group=f"{source}{i}")
        if kind == "quadrant":
            t.quadrant = 1 + (int(emb[i, 0] < 0) + 2 * int(emb[i, 1] < 0)) % 4
            t.split = ["train", "train", "train", "val", "test"][i % 5]
            t.label_a, t.label_v = (1.0 if t.quadrant in (1, 2) else -1.0), (1.0 if t.quadrant in (1, 4) else -1.0)
        else:
            t.extra = {"cluster": 1 + i % 5}
            t.label_v, t.label_a = float(emb[i, 0]), float(emb[i, 1])
        tracks.append(t)
    fs = FeatureSet(mel=rng.standard_normal((n, 128, 31)).astype(np.float32),
                    coch=rng.standard_normal((n, 84, 31)).astype(np.float32),
                    label_a=np.array([t.label_a for t in tracks], np.float32),
                    label_v=np.array([t.label_v for t in tracks], np.float32), tracks=tracks, feature_info=info,
                    embeddings={"musicnn": emb, "musicnn_seq": rng.standard_normal((n, 2, 200)).astype(np.float32)})
    return save_memo2496(fs, root)


def test_cli_train_unified_then_predict(tmp_path, capsys):
    import json

    import soundfile as sf

    from conftest import melody
    from merkit.cli import main

    rng = np.random.default_rng(0)
    a = _feature_folder(tmp_path / "emopia", "emopia", 60, rng, kind="quadrant")
    b = _feature_folder(tmp_path / "mirex", "mirex_mood", 150, rng, kind="mirex")  # >= 20 a class per fold
    rc = main(["train", "--model", "unified", "--data", f"{a},{b}", "--epochs", "3", "--seeds", "0", "1",
               "--run-dir", str(tmp_path / "run")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "emopia" in out and "mirex_f1" in out and "q_acc" in out
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["seeds"] == [0, 1] and set(res["test"][0]) == {"emopia", "mirex_mood"}
    model = tmp_path / "run" / "seed_0" / "model.pt"
    sf.write(tmp_path / "x.wav", melody(7.0, 22_050), 22_050)
    assert main(["predict", str(tmp_path / "x.wav"), "--model", str(model), "--format", "json"]) == 0
    pred = json.loads(capsys.readouterr().out)["results"][0]["prediction"]
    assert pred["quadrant"] in (1, 2, 3, 4) and pred["mood_cluster"] in range(1, 6)
    assert pred["end"] == pytest.approx(6.0)  # the 6 s window of the feature folders' front end


def test_hear_once_rewrites_a_model_with_new_test_metrics(tmp_path, capsys):
    """merkit.recipes.hear_once: a model trained on looped-window features gets the setting,
    test metrics on heard-once folders beside the old ones, and a reference it checks against;
    weights unchanged; looped folders are refused."""
    import json

    import torch

    from merkit.checkpoint import load_checkpoint
    from merkit.cli import main
    from merkit.predict import load_model
    from merkit.recipes import hear_once

    rng = np.random.default_rng(1)
    looped = _feature_folder(tmp_path / "looped", "emopia", 60, rng, kind="quadrant", encoder_once=False)
    assert main(["train", "--model", "unified", "--data", str(looped), "--epochs", "2", "--seeds", "0",
                 "--run-dir", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    src = tmp_path / "run" / "seed_0" / "model.pt"
    assert load_model(src).config.audio.encoder_once is False  # from its folders' front end
    with pytest.raises(ValueError, match="not extracted with encoder_once"):
        hear_once(src, {"emopia": str(looped)}, tmp_path / "x.pt", log=lambda *a: None)
    assert not (tmp_path / "x.pt").exists()
    once = _feature_folder(tmp_path / "once", "emopia", 60, np.random.default_rng(2), kind="quadrant")
    out = tmp_path / "once.pt"
    rec = hear_once(src, {"emopia": str(once)}, out, log=lambda *a: None)
    model = load_model(out)
    assert model.config.audio.encoder_once is True and model.check() == rec["self_check_difference"] == 0.0
    blob, before = load_checkpoint(out), load_checkpoint(src)
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # noqa: E731 (NaN AUCs)
    assert same(blob["metrics"]["test"], rec["test"]) and same(blob["metrics"]["test_looped_window"], before["metrics"]["test"])
    assert rec["test"]["emopia"]["n"] == 12 and 0.0 <= rec["test"]["emopia"]["a_auc"] <= 1.0
    for k, v in before["state_dict"].items():
        assert torch.equal(v, blob["state_dict"][k]), k
