"""DAMER's architecture (merkit.models): shapes, two-path agreement, invariances, round trips."""
import math
from dataclasses import asdict, replace

import pytest
import torch
import torch.nn.functional as F

from merkit.config import ConfigError, ModelConfig
from merkit.models import build_model, head_probabilities, load_model
from merkit.models.blocks import (Dropout, DualViewLayer, attention, dropout_keep_mask, merge_heads,
                                   split_heads)
from merkit.checkpoint import make_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = ModelConfig(n_mels=12, n_coch=10, n_frames=6, dim=16, n_heads=4, n_layers=2, fusion_dim=24,
                   dropout=0.1)


def inputs(cfg, b=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, cfg.n_mels, cfg.n_frames, generator=g),
            torch.randn(b, cfg.n_coch, cfg.n_frames, generator=g))


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def model_of(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model("damer", cfg).eval()


@pytest.mark.parametrize("token_mode", ["band", "frame"])
@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("use_dsaf", [True, False])
def test_output_shapes(token_mode, n_classes, use_dsaf):
    cfg = replace(TINY, token_mode=token_mode, n_classes=n_classes, use_dsaf=use_dsaf)
    out = model_of(cfg)(*inputs(cfg, b=3))
    for z in (out.logits_mel, out.logits_coch, out.logits_fused):
        assert z.shape == (3, n_classes)
    assert out.z_mel.shape == out.z_coch.shape == (3, cfg.dim)
    assert out.z_fuse.shape == (3, cfg.fusion_dim)
    probs = head_probabilities(out)
    assert set(probs) == {"mel", "coch", "fused", "ensemble"}
    torch.testing.assert_close(probs["ensemble"].sum(-1), torch.ones(3))
    torch.testing.assert_close(probs["ensemble"], (probs["mel"] + probs["coch"] + probs["fused"]) / 3)


def test_token_counts_follow_the_token_mode():
    band = model_of(TINY)
    frame = model_of(replace(TINY, token_mode="frame"))
    assert band.embed_mel.n_tokens == 12 and band.embed_coch.n_tokens == 10
    assert frame.embed_mel.n_tokens == frame.embed_coch.n_tokens == 6
    assert band.embed_mel.proj.in_features == 6 and frame.embed_mel.proj.in_features == 12


def test_batched_equals_per_item():
    model = model_of(TINY)
    mel, coch = inputs(TINY, b=6)
    batched = model(mel, coch).logits_fused
    single = torch.cat([model(mel[i:i + 1], coch[i:i + 1]).logits_fused for i in range(6)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


def reference_layer(layer: DualViewLayer, h_mel, h_coch):
    """The same layer with attention written out as softmax(Q K^T / sqrt(d)) V."""
    def attend(q, k, v):
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        return w @ v

    parts = [[split_heads(t, layer.n_heads) for t in layer.qkv[i](h).chunk(3, -1)]
             for i, h in enumerate((h_mel, h_coch))]
    outs = []
    for i, h in enumerate((h_mel, h_coch)):
        src = 1 - i if layer.cross else i
        a = attend(parts[i][0], parts[src][1], parts[src][2])
        h = layer.norm_attn[i](h + layer.out[i](merge_heads(a)))
        outs.append(layer.norm_ffn[i](h + layer.ffn[i](h)))
    return outs


@pytest.mark.parametrize("cross", [True, False])
def test_attention_layer_matches_a_written_out_reference(cross):
    torch.manual_seed(1)
    layer = DualViewLayer(16, 4, 4, dropout=0.0, cross=cross).eval()
    h_mel, h_coch = torch.randn(3, 12, 16), torch.randn(3, 7, 16)
    got = layer(h_mel, h_coch)
    ref = reference_layer(layer, h_mel, h_coch)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


def test_band_order_does_not_matter_without_position_embedding():
    # Attention and mean pooling are permutation-equivariant/invariant over tokens.
    cfg = replace(TINY, pos_embedding=False)
    model = model_of(cfg)
    mel, coch = inputs(cfg)
    perm_m, perm_c = torch.randperm(cfg.n_mels), torch.randperm(cfg.n_coch)
    a = model(mel, coch)
    b = model(mel[:, perm_m], coch[:, perm_c])
    torch.testing.assert_close(a.logits_fused, b.logits_fused, rtol=1e-5, atol=1e-5)
    # with the band index embedding the model can tell the bands apart
    model_pos = model_of(TINY)
    a, b = model_pos(mel, coch), model_pos(mel[:, perm_m], coch[:, perm_c])
    assert not torch.allclose(a.logits_fused, b.logits_fused, atol=1e-4)


def test_dsaf_mixes_the_views_and_its_ablation_does_not():
    mel, coch = inputs(TINY)
    coch2 = coch + torch.randn_like(coch)
    dsaf = model_of(TINY)
    assert not torch.allclose(dsaf(mel, coch).z_mel, dsaf(mel, coch2).z_mel, atol=1e-4)
    sep = model_of(replace(TINY, use_dsaf=False))
    torch.testing.assert_close(sep(mel, coch).z_mel, sep(mel, coch2).z_mel)
    assert not torch.allclose(sep(mel, coch).z_fuse, sep(mel, coch2).z_fuse, atol=1e-4)
    # same size with and without DSAF (self-attention layers replace the cross-view ones)
    assert n_params(dsaf) == n_params(sep)


def test_stored_normalisation_is_applied_to_raw_features():
    model = model_of(TINY)
    mel, coch = inputs(TINY)
    mm, ms = torch.linspace(-2, 2, TINY.n_mels), torch.linspace(0.5, 3, TINY.n_mels)
    cm, cs = torch.linspace(1, 4, TINY.n_coch), torch.linspace(2, 1, TINY.n_coch)
    raw_mel, raw_coch = mel * ms[:, None] + mm[:, None], coch * cs[:, None] + cm[:, None]
    plain = model(mel, coch).logits_fused
    model.set_normalisation(mm, ms, cm, cs)
    torch.testing.assert_close(model(raw_mel, raw_coch).logits_fused, plain, rtol=1e-4, atol=1e-5)


def test_every_parameter_receives_a_gradient():
    model = model_of(TINY).train()
    out = model(*inputs(TINY))
    (out.logits_mel.sum() + out.logits_coch.sum() + out.logits_fused.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_wrong_input_shapes_are_reported():
    model = model_of(TINY)
    mel, coch = inputs(TINY)
    with pytest.raises(ValueError, match=r"mel must be \(B, 12, 6\)"):
        model(mel[:, :, :5], coch)
    with pytest.raises(ValueError, match="batch sizes differ"):
        model(mel, coch[:2])


def test_bad_configs_and_names_are_rejected():
    with pytest.raises(ConfigError):
        replace(TINY, dim=18)  # not divisible by 4 heads
    with pytest.raises(ConfigError):
        replace(TINY, token_mode="patch")
    with pytest.raises(ValueError, match="unknown model"):
        build_model("transformer9000", TINY)


def test_load_model_rebuilds_the_model_from_its_checkpoint(tmp_path):
    model = model_of(TINY)
    model.set_normalisation(torch.full((12,), 0.5), torch.full((12,), 2.0), torch.zeros(10), torch.ones(10))
    path = save_checkpoint(tmp_path / "m.pt", make_checkpoint("damer", asdict(TINY), model.state_dict()))
    loaded = load_model(path)
    assert not loaded.training and loaded.cfg == TINY
    mel, coch = inputs(TINY)
    torch.testing.assert_close(loaded(mel, coch).logits_fused, model(mel, coch).logits_fused)
    assert not (tmp_path / "m.pt.tmp").exists()


def test_load_model_reports_a_bad_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_model(bad)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")


def test_dropout_is_active_in_train_mode_only():
    model = model_of(TINY)
    mel, coch = inputs(TINY)
    torch.testing.assert_close(model(mel, coch).logits_fused, model(mel, coch).logits_fused)
    model.train()
    assert not torch.allclose(model(mel, coch).logits_fused, model(mel, coch).logits_fused)
    probs = model.eval().predict_proba(mel, coch)
    torch.testing.assert_close(probs["fused"], F.softmax(model(mel, coch).logits_fused, -1))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_fast_dropout_mask_drops_a_fraction_p_and_keeps_the_mean(p):
    torch.manual_seed(0)
    mask = dropout_keep_mask((1000, 1000), p, torch.float32)
    dropped = (mask == 0).float().mean().item()
    # 1e6 Bernoulli(p) draws: std sqrt(p (1 - p) / 1e6) <= 5e-4
    assert abs(dropped - p) < 3e-3
    kept = mask[mask != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - round(p * 2 ** 15) / 2 ** 15)))
    assert abs(mask.mean().item() - 1.0) < 5e-3


def test_fast_dropout_masks_are_independent_of_the_lane():
    """Each 64-bit draw feeds four elements; the top lane (sign bit always 0) must drop at the
    same rate as the others, and neighbours must not be correlated."""
    torch.manual_seed(1)
    keep = (dropout_keep_mask((250_000, 4), 0.25, torch.float32) != 0).float()
    assert torch.allclose(1 - keep.mean(0), torch.full((4,), 0.25), atol=4e-3)
    corr = torch.corrcoef(keep.t())
    assert (corr - torch.eye(4)).abs().max() < 0.01


def test_fast_dropout_is_seeded_has_the_mask_as_gradient_and_is_off_in_eval():
    drop = Dropout(0.3)
    x = torch.randn(64, 50, requires_grad=True)
    torch.manual_seed(3)
    y = drop(x)
    torch.manual_seed(3)
    assert torch.equal(drop(x), y)
    y.sum().backward()
    mask = torch.where(y != 0, y / x, torch.zeros(()))
    assert torch.allclose(x.grad, mask.detach(), atol=1e-5)
    drop.eval()
    assert drop(x) is x
    assert Dropout(0.0)(x) is x


def test_fast_dropout_option_keeps_the_state_dict_and_torch_dropout_stays_available():
    fast = build_model("damer", ModelConfig(n_mels=8, n_coch=6, n_frames=5, dim=16))
    slow = build_model("damer", ModelConfig(n_mels=8, n_coch=6, n_frames=5, dim=16, fast_dropout=False))
    assert fast.state_dict().keys() == slow.state_dict().keys()
    fast_drops = [m for m in fast.modules() if isinstance(m, Dropout)]
    slow_drops = [m for m in slow.modules() if isinstance(m, Dropout)]
    assert len(fast_drops) == len(slow_drops) > 0  # the check below sees every dropout, and some exist
    assert all(m.fast for m in fast_drops) and not any(m.fast for m in slow_drops)
    x = torch.randn(32, 16)
    torch.manual_seed(0)
    expected = F.dropout(x, 0.3, training=True)
    torch.manual_seed(0)
    assert torch.equal(Dropout(0.3, fast=False)(x), expected)


def test_cpu_attention_equals_torch_sdpa():
    torch.manual_seed(0)
    q = torch.randn(3, 4, 10, 8, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, 4, 7, 8, dtype=torch.float64, requires_grad=True)
    v = torch.randn(3, 4, 7, 8, dtype=torch.float64, requires_grad=True)
    # a strided query, as split_heads gives it
    q_strided = q.transpose(1, 2).contiguous().transpose(1, 2)
    ours = attention(q_strided, k, v)
    ref = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(ours, ref)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(ours, (q, k, v), g)
    ref_grads = torch.autograd.grad(ref, (q, k, v), g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)
