"""MuseFuse (merkit.models.musefuse): ProtoAlign, ReliaPseudo, TriDistill and the objective."""
import io
import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from merkit.config import ModelConfig, TrainConfig
from merkit.models.musefuse import MuseFuse
from merkit.training.musefuse_objective import (MuseFuseObjective, PrototypeBank, entropy_weights,
                                                prototype_alignment_loss, reliability_pseudo_loss,
                                                reliability_threshold, symmetric_distill_loss, tri_distill_loss)
from merkit.training.objective import Batch

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = ModelConfig(name="musefuse", n_mels=24, n_coch=16, n_frames=6, n_classes=2, dim=16,
                   n_heads=4, n_layers=1, fusion_dim=24, dropout=0.0)
CPU = torch.device("cpu")
# The class of a synthetic sample is written as extra energy in these bands of both views.
MEL_BANDS, COCH_BANDS, SHIFT = slice(10, 20), slice(6, 12), 2.0


def synthetic(n, cfg=TINY, seed=0, regression=False):
    """Noise plus ``SHIFT`` times the class (or a continuous target) in fixed bands."""
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(n, cfg.n_mels, cfg.n_frames, generator=g)
    coch = torch.randn(n, cfg.n_coch, cfg.n_frames, generator=g)
    if regression:
        y = torch.rand(n, generator=g) * 2 - 1
        amount = y
    else:
        y = torch.randint(0, cfg.n_classes, (n,), generator=g)
        amount = y.float()
    mel[:, MEL_BANDS] += SHIFT * amount[:, None, None]
    coch[:, COCH_BANDS] += SHIFT * amount[:, None, None]
    return mel, coch, y


def setup(cfg=TINY, seed=0, **train):
    torch.manual_seed(seed)
    model = MuseFuse(cfg)
    tcfg = TrainConfig(**train)
    obj = MuseFuseObjective(model, tcfg, n_classes=cfg.n_classes, device=CPU)
    return model, obj


def train_steps(model, obj, batches, lr=3e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history = []
    for batch in batches:
        total, terms, _ = obj.loss(batch)
        opt.zero_grad()
        total.backward()
        opt.step()
        obj.after_step(batch)
        history.append(terms)
    return torch.stack(history)


def batches_of(mel, coch, y, size, epochs, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), size):
            idx = order[i:i + size]
            yield Batch(mel[idx], coch[idx], y[idx])


# --- ProtoAlign -------------------------------------------------------------------------------
def test_prototypes_follow_the_ema_rule_exactly():
    bank = PrototypeBank(3, 2, momentum=0.9)
    # First batch of class 0: normalised rows (0.6, 0.8) and (1, 0), mean (0.8, 0.4).
    bank.update(torch.tensor([[3.0, 4.0], [2.0, 0.0]]), torch.tensor([0, 0]))
    first = np.array([0.8, 0.4]) / math.hypot(0.8, 0.4)
    np.testing.assert_allclose(bank.prototypes[0].numpy(), first, rtol=1e-6)
    assert bank.initialised.tolist() == [True, False, False]
    # Second batch: class 0 gets (0, 1) -> normalise(0.9 p + 0.1 (0, 1)); class 1 is initialised
    # by its own first mean (-1, 0).
    bank.update(torch.tensor([[0.0, 2.0], [-5.0, 0.0]]), torch.tensor([0, 1]))
    ema = 0.9 * first + 0.1 * np.array([0.0, 1.0])
    np.testing.assert_allclose(bank.prototypes[0].numpy(), ema / np.linalg.norm(ema), rtol=1e-6)
    np.testing.assert_allclose(bank.prototypes[1].numpy(), [-1.0, 0.0])
    assert bank.prototypes[2].tolist() == [0.0, 0.0]
    assert bank.initialised.tolist() == [True, True, False]


