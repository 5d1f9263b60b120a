"""PCL schedule and pseudo-labels, the training loop, resume, and `merkit train / evaluate`."""
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from merkit.cli import main
from merkit.config import ModelConfig, TrainConfig
from merkit.data.manifest import Track
from merkit.data.memo2496 import FeatureSet, save_memo2496
from merkit.models import build_model, load_model
from merkit.training import StopTraining, fit, train
from merkit.checkpoint import load_checkpoint
from merkit.training.loop import Part, Trainer, band_statistics
from merkit.training.objective import Batch
from merkit.training.pseudo_labels import PCLSchedule, PCLStats, select_pseudo_labels

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY_MODEL = ModelConfig(dim=16, n_heads=2, n_layers=1, fusion_dim=32)
TINY_TRAIN = TrainConfig(epochs=12, batch_size=32, lr=3e-3, queue_size=64)
TINY_FLAGS = ["--dim", "16", "--n-heads", "2", "--n-layers", "1", "--fusion-dim", "32",
              "--batch-size", "32", "--lr", "3e-3", "--queue-size", "64", "--no-progress"]


def separable(n=160, n_mels=16, n_coch=12, n_frames=8, seed=0, shift=1.5, clips_per_song=1):
    """Arousal raises the energy of the lower Mel bands, valence that of the upper cochleagram
    channels; everything else is noise. Songs have ``clips_per_song`` clips with one label."""
    rng = np.random.default_rng(seed)
    songs = math.ceil(n / clips_per_song)
    a = np.repeat(rng.uniform(-1, 1, songs), clips_per_song)[:n].astype(np.float32)
    v = np.repeat(rng.uniform(-1, 1, songs), clips_per_song)[:n].astype(np.float32)
    mel = rng.normal(size=(n, n_mels, n_frames)).astype(np.float32) * 2 + 5
    coch = rng.normal(size=(n, n_coch, n_frames)).astype(np.float32) - 3
    mel[:, : n_mels // 2] += (shift * np.sign(a))[:, None, None]
    coch[:, n_coch // 2:] += (shift * np.sign(v))[:, None, None]
    tracks = [Track(track_id=f"c{i}", source="synthetic", label_a=float(a[i]), label_v=float(v[i]),
                    group=f"s{i // clips_per_song}") for i in range(n)]
    return FeatureSet(mel, coch, a, v, tracks)


# -- PCL ---------------------------------------------------------------------------------------
def test_schedule_hits_its_endpoints():
    s = PCLSchedule()  # the paper's 1.5 -> 0.7 and 0.65 -> 0.35
    assert s(1, 80) == (1.5, 0.65)
    tau_last, theta_last = s(80, 80)
    assert tau_last == pytest.approx(0.7 + 0.8 / 80) and theta_last == 0.35  # rho = (t-1)/T
    assert s.at_rho(1.0) == (pytest.approx(0.7), 0.35)
    inclusive = PCLSchedule(rho_mode="inclusive")
    assert inclusive(1, 80) == (1.5, 0.65) and inclusive(80, 80) == (pytest.approx(0.7), 0.35)
    taus, thetas = zip(*(s(t, 80) for t in range(1, 81)))
    assert all(np.diff(taus) < 0) and all(np.diff(thetas) <= 0)
    # theta reaches its floor where 0.65 (1 - rho) = 0.35
    first_floor = next(t for t in range(1, 81) if s(t, 80)[1] == 0.35)
    assert first_floor == math.ceil(80 * (1 - 0.35 / 0.65)) + 1
    with pytest.raises(ValueError):
        s(0, 80)


def test_pseudo_labels_known_answers():
    fused = torch.tensor([[2.0, 0.0], [0.0, 0.1], [-3.0, 3.0]])
    same = fused.clone()
    pl = select_pseudo_labels(same, same, fused, tau=1.0, theta=0.6)
    p = torch.softmax(fused, -1)
    torch.testing.assert_close(pl.reliability, torch.ones(3))  # identical views: JS = 0, r = 1
    torch.testing.assert_close(pl.confidence, p.max(-1).values)
    assert pl.labels.tolist() == [0, 1, 1] and pl.mask.tolist() == [True, False, True]
    # opposite, confident views: r -> 1/2 halves the confidence
    a = torch.tensor([[30.0, -30.0]])
    pl = select_pseudo_labels(a, -a, torch.tensor([[30.0, -30.0]]), tau=1.0, theta=0.6)
    assert pl.reliability.item() == pytest.approx(0.5, abs=1e-6)
    assert pl.confidence.item() == pytest.approx(0.5, abs=1e-6) and not pl.mask.item()
    # Eq. 14 variant: p_fuse is the mean of the two views, the fused head is ignored
    mel, coch = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    pl = select_pseudo_labels(mel, coch, torch.tensor([[9.0, -9.0]]), tau=0.5, theta=0.0, fused="views")
    mean = (torch.softmax(mel / 0.5, -1) + torch.softmax(coch / 0.5, -1)) / 2
    assert pl.labels.item() == mean.argmax().item() == 1
    torch.testing.assert_close(pl.confidence, pl.reliability * mean.max())
    # a lower temperature sharpens p_fuse, so more samples pass the same threshold
    z = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    hot = select_pseudo_labels(z, z, z, tau=1.5, theta=0.65).mask.sum()
    cold = select_pseudo_labels(z, z, z, tau=0.7, theta=0.65).mask.sum()
    assert cold > hot


def test_pcl_statistics_known_answer():
    stats = PCLStats()
    z = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    pl = select_pseudo_labels(z, z, z, tau=1.0, theta=0.6)
    stats.update(pl)
    stats.update(pl)
    s = stats.summary()
    c = torch.softmax(z, -1).max(-1).values
    assert s["pcl_conf_mean"] == pytest.approx(c.mean().item())
    assert s["pcl_conf_std"] == pytest.approx(c.std(unbiased=False).item(), abs=1e-6)
    assert s["pcl_rel_mean"] == pytest.approx(1.0) and s["pcl_mask_ratio"] == 0.5
    assert s["pcl_strength"] == pytest.approx(0.5)
    assert math.isnan(PCLStats().summary()["pcl_mask_ratio"])


# -- the training step ----------------------------------------------------------------------------
def trainer_for(fs, cfg=TINY_TRAIN):
    mcfg = replace(TINY_MODEL, n_mels=fs.mel.shape[1], n_coch=fs.coch.shape[1], n_frames=fs.mel.shape[2])
    torch.manual_seed(0)
    model = build_model("damer", mcfg)
    y = (fs.label_a >= 0).astype(np.int64)
    part = Part.from_featureset(fs, np.arange(len(fs)), y)
    model.set_normalisation(**band_statistics(part.mel, part.coch))
    return Trainer(model, cfg, device=torch.device("cpu"), n_classes=2), part


def test_step_fills_the_queue_and_pseudo_labels_the_unlabelled_batch():
    fs = separable(64)
    trainer, part = trainer_for(fs)
    obj = trainer.objective
    obj.tau, obj.theta = 1.0, 0.0
    stats = obj.pcl_stats
    pool = Part.from_featureset(fs, np.arange(40, 64))
    terms, correct = trainer.step(Batch(part.mel[:16], part.coch[:16], part.y[:16], pool.mel[:24], pool.coch[:24]))
    assert stats.count == 24  # PCL saw the unlabelled batch only
    assert obj.queue.filled.item() == 16  # the queue holds labelled features only
    assert torch.equal(obj.queue.labels[:16], part.y[:16])
    assert terms.shape == (5,) and torch.isfinite(terms).all() and 0 <= correct.item() <= 16
    loss, cls, pl, js, cont = terms.tolist()
    assert cont == 0.0  # the queue was empty before this step
    assert loss == pytest.approx(cls + 0.8 * pl + 0.2 * js + 0.1 * cont, rel=1e-5)
    # the next step contrasts against the queue
    terms, _ = trainer.step(Batch(part.mel[16:32], part.coch[16:32], part.y[16:32]))
    assert terms[4] > 0 and stats.count == 24 + 16


def test_modules_off_leave_only_the_classification_loss():
    fs = separable(32)
    trainer, part = trainer_for(fs, replace(TINY_TRAIN, use_pcl=False, use_saml=False))
    assert trainer.objective.queue is None and trainer.objective.key_encoder is None
    terms, _ = trainer.step(Batch(part.mel, part.coch, part.y))
    assert terms[0] == terms[1] and terms[2:].abs().sum() == 0


def test_online_keys_without_momentum():
    fs = separable(32)
    trainer, part = trainer_for(fs, replace(TINY_TRAIN, key_momentum=0.0))
    assert trainer.objective.key_encoder is None
    trainer.step(Batch(part.mel[:8], part.coch[:8], part.y[:8]))
    assert trainer.objective.queue.filled.item() == 8


# -- fit, resume -----------------------------------------------------------------------------------
def stop_after(k):
    """An epoch callback that "kills" training once epoch ``k`` is checkpointed."""
    def callback(epoch, record):
        if epoch == k:
            raise StopTraining
    return callback


def without_times(history):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


def test_training_reaches_high_accuracy_and_writes_a_self_describing_run(tmp_path):
    fs = separable(200)
    res = fit(fs, TINY_MODEL, TINY_TRAIN, tmp_path, progress=False)
    assert res["test"]["ensemble"]["acc"] >= 0.9 and res["test"]["ensemble"]["auc"] >= 0.95
    for name in ("last.pt", "best.pt", "log.csv", "results.json"):
        assert (tmp_path / name).is_file()
    ckpt = load_checkpoint(tmp_path / "best.pt")
    assert set(ckpt) >= {"format", "kind", "model_config", "train_config", "state_dict", "data_info", "predictor",
                         "metrics", "versions"}
    assert ckpt["format"] == 2 and ckpt["kind"] == "damer" and ckpt["train_config"]["label"] == "a"
    assert ckpt["metrics"]["test"] == res["test"] and ckpt["metrics"]["epoch"] == res["best_epoch"]
    info = ckpt["data_info"]
    assert info["task"] == "a" and sum(info["sizes"].values()) == 200
    assert not set(info["track_ids"]["test"]) & set(info["track_ids"]["train"] + info["track_ids"]["val"])
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    for col in ("loss_cls", "loss_pl", "loss_js", "loss_cont", "tau", "theta", "pcl_conf_mean",
                "pcl_rel_std", "pcl_mask_ratio", "pcl_strength", "queue_entropy", "queue_coverage",
                "val_acc", "val_auc"):
        assert col in header
    assert len(res["history"]) == TINY_TRAIN.epochs


def test_resume_after_a_kill_gives_the_same_weights(tmp_path):
    fs = separable(120)
    cfg = replace(TINY_TRAIN, epochs=5)
    straight = fit(fs, TINY_MODEL, cfg, tmp_path / "straight", progress=False)

    with pytest.raises(StopTraining):
        fit(fs, TINY_MODEL, cfg, tmp_path / "killed", progress=False, on_epoch_end=stop_after(2))
    with pytest.raises(ValueError, match="already holds a run"):
        fit(fs, TINY_MODEL, cfg, tmp_path / "killed", progress=False)
    resumed = fit(fs, TINY_MODEL, cfg, tmp_path / "killed", progress=False, resume=True)

    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(tmp_path / "straight" / name), load_checkpoint(tmp_path / "killed" / name)
        assert a["state_dict"].keys() == b["state_dict"].keys()
        for k in a["state_dict"]:
            assert torch.equal(a["state_dict"][k], b["state_dict"][k]), (name, k)
    qa = load_checkpoint(tmp_path / "straight" / "last.pt")["train_state"]["objective"]["queue"]
    qb = load_checkpoint(tmp_path / "killed" / "last.pt")["train_state"]["objective"]["queue"]
    assert all(torch.equal(qa[k], qb[k]) for k in qa)
    assert straight["test"] == resumed["test"] and straight["best_epoch"] == resumed["best_epoch"]
    assert without_times(straight["history"]) == without_times(resumed["history"])


def test_resume_refuses_a_different_configuration(tmp_path):
    fs = separable(80)
    cfg = replace(TINY_TRAIN, epochs=2)
    with pytest.raises(StopTraining):
        fit(fs, TINY_MODEL, cfg, tmp_path, progress=False, on_epoch_end=stop_after(1))
    with pytest.raises(ValueError, match="different configuration"):
        fit(fs, TINY_MODEL, replace(cfg, lr=1e-2), tmp_path, progress=False, resume=True)


def test_quadrant_task_and_semi_supervised_pool(tmp_path):
    fs = separable(200, shift=2.0)
    pool = separable(60, seed=5)
    cfg = replace(TINY_TRAIN, label="quadrant", epochs=15)
    res = fit(fs, TINY_MODEL, cfg, tmp_path, unlabelled=pool, progress=False)
    model = load_model(tmp_path / "best.pt")
    assert model.cfg.n_classes == 4
    assert res["test"]["ensemble"]["acc"] >= 0.8  # chance is 0.25
    info = load_checkpoint(tmp_path / "best.pt")["data_info"]
    assert info["unlabelled"]["n_tracks"] == 60 and info["n_classes"] == 4
    assert all(0.0 <= r["pcl_mask_ratio"] <= 1.0 for r in res["history"])


def test_several_seeds_give_a_table(tmp_path):
    fs = separable(100)
    out = train(fs, TINY_MODEL, replace(TINY_TRAIN, epochs=2), tmp_path, seeds=[0, 1], progress=False)
    assert [r["seed"] for r in out["per_seed"]] == [0, 1]
    accs = [r["test"]["ensemble"]["acc"] for r in out["per_seed"]]
    assert out["summary"]["ensemble"]["acc"]["mean"] == pytest.approx(np.mean(accs))
    assert "±" in out["table"] and (tmp_path / "seed_1" / "best.pt").is_file()
    assert json.loads((tmp_path / "results.json").read_text())["seeds"] == [0, 1]


# -- the command line ------------------------------------------------------------------------------
def test_cli_train_then_evaluate_agree(tmp_path, capsys):
    data = save_memo2496(separable(200, clips_per_song=2), tmp_path / "feats")
    run = tmp_path / "run"
    rc = main(["train", "--data", str(data), "--label", "a", "--epochs", "12", "--run-dir", str(run),
               *TINY_FLAGS])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ensemble" in printed and "±" in printed
    results = json.loads((run / "results.json").read_text())
    test = results["per_seed"][0]["test"]
    assert test["ensemble"]["acc"] >= 0.9

    out_json = tmp_path / "eval.json"
    rc = main(["evaluate", str(run / "seed_0" / "best.pt"), "--data", str(data), "--out", str(out_json)])
    assert rc == 0
    evaluated = json.loads(out_json.read_text())["metrics"]
    for head in ("mel", "coch", "fused", "ensemble"):  # load_model + raw features = training-time test
        for m in ("acc", "f1", "auc"):
            assert evaluated[head][m] == pytest.approx(test[head][m], abs=1e-9)
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0  # a run folder prints its table
    assert "±" in capsys.readouterr().out
    # resuming a finished run changes nothing and prints the same table
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert json.loads((run / "results.json").read_text())["per_seed"][0]["test"] == test


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--label", "a"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty")]) == 1
    assert "not a Memo2496-layout folder" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "empty"), "--label", "x"]) == 1
    assert "label must be one of" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert main(["evaluate", str(tmp_path / "junk.pt"), "--data", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "junk.pt" in err


def test_a_last_batch_of_one_sample_joins_the_previous_batch():
    from merkit.training.loop import batch_starts
    assert batch_starts(65, 32) == [0, 32, 65]
    assert batch_starts(64, 32) == [0, 32, 64] and batch_starts(66, 32) == [0, 32, 64, 66]
    assert batch_starts(1, 32) == [0, 1] and batch_starts(10, 32) == [0, 10]


# -- CPU mixed precision -----------------------------------------------------------------------------
def test_autocast_forward_returns_float32_outputs_of_every_container():
    from merkit.models.damer import DamerOutput
    from merkit.training.loop import AutocastForward

    lin = torch.nn.Linear(4, 3)
    seen = {}

    def forward(x):
        y = lin(x)
        seen["dtype"] = y.dtype
        return DamerOutput(y, y, y, y, y, y), (y, torch.arange(3)), {"z": y}

    out, (t, ints), d = AutocastForward(forward, "cpu", torch.bfloat16)(torch.randn(2, 4))
    assert seen["dtype"] == torch.bfloat16  # the forward ran in low precision
    assert out.logits_mel.dtype == out.z_fuse.dtype == t.dtype == d["z"].dtype == torch.float32
    assert ints.dtype == torch.int64  # integer outputs untouched


def test_cpu_amp_without_native_bf16_trains_in_float32(monkeypatch, caplog):
    import merkit.training.loop as loop

    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level("INFO", logger="merkit.training.loop"):
        trainer, _ = trainer_for(separable(32), replace(TINY_TRAIN, cpu_amp=True))
    assert not trainer.cpu_bf16 and "float32" in caplog.text
    assert isinstance(trainer.objective.forward, torch.nn.Module)  # the plain model
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: True)
    for cfg in (replace(TINY_TRAIN, cpu_amp=False), replace(TINY_TRAIN, amp=False)):
        trainer, _ = trainer_for(separable(32), cfg)  # switched off: float32 even where native
        assert not trainer.cpu_bf16 and isinstance(trainer.objective.forward, torch.nn.Module)


def test_cpu_amp_step_runs_the_model_in_bfloat16_and_the_losses_in_float32():
    from merkit.training.loop import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bfloat16 matrix products")
    fs = separable(64)
    ref, part = trainer_for(fs, replace(TINY_TRAIN, cpu_amp=False))
    amp, _ = trainer_for(fs, replace(TINY_TRAIN, cpu_amp=True))
    assert amp.cpu_bf16 and not ref.cpu_bf16
    dtypes = set()
    hook = amp.model.layers[0].ffn[0].fc1.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
    for start in (0, 16):  # the second step also contrasts against the queue
        batch = Batch(part.mel[start:start + 16], part.coch[start:start + 16], part.y[start:start + 16])
        t_ref, _ = ref.step(batch)
        t_amp, _ = amp.step(batch)
        assert t_amp.dtype == torch.float32 and torch.isfinite(t_amp).all()
        # bfloat16 keeps ~3 significant digits: the loss terms agree to about 1e-2
        torch.testing.assert_close(t_amp, t_ref, rtol=3e-2, atol=3e-3)
    hook.remove()
    assert dtypes == {torch.bfloat16}
    assert amp.objective.queue.keys.dtype == torch.float32 and amp.objective.queue.filled.item() == 32
    for p in amp.model.parameters():
        assert p.dtype == torch.float32  # the weights and their updates stay float32


def test_a_run_stored_before_cpu_amp_resumes_in_float32():
    from dataclasses import asdict

    from merkit.config import from_dict

    stored = asdict(TINY_TRAIN)
    stored.pop("cpu_amp")  # run.json / checkpoint written before the option existed
    assert from_dict(TrainConfig, stored).cpu_amp is False
    assert from_dict(TrainConfig, asdict(TINY_TRAIN)).cpu_amp is True  # stored with it: as stored
    assert TrainConfig().cpu_amp is True  # new runs: the default
