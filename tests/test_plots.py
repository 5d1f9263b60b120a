"""Figures: panels draw the data they are given, the queue rebuilt from the batch order matches the
real queue, the initial model is the one `fit` built, and `merkit plot` writes readable PNGs."""
import math
from dataclasses import replace

import matplotlib.image
import numpy as np
import pytest
import torch

from merkit import plots
from merkit.cli import main
from merkit.commands.plot import (centroid_distances, fused_features, initial_model, queue_trace, read_history,
                                  tsne_2d)
from merkit.config import ModelConfig, TrainConfig
from merkit.data.manifest import Track
from merkit.data.memo2496 import FeatureSet, save_memo2496
from merkit.training import fit
from merkit.training import loop as loop_module
from merkit.checkpoint import load_checkpoint
from merkit.training.memory_queue import MemoryQueue

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY_MODEL = ModelConfig(dim=16, n_heads=2, n_layers=1, fusion_dim=32)
TINY_TRAIN = TrainConfig(epochs=3, batch_size=16, lr=3e-3, queue_size=24)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def separable(n=160, n_mels=12, n_coch=10, n_frames=6, seed=0, shift=1.5):
    """Arousal and valence raise the lower Mel bands / upper cochleagram channels; rest is noise."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, n).astype(np.float32)
    v = rng.uniform(-1, 1, n).astype(np.float32)
    mel = rng.normal(size=(n, n_mels, n_frames)).astype(np.float32)
    coch = rng.normal(size=(n, n_coch, n_frames)).astype(np.float32)
    mel[:, : n_mels // 2] += (shift * np.sign(a))[:, None, None]
    coch[:, n_coch // 2:] += (shift * np.sign(v))[:, None, None]
    tracks = [Track(track_id=f"c{i}", source="synthetic", label_a=float(a[i]), label_v=float(v[i]))
              for i in range(n)]
    return FeatureSet(mel, coch, a, v, tracks)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny finished quadrant run (4 classes, so the queue's entropy and coverage move)."""
    root = tmp_path_factory.mktemp("plots")
    fs = save_memo2496(separable(), root / "feats")
    from merkit.data.memo2496 import load_memo2496

    built = []
    real_build = loop_module.build_model

    def spy(name, cfg):  # the model exactly as fit initialised it, before any training
        model = real_build(name, cfg)
        built.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    loop_module.build_model = spy
    try:
        fit(load_memo2496(fs), TINY_MODEL, replace(TINY_TRAIN, label="quadrant", seed=7), root / "run" / "seed_7",
            progress=False)
    finally:
        loop_module.build_model = real_build
    return {"root": root, "data": fs, "seed_dir": root / "run" / "seed_7", "initial_state": built[0]}


# -- panels draw what they are given -----------------------------------------------------------------
def test_line_panels_draw_the_history():
    hist = {"epoch": [1, 2, 3], "loss": [3.0, 2.0, 1.5], "loss_cls": [1.0, 0.5, 0.25], "best_epoch": [1, 2, 2]}
    ax = plots.plot_losses(hist)
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"total (Eq. 22)", "L_cls"}  # absent columns are left out
    np.testing.assert_array_equal(lines["L_cls"].get_ydata(), hist["loss_cls"])
    np.testing.assert_array_equal(lines["L_cls"].get_xdata(), hist["epoch"])
    hist["val_acc"] = [0.5, 0.75, 0.7]
    ax = plots.plot_metrics(hist)
    best = [ln for ln in ax.get_lines() if ln.get_label().startswith("selected epoch")]
    assert len(best) == 1 and list(best[0].get_xdata()) == [2, 2]
    assert ax.get_xlabel() == "epoch" and ax.get_title()


def test_band_panel_draws_mean_and_clipped_std():
    hist = {"epoch": [1, 2], "pcl_conf_mean": [0.5, 0.9], "pcl_conf_std": [0.1, 0.2],
            "pcl_rel_mean": [0.9, 0.95], "pcl_rel_std": [0.05, 0.01]}
    ax = plots.plot_pcl_confidence(hist)
    conf = next(ln for ln in ax.get_lines() if ln.get_label() == "confidence c (mean)")
    np.testing.assert_array_equal(conf.get_ydata(), [0.5, 0.9])
    band = ax.collections[0]  # the confidence band: 0.4..0.6 and 0.7..1.1 cut to 1.0
    ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
    assert ys.min() == pytest.approx(0.4) and ys.max() == pytest.approx(1.0)


def test_scatter_bar_and_histogram_panels_draw_the_data(rng):
    pts = rng.normal(size=(20, 2))
    labels = np.repeat([0, 1], 10)
    ax = plots.plot_embedding(pts, labels, names=["low", "high"])
    assert [c.get_label() for c in ax.collections] == ["low (n=10)", "high (n=10)"]
    np.testing.assert_allclose(ax.collections[1].get_offsets(), pts[10:])
    with pytest.raises(ValueError, match="points must be"):
        plots.plot_embedding(pts[:, :1], labels)

    cell = lambda m: {"mean": m, "std": 0.01, "n": 2}  # noqa: E731
    res = {"rows": [{"combo": "dsaf+pcl+saml", "summary": {"acc": cell(0.9), "f1": cell(0.8), "auc": cell(0.95)}},
                    {"combo": "pcl", "summary": {"acc": cell(0.7), "f1": cell(0.6), "auc": cell(0.75)}}],
           "task": "a", "inference_head": "ensemble", "seeds": [0, 1]}
    ax = plots.plot_ablation(res)
    heights = [p.get_height() for p in ax.patches]
    assert heights == [0.9, 0.7, 0.8, 0.6, 0.95, 0.75]  # grouped by metric, one bar per row

    dist = {"own": [0.1, 0.2, 0.2], "other": [1.0, 1.3]}
    ax = plots.plot_centroid_distances(dist, bins=4)
    counts = [sum(p.get_height() for p in c.patches) for c in ax.containers]
    assert counts == [3, 2]


