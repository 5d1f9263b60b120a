"""The dynamic model (merkit.models.dsaml): shapes, the local window and padding masks, the
diagonal loss, and training that learns a time-varying target on synthetic frames."""
import numpy as np
import pytest
import torch

from merkit.models.dsaml import DSAML, DSAMLConfig, local_mask
from merkit.training.dynamic_fit import DynamicTrainConfig, fit_dynamic, predict, song_metrics


def test_local_mask():
    m = local_mask(6, 2)
    assert m.shape == (6, 6) and not m.diagonal().any()
    assert m[0, 3] and not m[0, 2] and m[5, 0]


def test_shapes_padding_and_window():
    torch.manual_seed(0)
    m = DSAML(DSAMLConfig(frame_dim=16, global_dim=8, d_model=32, heads=4, window=3)).eval()
    f, g = torch.randn(3, 20, 16), torch.randn(3, 8)
    f[2, 12:] = float("nan")
    out, attn = m(f, g, need_attention=True)
    assert out.shape == (3, 20, 2) and attn.shape == (3, 20, 20)
    assert torch.isfinite(out).all() and (out.abs() <= 1).all()
    assert torch.allclose(attn[2, :, 12:], torch.zeros(20, 8), atol=1e-7)  # padded keys get no attention
    # the padded tail changes nothing for the frames before it (packed BiLSTM, masked keys)
    alone = m(f[2:3, :12], g[2:3])
    assert torch.allclose(alone[0], out[2, :12], atol=1e-5)
    # the local stream sees only +-window frames: changing frame 19 cannot move frame 0 through
    # it (the global stream and the BiLSTM can), so compare with both of those off
    loc = DSAML(DSAMLConfig(frame_dim=16, global_dim=8, d_model=32, window=3, global_=False)).eval()
    a = loc.local_attn
    h = torch.randn(1, 20, 32)
    h2 = h.clone()
    h2[0, 19] += 5.0
    y1, _ = a(h, h, h, attn_mask=local_mask(20, 3))
    y2, _ = a(h2, h2, h2, attn_mask=local_mask(20, 3))
    assert torch.allclose(y1[0, :15], y2[0, :15]) and not torch.allclose(y1[0, 16:], y2[0, 16:])


def test_diagonal_loss_prefers_the_diagonal():
    m = DSAML(DSAMLConfig(frame_dim=4, global_dim=4, d_model=8, heads=2))
    T = 10
    eye = torch.eye(T)[None]
    flat = torch.full((1, T, T), 1.0 / T)
    valid = torch.ones(1, T)
    assert m.diagonal_loss(eye, valid) == 0.0 and m.diagonal_loss(flat, valid) > 0.2


def _synthetic(n=60, T=30, D=12, seed=0):
    """Frames whose first feature carries valence, the second arousal (with noise)."""
    rng = np.random.default_rng(seed)
    v = np.cumsum(rng.normal(0, 0.2, (n, T)), 1).clip(-1, 1)
    a = np.sin(np.linspace(0, 3, T))[None] * rng.uniform(0.5, 1, (n, 1)) * rng.choice([-1, 1], (n, 1))
    f = rng.normal(0, 0.1, (n, T, D))
    f[..., 0] += v
    f[..., 1] += a
    f[n // 2:, T - 5:] = np.nan  # some tracks are shorter

    class DS:
        pass

    ds = DS()
    ds.frames, ds.global_ = f.astype(np.float32), rng.normal(0, 1, (n, 6)).astype(np.float32)
    ds.dyn_v, ds.dyn_a = np.where(np.isnan(f[..., 0]), np.nan, v), np.where(np.isnan(f[..., 0]), np.nan, a)
    return ds


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mse", "ccc"])
def test_training_learns_a_time_varying_target(loss):
    ds = _synthetic()
    idx = np.arange(60)
    fit = fit_dynamic(ds, idx[:40], idx[40:50], DSAMLConfig(d_model=32, heads=4, window=4, lstm_hidden=16,
                                                            diag_weight=0.1),
                      DynamicTrainConfig(epochs=40, batch_size=8, patience=40, loss=loss, lr=3e-3))
    pred = predict(fit.model, ds.frames[50:], ds.global_[50:])
    true = np.stack([ds.dyn_v[50:], ds.dyn_a[50:]], -1)
    m = song_metrics(pred, true)
    assert m["v_r"] > 0.8 and m["a_r"] > 0.8, m
    assert np.isnan(pred[55:, -5:]).all()  # no prediction for padded frames
    assert fit.history[fit.best_epoch - 1]["score"] >= fit.history[0]["score"]


def test_song_metrics_known_answers():
    t = np.linspace(-1, 1, 20)
    true = np.stack([t, -t], -1)[None]
    m = song_metrics(true.copy(), true)
    assert m["v_rmse"] == 0 and m["v_r"] == pytest.approx(1) and m["a_ccc"] == pytest.approx(1)
    const = np.zeros_like(true)
    m = song_metrics(const, true)
    # a flat curve follows nothing: r 0 (dynamic_fit.FLAT)
    assert m["v_r"] == 0.0 and m["v_ccc"] == 0.0 and m["v_rmse"] == pytest.approx(np.sqrt(np.mean(t ** 2)))
