"""Every fast path of training equals the straightforward one: multi-tensor Adam and EMA,
``torch.compile`` (and its fallback), and the position-embedding initialisation's purpose."""
import copy
import logging
from dataclasses import replace

import pytest
import torch
from torch import nn

from merkit.config import ModelConfig, TrainConfig
from merkit.models import build_model
from merkit.training.loop import CompiledOrEager, Trainer, band_statistics
from merkit.training.objective import Batch

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = ModelConfig(n_mels=12, n_coch=10, n_frames=6, dim=16, n_heads=2, n_layers=1, fusion_dim=24,
                   dropout=0.0)
# float32 (cpu_amp off): the hand-written reference steps below are float32
TRAIN = TrainConfig(cpu_amp=False, epochs=4, batch_size=8, queue_size=16, lr=3e-3)


def batch(b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, TINY.n_mels, TINY.n_frames, generator=g) * 3 + 1,
            torch.randn(b, TINY.n_coch, TINY.n_frames, generator=g) - 2,
            torch.randint(0, 2, (b,), generator=g))


def trainer(cfg=TRAIN, mcfg=TINY):
    torch.manual_seed(0)
    model = build_model("damer", mcfg)
    mel, coch, _ = batch(32, seed=9)
    model.set_normalisation(**band_statistics(mel, coch))
    t = Trainer(model, cfg, device=torch.device("cpu"), n_classes=2)
    t.objective.tau, t.objective.theta = 1.0, 0.5
    return t


def test_multi_tensor_adam_and_ema_equal_the_per_parameter_updates():
    fast = trainer()
    slow_model = copy.deepcopy(fast.model)
    slow_key = copy.deepcopy(fast.objective.key_encoder.encoder)
    slow_opt = torch.optim.Adam(slow_model.parameters(), lr=TRAIN.lr, weight_decay=TRAIN.weight_decay,
                                foreach=False)
    mel, coch, y = batch()
    for _ in range(3):
        fast.step(Batch(mel, coch, y))
    # the same three steps written per parameter (same losses: the queue state is replayed)
    queue = copy.deepcopy(trainer().objective.queue)
    from merkit.training.losses import (classification_loss, pseudo_label_loss, supervised_contrastive_loss,
                                        view_consistency_loss)
    from merkit.training.pseudo_labels import select_pseudo_labels
    for _ in range(3):
        out = slow_model(mel, coch)
        pl = select_pseudo_labels(out.logits_mel, out.logits_coch, out.logits_fused, tau=1.0, theta=0.5)
        loss = (classification_loss(out.head_logits(), y)
                + TRAIN.w_pl * pseudo_label_loss(out.logits_fused, pl.labels, pl.reliability, pl.mask)
                + TRAIN.w_js * view_consistency_loss(out.logits_mel, out.logits_coch, 1.0)
                + TRAIN.w_cont * supervised_contrastive_loss(out.z_fuse, y, queue.keys, queue.labels,
                                                             queue.valid, TRAIN.cont_tau))
        slow_opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(slow_model.parameters(), TRAIN.grad_clip, foreach=False)
        slow_opt.step()
        with torch.no_grad():
            for pk, p in zip(slow_key.parameters(), slow_model.parameters()):
                pk.mul_(TRAIN.key_momentum).add_((1 - TRAIN.key_momentum) * p)
            queue.push(slow_key(mel, coch).z_fuse, y)
    def comparable(named):
        # The key bias (rows D..2D of a fused QKV bias) shifts every score of a query equally,
        # so softmax makes its true gradient 0; Adam scales the rounding noise left there up to
        # full steps of random sign. Every other parameter must agree.
        d = TINY.dim
        return {n: (torch.cat([p[:d], p[2 * d:]]) if n.endswith(("qkv.0.bias", "qkv.1.bias")) else p)
                for n, p in named}

    for model_a, model_b in ((fast.model, slow_model), (fast.objective.key_encoder.encoder, slow_key)):
        a, b = comparable(model_a.named_parameters()), comparable(model_b.named_parameters())
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(fast.objective.queue.keys, queue.keys, rtol=1e-5, atol=1e-6)


class Broken(nn.Module):
    def forward(self, x):
        if x.ndim != 2:
            raise ValueError("x must be 2-D")
        return x * 2


def test_compile_failure_falls_back_to_eager_once(monkeypatch, caplog):
    def failing_compile(module, **kw):
        def run(*args):
            raise RuntimeError("no C compiler")
        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    f = CompiledOrEager(Broken())
    with caplog.at_level(logging.WARNING):
        torch.testing.assert_close(f(torch.ones(2, 3)), torch.full((2, 3), 2.0))
    assert f.compiled is None and "no C compiler" in caplog.text
    torch.testing.assert_close(f(torch.ones(1, 1)), torch.full((1, 1), 2.0))


def test_bad_input_is_reported_not_mistaken_for_a_compile_failure(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module, **kw: module)  # "compiled" = eager
    f = CompiledOrEager(Broken())
    with pytest.raises(ValueError, match="2-D"):
        f(torch.ones(3))
    assert f.compiled is not None  # a genuine input error keeps the compiled path


@pytest.mark.slow
def test_compiled_training_steps_equal_eager_ones():
    # dropout 0: the compiled graph draws its dropout masks from its own generator
    eager, compiled = trainer(), trainer(replace(TRAIN, compile=True))
    assert isinstance(compiled.objective.forward, CompiledOrEager)
    mel, coch, y = batch()
    for _ in range(2):
        te, _ = eager.step(Batch(mel, coch, y))
        tc, _ = compiled.step(Batch(mel, coch, y))
        torch.testing.assert_close(te, tc, rtol=1e-4, atol=1e-5)
    assert compiled.objective.forward.compiled is not None  # it really ran compiled
    for a, b in zip(eager.model.parameters(), compiled.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(eager.objective.queue.keys, compiled.objective.queue.keys, rtol=1e-4, atol=1e-5)


def test_position_embedding_lets_mean_pooling_see_which_band_is_loud():
    # Two inputs that differ only in which band carries the energy: mean pooling of band tokens
    # without a position embedding cannot tell them apart (the token projection is linear and
    # shared); with the unit-scale position embedding the untrained model already does.
    cfg = replace(TINY, n_layers=1)
    loud_low = torch.zeros(1, cfg.n_mels, cfg.n_frames)
    loud_low[:, 0] = 3.0
    loud_high = torch.zeros(1, cfg.n_mels, cfg.n_frames)
    loud_high[:, -1] = 3.0
    coch = torch.zeros(1, cfg.n_coch, cfg.n_frames)
    for pos, differ in ((False, False), (True, True)):
        torch.manual_seed(0)
        model = build_model("damer", replace(cfg, pos_embedding=pos)).eval()
        a, b = model(loud_low, coch).z_mel, model(loud_high, coch).z_mel
        assert (not torch.allclose(a, b, atol=1e-3)) == differ
        if differ:  # and not by a rounding margin: the embeddings differ at the scale of z
            assert (a - b).norm() > 0.05 * a.norm()