# -- the queue rebuilt from the batch order ----------------------------------------------------------
def test_queue_trace_agrees_with_a_real_queue(rng):
    y = rng.integers(0, 3, size=23)
    trace = queue_trace(y, seed=5, batch_size=4, epochs=3, queue_size=10, n_classes=3)
    q = MemoryQueue(10, 2)
    step = 0
    for epoch in range(1, 4):
        perm = torch.randperm(len(y), generator=loop_module.epoch_generator(5, epoch))
        for s in range(0, len(y), 4):
            labels = torch.as_tensor(y)[perm[s:s + 4]]
            q.push(torch.ones(len(labels), 2), labels)
            st = q.stats(3)
            assert trace["entropy"][step] == pytest.approx(st["queue_entropy"])
            assert trace["coverage"][step] == pytest.approx(st["queue_coverage"])
            assert trace["fill"][step] == pytest.approx(st["queue_fill"])
            step += 1
    assert len(trace["step"]) == step == 3 * math.ceil(23 / 4)
    assert list(trace["epoch_end_step"]) == [6, 12, 18]
    np.testing.assert_array_equal(trace["final_labels"], q.labels.numpy())


def test_centroid_distances_known_answer():
    keys = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
    labels = np.array([0, 0, 1, -1])  # the last slot is empty
    d = centroid_distances(keys, labels, n_classes=2)
    c0 = np.array([0.5, 0.5])
    np.testing.assert_allclose(d["own"], [np.sqrt(0.5), np.sqrt(0.5), 0.0])
    np.testing.assert_allclose(sorted(d["other"]), sorted([2.0, np.sqrt(2.0), np.linalg.norm([-1, 0] - c0)]))


# -- a trained run -------------------------------------------------------------------------------------
def test_rebuilt_queue_and_initial_model_match_the_run(trained):
    seed_dir = trained["seed_dir"]
    last = load_checkpoint(seed_dir / "last.pt")
    hist = read_history(seed_dir)
    info, tcfg = last["data_info"], last["train_config"]
    from merkit.commands.plot import _task_positions
    from merkit.data.memo2496 import load_memo2496

    fs = load_memo2496(trained["data"])
    _, y_train = _task_positions(fs, info, "train")
    trace = queue_trace(y_train, seed=7, batch_size=tcfg["batch_size"], epochs=len(hist["epoch"]),
                        queue_size=tcfg["queue_size"], n_classes=4)
    np.testing.assert_array_equal(trace["final_labels"], last["train_state"]["objective"]["queue"]["labels"].numpy())
    ends = trace["epoch_end_step"] - 1
    np.testing.assert_allclose(trace["entropy"][ends], hist["queue_entropy"], rtol=1e-9)
    np.testing.assert_allclose(trace["coverage"][ends], hist["queue_coverage"], rtol=1e-9)

    best = load_checkpoint(seed_dir / "best.pt")
    rng_before = torch.get_rng_state()
    model = initial_model(best)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone
    state = model.state_dict()
    for k, v in trained["initial_state"].items():
        if k.endswith(("_mean", "_std")):  # normalisation: set after building, kept by training
            assert torch.equal(state[k], best["state_dict"][k])
        else:
            assert torch.equal(state[k], v), k
    mel, coch = np.array(fs.mel[:5]), np.array(fs.coch[:5])
    z = fused_features(model, fs.mel[:5], fs.coch[:5], batch_size=2)  # batched, from the memory map
    assert z.shape == (5, TINY_MODEL.fusion_dim)
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(z), model(torch.from_numpy(mel), torch.from_numpy(coch)).z_fuse)


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 300
    assert img[..., :3].std() > 0.01  # not a blank canvas


def test_cli_plot_writes_every_figure_of_a_run(trained, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["plot", str(trained["root"] / "run"), "-o", str(out), "--max-points", "20"]) == 0
    printed = capsys.readouterr().out.split()
    names = ("training.png", "fig5_pcl.png", "fig6_saml.png", "fig7_tsne.png")
    assert printed == [str(out / "seed_7" / n) for n in names]
    for n in names:
        _assert_png(out / "seed_7" / n)


def test_cli_plot_without_the_data_still_draws_the_logged_figures(trained, tmp_path, caplog):
    # a copy of the seed folder that records a feature folder that does not exist
    seed_dir = tmp_path / "seed_7"
    seed_dir.mkdir()
    for name in ("log.csv", "results.json", "best.pt"):
        (seed_dir / name).write_bytes((trained["seed_dir"] / name).read_bytes())
    last = load_checkpoint(trained["seed_dir"] / "last.pt")
    last["data_info"]["data"] = str(tmp_path / "moved")
    torch.save(last, seed_dir / "last.pt")
    assert main(["plot", str(seed_dir), "-o", str(tmp_path / "figs")]) == 0
    written = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert written == ["fig5_pcl.png", "fig6_saml.png", "training.png"]
    assert "pass --data" in caplog.text


def test_tsne_separates_two_clusters(rng):
    x = np.concatenate([rng.normal(0, 0.1, (15, 8)), rng.normal(5, 0.1, (15, 8))])
    y = tsne_2d(x, seed=0)
    a, b = y[:15], y[15:]
    assert np.linalg.norm(a.mean(0) - b.mean(0)) > 3 * max(a.std(0).max(), b.std(0).max())
    with pytest.raises(ValueError, match="at least"):
        tsne_2d(x[:3])


def test_cli_plot_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err
    assert main(["plot", str(tmp_path)]) == 1
    assert "not a merkit run folder" in capsys.readouterr().err