def test_absent_classes_keep_their_prototype():
    torch.manual_seed(0)
    bank = PrototypeBank(3, 5, momentum=0.5)
    bank.update(torch.randn(9, 5), torch.tensor([0, 1, 2] * 3))
    before = bank.prototypes.clone()
    bank.update(torch.randn(4, 5), torch.tensor([1, 1, 1, 1]))
    assert torch.equal(bank.prototypes[[0, 2]], before[[0, 2]])
    assert not torch.allclose(bank.prototypes[1], before[1])
    torch.testing.assert_close(bank.prototypes.norm(dim=1), torch.ones(3))


def test_non_finite_features_do_not_reach_the_prototypes():
    bank = PrototypeBank(2, 2, momentum=0.9)
    bank.update(torch.tensor([[1.0, 0.0], [float("nan"), 1.0]]), torch.tensor([0, 1]))
    assert bank.initialised.tolist() == [True, False]
    assert torch.isfinite(bank.prototypes).all()


def test_prototype_separation_is_the_mean_cosine_of_distinct_classes():
    bank = PrototypeBank(3, 2, momentum=0.9)
    assert math.isnan(bank.separation())
    bank.update(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), torch.tensor([0, 1, 2]))
    # cosines: (0,1) = 0, (0,2) = -1, (1,2) = 0
    assert bank.separation() == pytest.approx(-1.0 / 3.0)


def test_prototype_alignment_loss_known_answers():
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    f = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]], requires_grad=True)
    # distances 1 - cos: same direction 0, orthogonal 1, opposite 2
    loss = prototype_alignment_loss(f, torch.tensor([0, 0, 0]), protos)
    assert loss.item() == pytest.approx(1.0)
    # a class without a prototype leaves its samples out of the mean
    loss = prototype_alignment_loss(f, torch.tensor([0, 1, 0]), protos, torch.tensor([True, False]))
    assert loss.item() == pytest.approx(1.0)  # (0 + 2) / 2
    none = prototype_alignment_loss(f, torch.tensor([1, 1, 1]), protos, torch.tensor([True, False]))
    assert none.item() == 0.0
    none.backward()  # still a graph, so a step with no prototype yet backpropagates
    assert torch.equal(f.grad, torch.zeros_like(f))


# --- ReliaPseudo ------------------------------------------------------------------------------
def test_entropy_weights_fall_as_entropy_rises():
    assert entropy_weights(torch.eye(4)).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert entropy_weights(torch.full((1, 4), 0.25)).item() == pytest.approx(0.0, abs=1e-6)
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert entropy_weights(torch.tensor([[0.9, 0.1]])).item() == pytest.approx(1 - h / math.log(2))
    eps = torch.linspace(0.0, 0.5, 51)
    w = entropy_weights(torch.stack([1 - eps, eps], 1))
    assert (w.diff() < 0).all() and w[0] == 1.0 and w[-1] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="2 classes"):
        entropy_weights(torch.ones(3, 1))


def test_reliability_threshold_schedule():
    assert reliability_threshold(1, 11, 0.6, 0.3) == pytest.approx(0.6)
    assert reliability_threshold(6, 11, 0.6, 0.3) == pytest.approx(0.45)
    assert reliability_threshold(11, 11, 0.6, 0.3) == pytest.approx(0.3)
    assert reliability_threshold(1, 1, 0.6, 0.3) == 0.6
    for bad in (0, 12):
        with pytest.raises(ValueError, match="epoch"):
            reliability_threshold(bad, 11, 0.6, 0.3)


def test_reliability_pseudo_loss_selects_and_divides_by_the_batch():
    logits = torch.tensor([[3.0, -3.0], [0.0, 0.0], [-1.0, 1.0]], requires_grad=True)
    rp = reliability_pseudo_loss(logits, theta=0.5)
    p0 = torch.softmax(torch.tensor([3.0, -3.0]), 0)
    w0 = entropy_weights(p0[None])[0]
    assert rp.labels.tolist() == [0, 0, 1]
    assert rp.mask.tolist() == [True, False, False]  # w = 0.97, 0, 0.47 (p = sigmoid(2))
    ce0 = math.log1p(math.exp(-6.0))
    assert rp.loss.item() == pytest.approx(w0.item() * ce0 / 3, rel=1e-4)  # float32 CE
    rp.loss.backward()
    assert logits.grad[1:].abs().max() == 0  # unselected samples get no gradient


