"""Known answers for DAMER's loss terms (merkit.training.losses)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon

from merkit.training.losses import (classification_loss, js_divergence, js_divergence_probs,
                                    pseudo_label_loss, supervised_contrastive_loss,
                                    view_consistency_loss)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize("c", [2, 4, 7])
def test_js_of_a_distribution_with_itself_is_zero(gen, c):
    logp = F.log_softmax(torch.randn(64, c, generator=gen) * 3, -1)
    assert torch.allclose(js_divergence(logp, logp), torch.zeros(64), atol=1e-7)


def test_js_matches_scipy_and_the_probability_path(gen):
    p = torch.softmax(torch.randn(50, 4, generator=gen).double() * 2, -1)
    q = torch.softmax(torch.randn(50, 4, generator=gen).double() * 2, -1)
    ref = jensenshannon(p.numpy(), q.numpy(), axis=1) ** 2  # scipy returns sqrt(JS), natural log
    got_log = js_divergence(p.log(), q.log()).double().numpy()
    got_prob = js_divergence_probs(p, q).numpy()
    np.testing.assert_allclose(got_log, ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got_prob, ref, rtol=1e-10, atol=1e-12)
    # symmetric
    torch.testing.assert_close(js_divergence(q.log(), p.log()), js_divergence(p.log(), q.log()))


def test_js_is_bounded_by_log2_and_reaches_it_for_disjoint_supports(gen):
    js = js_divergence_probs(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    assert js.item() == pytest.approx(math.log(2))
    # four classes, disjoint supports: still log 2 (the bound does not grow with C)
    p = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    q = torch.tensor([[0.0, 0.0, 0.3, 0.7]])
    assert js_divergence_probs(p, q).item() == pytest.approx(math.log(2))
    # extreme logits: finite, within [0, log 2], and close to the bound
    big = torch.tensor([[60.0, -60.0]])
    js = js_divergence(F.log_softmax(big, -1), F.log_softmax(-big, -1))
    assert torch.isfinite(js).all() and js.item() == pytest.approx(math.log(2), abs=1e-6)
    logits = torch.randn(1000, 4, generator=gen) * 20
    js = js_divergence(F.log_softmax(logits, -1), F.log_softmax(logits.flip(0), -1))
    assert js.min() >= 0 and js.max() <= math.log(2)
    r = torch.exp(-js)
    assert r.min() >= 0.5 and r.max() <= 1.0


def test_view_consistency_is_zero_for_agreeing_views_and_has_gradients(gen):
    z = torch.randn(8, 2, generator=gen, requires_grad=True)
    assert view_consistency_loss(z, z.detach().clone(), tau=0.7).item() == pytest.approx(0.0, abs=1e-7)
    w = torch.randn(8, 2, generator=gen)
    loss = view_consistency_loss(z, w, tau=1.5)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_classification_loss_sums_the_three_heads():
    y = torch.tensor([0, 1, 3, 2])
    zero = torch.zeros(4, 4)
    assert classification_loss([zero, zero, zero], y).item() == pytest.approx(3 * math.log(4))
    heads = {"mel": torch.randn(4, 4), "coch": torch.randn(4, 4), "fused": torch.randn(4, 4)}
    expected = sum(F.cross_entropy(z, y) for z in heads.values())
    assert classification_loss(heads, y).item() == pytest.approx(expected.item())


def test_pseudo_label_loss_is_the_reliability_weighted_mean_over_selected():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    pseudo = torch.tensor([0, 1, 0])
    r = torch.tensor([0.9, 0.6, 1.0], requires_grad=True)
    mask = torch.tensor([True, True, False])
    ce = F.cross_entropy(logits.detach(), pseudo, reduction="none")
    expected = (0.9 * ce[0] + 0.6 * ce[1]) / 2
    loss = pseudo_label_loss(logits, pseudo, r, mask)
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert r.grad is None  # the reliability weights are constants
    assert logits.grad[2].abs().sum() == 0  # unselected samples get no gradient


def test_pseudo_label_loss_is_zero_when_nothing_is_selected():
    logits = torch.randn(5, 2, requires_grad=True)
    nothing = torch.zeros(5, dtype=torch.bool)
    loss = pseudo_label_loss(logits, torch.zeros(5, dtype=torch.long), torch.ones(5), nothing)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)


def test_contrastive_loss_known_answer():
    # one query, three keys: two positives (label 0), one negative; valid mask drops slot 3
    q = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]])
    key_labels = torch.tensor([0, 0, 1, 0])
    valid = torch.tensor([True, True, True, False])
    tau = 0.5
    s = torch.tensor([1.0, 0.0, -1.0]) / tau
    log_prob = s - torch.logsumexp(s, 0)
    expected = -(log_prob[0] + log_prob[1]) / 2  # the sum over positives divided by |P|
    got = supervised_contrastive_loss(q, torch.tensor([0]), keys, key_labels, valid, tau)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_contrastive_loss_is_lower_for_clustered_than_for_shuffled_features(gen):
    n, dim, c = 256, 16, 4
    labels = torch.arange(n) % c
    centres = F.normalize(torch.randn(c, dim, generator=gen), dim=-1)
    feats = F.normalize(centres[labels] + 0.2 * torch.randn(n, dim, generator=gen), dim=-1)
    q, k = feats[:64], feats[64:]
    qy, ky = labels[:64], labels[64:]
    valid = torch.ones(len(k), dtype=torch.bool)
    clustered = supervised_contrastive_loss(q, qy, k, ky, valid, 0.07)
    shuffled_ky = ky[torch.randperm(len(ky), generator=gen)]
    shuffled = supervised_contrastive_loss(q, qy, k, shuffled_ky, valid, 0.07)
    assert clustered.item() < 0.5 * shuffled.item()


def test_contrastive_loss_with_an_empty_queue_is_zero_and_finite():
    q = torch.randn(4, 8, requires_grad=True)
    keys = torch.zeros(16, 8)
    loss = supervised_contrastive_loss(q, torch.tensor([0, 1, 0, 1]), keys, torch.full((16,), -1),
                                       torch.zeros(16, dtype=torch.bool), 0.07)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(q.grad).all()
    # queries whose class is absent from the queue are left out of the mean
    keys = F.normalize(torch.randn(16, 8), dim=-1)
    loss = supervised_contrastive_loss(q, torch.tensor([0, 1, 2, 2]), keys, torch.zeros(16, dtype=torch.long),
                                       torch.ones(16, dtype=torch.bool), 0.07)
    only = supervised_contrastive_loss(q[:1], torch.tensor([0]), keys, torch.zeros(16, dtype=torch.long),
                                       torch.ones(16, dtype=torch.bool), 0.07)
    assert loss.item() == pytest.approx(only.item(), rel=1e-6)
