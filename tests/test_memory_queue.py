"""The SAML memory queue and its momentum key encoder (merkit.training.memory_queue)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from merkit.training.memory_queue import MemoryQueue, MomentumEncoder

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def rows(start, n, dim=3):
    """Distinguishable keys: row i points along a direction set by i."""
    i = torch.arange(start, start + n, dtype=torch.float32)[:, None]
    return torch.cat([i, torch.ones(n, 1), -i], dim=1)[:, :dim] + 0.5


def test_queue_fills_then_wraps_around():
    q = MemoryQueue(size=5, dim=3)
    assert q.valid.sum() == 0
    q.push(rows(0, 3), torch.tensor([0, 1, 0]))
    assert q.ptr.item() == 3 and q.filled.item() == 3
    assert q.valid.tolist() == [True, True, True, False, False]
    q.push(rows(3, 3), torch.tensor([1, 1, 1]))
    # 6 keys in 5 slots: the 6th overwrote slot 0, the pointer wrapped to 1
    assert q.ptr.item() == 1 and q.filled.item() == 5
    assert q.labels.tolist() == [1, 1, 0, 1, 1]
    torch.testing.assert_close(q.keys[0], F.normalize(rows(5, 1), dim=-1)[0])
    torch.testing.assert_close(q.keys[1], F.normalize(rows(1, 1), dim=-1)[0])


def test_keys_are_l2_normalised():
    q = MemoryQueue(size=8, dim=4)
    q.push(torch.randn(6, 4) * 10, torch.zeros(6, dtype=torch.long))
    torch.testing.assert_close(q.keys[:6].norm(dim=1), torch.ones(6))


def test_pushing_more_than_the_queue_equals_pushing_one_by_one():
    a, b = MemoryQueue(size=4, dim=3), MemoryQueue(size=4, dim=3)
    a.push(rows(0, 2), torch.tensor([0, 1]))
    b.push(rows(0, 2), torch.tensor([0, 1]))
    keys, labels = rows(2, 7), torch.arange(7) % 3
    a.push(keys, labels)
    for i in range(7):
        b.push(keys[i:i + 1], labels[i:i + 1])
    assert a.ptr.item() == b.ptr.item() == (2 + 7) % 4
    torch.testing.assert_close(a.keys, b.keys)
    assert torch.equal(a.labels, b.labels) and a.filled.item() == 4


def test_queue_state_round_trips_through_state_dict():
    a = MemoryQueue(size=6, dim=3)
    a.push(torch.randn(4, 3), torch.tensor([0, 1, 1, 0]))
    b = MemoryQueue(size=6, dim=3)
    b.load_state_dict(a.state_dict())
    for name in ("keys", "labels", "ptr", "filled"):
        assert torch.equal(getattr(a, name), getattr(b, name))


def test_queue_rejects_wrong_shapes():
    q = MemoryQueue(size=4, dim=3)
    with pytest.raises(ValueError, match=r"keys \(n, 3\)"):
        q.push(torch.randn(2, 5), torch.zeros(2, dtype=torch.long))


def test_queue_statistics():
    q = MemoryQueue(size=8, dim=2)
    assert q.stats(2)["queue_coverage"] == 0.0
    q.push(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))
    s = q.stats(2)
    assert s["queue_entropy"] == pytest.approx(1.0) and s["queue_coverage"] == 1.0
    assert s["queue_fill"] == 0.5
    s4 = q.stats(4)  # two of four classes, balanced: entropy log 2 / log 4
    assert s4["queue_entropy"] == pytest.approx(math.log(2) / math.log(4)) and s4["queue_coverage"] == 0.5
    q.push(torch.randn(8, 2), torch.zeros(8, dtype=torch.long))
    assert q.stats(2)["queue_entropy"] == pytest.approx(0.0) and q.stats(2)["queue_coverage"] == 0.5


def test_momentum_encoder_is_an_exponential_moving_average():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    online.register_buffer("stat", torch.zeros(2))
    key = MomentumEncoder(online, momentum=0.95)
    before = [p.detach().clone() for p in key.encoder.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
        online.stat.fill_(7.0)
    key.update(online)
    for pk, p0, p in zip(key.encoder.parameters(), before, online.parameters()):
        torch.testing.assert_close(pk, 0.95 * p0 + 0.05 * p)
        assert not pk.requires_grad
    assert torch.equal(key.encoder.stat, online.stat)  # buffers are copied, not averaged
    # k updates towards a fixed model close the gap by 0.95**k
    for _ in range(20):
        key.update(online)
    for pk, p0, p in zip(key.encoder.parameters(), before, online.parameters()):
        torch.testing.assert_close(p - pk, (p - p0) * 0.95 ** 21, rtol=1e-4, atol=1e-6)


def test_momentum_encoder_runs_without_dropout_even_in_train_mode():
    net = nn.Sequential(nn.Linear(3, 64), nn.Dropout(0.5))
    key = MomentumEncoder(net, momentum=0.9).train()
    x = torch.randn(5, 3)
    assert not key.encoder.training
    torch.testing.assert_close(key(x), key(x))


def test_queue_centroid_distances_known_answer():
    q = MemoryQueue(size=8, dim=2)
    # class 0 at (1, 0) and (0, 1): centroid (.5, .5), each key sqrt(.5) from it; class 1 at (-1, 0)
    q.push(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), torch.tensor([0, 0, 1]))
    s = q.stats(2)
    assert s["queue_dist_own"] == pytest.approx((2 * math.sqrt(0.5) + 0.0) / 3)
    # to the other centroid: (1,0)->(-1,0) = 2, (0,1)->(-1,0) = sqrt 2, (-1,0)->(.5,.5) = sqrt 2.5
    assert s["queue_dist_other"] == pytest.approx((2 + math.sqrt(2) + math.sqrt(2.5)) / 3)
    one = MemoryQueue(size=4, dim=2)
    one.push(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    assert one.stats(2)["queue_dist_own"] == 0.0 and math.isnan(one.stats(2)["queue_dist_other"])