# --- TriDistill -------------------------------------------------------------------------------
def test_tri_distill_is_symmetric_and_zero_only_for_identical_branches():
    torch.manual_seed(0)
    z = [torch.randn(6, 4) for _ in range(3)]
    values = [tri_distill_loss(*perm, temperature=2.0).item() for perm in itertools.permutations(z)]
    assert max(values) - min(values) < 1e-6 and values[0] > 0
    assert tri_distill_loss(z[0], z[0], z[0], temperature=2.0).item() == 0.0
    assert tri_distill_loss(z[0], z[0], z[1], temperature=2.0).item() > 0
    with pytest.raises(ValueError, match="temperature"):
        tri_distill_loss(*z, temperature=0.0)


def test_symmetric_distillation_matches_the_kl_formula():
    torch.manual_seed(1)
    a, b, t = torch.randn(5, 3), torch.randn(5, 3), 2.0
    pa, pb = torch.softmax(a / t, -1).double(), torch.softmax(b / t, -1).double()
    kl = lambda p, q: (p * (p / q).log()).sum(-1).mean()  # noqa: E731
    expected = 0.5 * (kl(pa, pb) + kl(pb, pa)) * t ** 2
    assert symmetric_distill_loss(a, b, t).item() == pytest.approx(expected.item(), rel=1e-5)
    c = 0.5 * a
    pairs = [symmetric_distill_loss(x, y, t).item() for x, y in ((a, b), (a, c), (b, c))]
    assert tri_distill_loss(a, b, c, temperature=t).item() == pytest.approx(sum(pairs) / 3, rel=1e-6)


def test_each_distillation_direction_has_a_detached_target():
    """With the target of each KL detached, d/dz_a of T^2 KL(p_b || p_a) / 2 is
    T (p_a - p_b) / (2 B); without detaching it would also include the other direction."""
    torch.manual_seed(2)
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3)
    t = 2.0
    symmetric_distill_loss(a, b, t).backward()
    pa, pb = torch.softmax(a.detach() / t, -1), torch.softmax(b / t, -1)
    torch.testing.assert_close(a.grad, t * (pa - pb) / (2 * 4))


# --- the network ------------------------------------------------------------------------------
@pytest.mark.parametrize("n_classes", [1, 2, 4])
def test_output_shapes_and_heads(n_classes):
    cfg = replace(TINY, n_classes=n_classes)
    mel, coch, _ = synthetic(3, cfg)
    model = MuseFuse(cfg).eval()
    out = model(mel, coch)
    assert set(out.head_logits()) == {"mel", "coch", "fused"}
    assert all(z.shape == (3, n_classes) for z in out.head_logits().values())
    assert out.z_mel.shape == out.z_coch.shape == (3, cfg.dim) and out.z_fuse.shape == (3, cfg.fusion_dim)
    assert MuseFuse.default_head == "fused" and set(MuseFuse.heads) >= {"mel", "coch", "fused", "ensemble"}
    probs = model.predict_proba(mel, coch)
    torch.testing.assert_close(probs["ensemble"], (probs["mel"] + probs["coch"] + probs["fused"]) / 3)
    if n_classes > 1:
        torch.testing.assert_close(probs["fused"].sum(-1), torch.ones(3))


def test_normalisation_makes_the_model_take_raw_features():
    torch.manual_seed(0)
    mel, coch, _ = synthetic(4)
    m_mean, m_std = torch.randn(TINY.n_mels), torch.rand(TINY.n_mels) + 0.5
    c_mean, c_std = torch.randn(TINY.n_coch), torch.rand(TINY.n_coch) + 0.5
    model = MuseFuse(TINY).eval()
    plain = model(mel, coch).logits_fused
    model.set_normalisation(m_mean, m_std, c_mean, c_std)
    raw = model(mel * m_std[:, None] + m_mean[:, None], coch * c_std[:, None] + c_mean[:, None])
    torch.testing.assert_close(raw.logits_fused, plain, rtol=1e-4, atol=1e-5)
    assert "norm.mel_mean" in model.state_dict()


def test_batched_equals_per_item_and_views_stay_separate():
    torch.manual_seed(0)
    model = MuseFuse(TINY).eval()
    mel, coch, _ = synthetic(5)
    out = model(mel, coch)
    single = torch.cat([model(mel[i:i + 1], coch[i:i + 1]).logits_fused for i in range(5)])
    torch.testing.assert_close(out.logits_fused, single, rtol=1e-5, atol=1e-6)
    # no cross-view attention: the Mel branch does not see the cochleagram
    other = model(mel, torch.randn_like(coch))
    torch.testing.assert_close(other.logits_mel, out.logits_mel)
    assert not torch.allclose(other.logits_coch, out.logits_coch)


def test_bad_input_shapes_are_named():
    model = MuseFuse(TINY)
    with pytest.raises(ValueError, match="mel must be"):
        model(torch.zeros(2, 5, TINY.n_frames), torch.zeros(2, TINY.n_coch, TINY.n_frames))
    with pytest.raises(ValueError, match="batch sizes"):
        model(torch.zeros(2, TINY.n_mels, TINY.n_frames), torch.zeros(3, TINY.n_coch, TINY.n_frames))


# --- the objective ----------------------------------------------------------------------------
def test_loss_is_finite_and_reaches_all_three_heads():
    model, obj = setup()
    mel, coch, y = synthetic(8)
    # a first step so that the prototypes exist and every term is live
    train_steps(model, obj, [Batch(mel, coch, y)])
    model.zero_grad()
    total, terms, logits = obj.loss(Batch(mel, coch, y))
    assert obj.terms == ("loss", "cls", "proto", "rp", "kd")
    assert terms.shape == (5,) and torch.isfinite(terms).all() and terms[2] > 0 and terms[4] > 0
    cfg = obj.cfg
    recomposed = terms[1] + cfg.w_proto * terms[2] + cfg.w_rp * terms[3] + cfg.w_kd * terms[4]
    assert terms[0].item() == pytest.approx(recomposed.item(), rel=1e-6)
    assert all(z.shape == (8, 2) for z in logits.values())
    total.backward()
    for part in (model.head_mel, model.head_coch, model.head_fused, model.embed_mel, model.embed_coch,
                 model.fusion):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0


def test_first_step_has_no_prototype_term_and_after_step_fills_the_banks():
    model, obj = setup()
    mel, coch, _ = synthetic(6)
    y = torch.tensor([0, 0, 0, 0, 0, 0])
    _, terms, _ = obj.loss(Batch(mel, coch, y))
    assert terms[2].item() == 0.0
    obj.after_step(Batch(mel, coch, y))
    for bank in obj.banks.values():
        assert bank.initialised.tolist() == [True, False]
    with pytest.raises(RuntimeError, match="before loss"):
        obj.after_step(Batch(mel, coch, y))


def test_unlabelled_batch_feeds_reliapseudo_only():
    model, obj = setup()
    model.eval()  # no dropout anyway; eval makes the two paths bit-comparable
    mel, coch, y = synthetic(5, seed=0)
    mel_u, coch_u, _ = synthetic(7, seed=1)
    assert obj.semi_supervised
    _, terms, logits = obj.loss(Batch(mel, coch, y, mel_u, coch_u))
    assert all(z.shape == (5, 2) for z in logits.values())
    assert obj._rp_count == 7
    expected = reliability_pseudo_loss(model(mel_u, coch_u).logits_fused, obj.theta).loss
    assert terms[3].item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-7)
    # Distillation runs on all 12 samples.
    out = model(torch.cat([mel, mel_u]), torch.cat([coch, coch_u]))
    kd = tri_distill_loss(out.logits_fused, out.logits_mel, out.logits_coch, temperature=2.0)
    assert terms[4].item() == pytest.approx(kd.item(), rel=1e-5)


def test_epoch_schedule_and_stats():
    model, obj = setup(epochs=5)
    assert obj.start_epoch(1) == {"rp_theta": pytest.approx(0.6)}
    mel, coch, y = synthetic(16)
    train_steps(model, obj, batches_of(mel, coch, y, 8, 1))
    stats = obj.epoch_stats()
    assert 0.0 <= stats["rp_mask_ratio"] <= 1.0 and 0.0 <= stats["rp_weight"] <= 1.0
    assert -1.0 <= stats["proto_sep"] <= 1.0
    assert obj.start_epoch(5) == {"rp_theta": pytest.approx(0.3)}
    assert math.isnan(obj.epoch_stats()["rp_mask_ratio"])  # reset at the epoch start


def test_state_dict_round_trip_restores_prototypes():
    model, obj = setup()
    mel, coch, y = synthetic(24)
    train_steps(model, obj, batches_of(mel, coch, y, 8, 1))
    buf = io.BytesIO()
    torch.save(obj.state_dict(), buf)
    buf.seek(0)
    fresh = MuseFuseObjective(model, obj.cfg, n_classes=2, device=CPU)
    fresh.load_state_dict(torch.load(buf))
    for b in ("mel", "coch", "fused"):
        assert torch.equal(fresh.banks[b].prototypes, obj.banks[b].prototypes)
        assert torch.equal(fresh.banks[b].initialised, obj.banks[b].initialised)
    model.eval()
    batch = Batch(mel[:8], coch[:8], y[:8])
    assert torch.equal(fresh.loss(batch)[1], obj.loss(batch)[1])
    wrong = MuseFuseObjective(MuseFuse(replace(TINY, n_classes=4)), obj.cfg, n_classes=4, device=CPU)
    with pytest.raises(ValueError, match="prototypes of the mel branch"):
        wrong.load_state_dict(obj.state_dict())


def test_learns_a_separable_task():
    model, obj = setup(seed=0)
    mel, coch, y = synthetic(256, seed=0)
    train_steps(model, obj, batches_of(mel, coch, y, 32, 4))
    mel_t, coch_t, y_t = synthetic(256, seed=1)
    model.eval()
    with torch.no_grad():
        pred = model.predict_proba(mel_t, coch_t)["fused"].argmax(-1)
    assert (pred == y_t).float().mean() > 0.9
    assert obj.banks["fused"].separation() < 0.5  # the two class prototypes have moved apart


def test_regression_trains_without_the_class_modules():
    cfg = replace(TINY, n_classes=1)
    model, obj = setup(cfg, regression=True, label="a")
    assert not obj.semi_supervised and obj.banks == {}
    mel, coch, y = synthetic(128, cfg, regression=True)
    mel_u, coch_u, _ = synthetic(8, cfg, seed=3, regression=True)
    history = train_steps(model, obj, [Batch(mel[i:i + 32], coch[i:i + 32], y[i:i + 32], mel_u, coch_u)
                                       for _ in range(5) for i in range(0, 128, 32)])
    assert torch.isfinite(history).all()
    assert (history[:, 2:] == 0).all()  # proto, rp, kd off
    assert history[-4:, 0].mean() < 0.5 * history[:4, 0].mean()
    assert obj.epoch_stats() == {} and obj.state_dict() == {"prototypes": {}}
    obj.load_state_dict(obj.state_dict())
