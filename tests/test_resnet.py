"""CNN baselines (merkit.models.resnet): shapes, chunking, augmentation, learning, round trips."""
from dataclasses import asdict, replace

import pytest
import torch
import torch.nn.functional as F

from merkit.config import ModelConfig, TrainConfig
from merkit.models import load_model
from merkit.models.resnet import ResidualBlock, ResNetMER, ShortChunkResNet
from merkit.training.cnn_objective import CNNObjective
from merkit.training.augment import (MAX_FREQ_MASK_FRACTION, MAX_SHIFT_FRACTION, MAX_TIME_MASK_FRACTION,
                                     augment)
from merkit.checkpoint import make_checkpoint, save_checkpoint
from merkit.training.objective import Batch

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = ModelConfig(n_mels=32, n_coch=12, n_frames=30, width=4, chunk_frames=8, dropout=0.1)
MODELS = (ResNetMER, ShortChunkResNet)


def inputs(cfg, b=4, seed=0, t=None):
    g = torch.Generator().manual_seed(seed)
    t = cfg.n_frames if t is None else t
    return torch.randn(b, cfg.n_mels, t, generator=g), torch.randn(b, cfg.n_coch, t, generator=g)


def model_of(cls, cfg=TINY, seed=0):
    torch.manual_seed(seed)
    return cls(cfg).eval()


def objective_of(model, **train):
    cfg = TrainConfig(**train)
    return CNNObjective(model, cfg, n_classes=cfg.n_classes, device=torch.device("cpu"))


# -- shapes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("n_classes", [1, 2, 4])
def test_output_shapes(cls, n_classes):
    cfg = replace(TINY, n_classes=n_classes)
    model = model_of(cls, cfg)
    assert cls.heads == ("out",) and cls.default_head == "out"
    for mode in ("train", "eval"):
        getattr(model, mode)()
        out = model(*inputs(cfg, b=3))
        assert set(out.head_logits()) == {"out"}
        assert out.head_logits()["out"].shape == (3, n_classes)
        assert out.z.shape == (3, model.embed_dim)
    expected_embed = 8 * cfg.width if cls is ResNetMER else 4 * 2 * cfg.width
    assert model.embed_dim == expected_embed


def test_default_widths_follow_the_references():
    res, chunk = ResNetMER(ModelConfig()), ShortChunkResNet(ModelConfig())
    assert [s.conv2.out_channels for s in res.stages] == [64, 128, 256, 512]
    assert [b.conv2.out_channels for b in chunk.blocks] == [128, 128, 256, 256, 256, 256, 512]
    assert res.stem[0].kernel_size == (7, 7) and res.stem[0].stride == (2, 2)


def test_residual_block_shortcuts():
    x = torch.randn(2, 6, 9, 5)
    same = ResidualBlock(6, 6, 1)
    assert isinstance(same.shortcut, torch.nn.Identity)
    assert same(x).shape == (2, 6, 9, 5)
    down = ResidualBlock(6, 12, 2)
    assert down.shortcut[0].kernel_size == (1, 1) and down.shortcut[0].stride == (2, 2)
    assert down(x).shape == (2, 12, 5, 3)  # ceil(9 / 2), ceil(5 / 2)
    won = ResidualBlock(6, 6, (2, 1), shortcut_kernel=3)
    assert won.shortcut[0].kernel_size == (3, 3)
    assert won(x).shape == (2, 6, 5, 5)


def test_residual_block_with_a_silent_branch_is_relu_of_the_shortcut():
    block = ResidualBlock(3, 3, 1).eval()
    torch.nn.init.zeros_(block.bn2.weight)  # the residual branch now outputs exactly 0
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(block(x), F.relu(x))


def test_resnet_downsampling_keeps_frames():
    model = ResNetMER(ModelConfig())
    assert model.output_size(128, 87) == (4, 3)
    maps = []
    model.stages.register_forward_hook(lambda m, i, o: maps.append(o.shape))
    model.eval()(torch.randn(1, 128, 87), None)
    assert tuple(maps[0][2:]) == (4, 3)
    out = model(torch.randn(2, 128, 1), None)  # a single frame still yields a map, not an error
    assert out.logits.shape == (2, 2) and maps[-1][2:] == (4, 1)


def test_short_chunk_strides_stop_at_one_by_one():
    model = ShortChunkResNet(ModelConfig())
    strides = [b.conv1.stride for b in model.blocks]
    assert strides == [(2, 2)] * 4 + [(2, 1)] * 3  # 16 frames reach 1 after 4 halvings
    assert model.map_size == (1, 1)
    tiny = ShortChunkResNet(TINY)  # 32 bands reach 1 after 5 blocks, 8 frames after 3
    assert [b.conv1.stride for b in tiny.blocks] == [(2, 2)] * 3 + [(2, 1)] * 2 + [(1, 1)] * 2
    h = tiny.blocks(torch.randn(2, 1, 32, 8))
    assert h.shape[2:] == (1, 1)


# -- short-chunk inference ----------------------------------------------------------------------
def test_chunk_starts():
    model = ShortChunkResNet(ModelConfig())
    assert model.chunk_starts(87) == [0, 8, 16, 24, 32, 40, 48, 56, 64, 71]
    assert model.chunk_starts(80) == [0, 8, 16, 24, 32, 40, 48, 56, 64]
    assert model.chunk_starts(16) == model.chunk_starts(5) == [0]
    assert model.chunk_starts(17) == [0, 1]


def test_short_chunk_eval_is_the_mean_over_chunks():
    model = model_of(ShortChunkResNet)
    model.set_normalisation(torch.linspace(-1, 1, 32), torch.linspace(0.5, 2, 32),
                            torch.zeros(12), torch.ones(12))
    mel, coch = inputs(TINY, b=3)
    out = model(mel, coch)
    starts = model.chunk_starts(TINY.n_frames)
    assert len(starts) == 7  # 0, 4, ..., 20, then 22 flush with the end of 30 frames
    per_chunk = [model(mel[:, :, s:s + 8], coch[:, :, s:s + 8]) for s in starts]
    torch.testing.assert_close(out.logits, torch.stack([o.logits for o in per_chunk]).mean(0))
    torch.testing.assert_close(out.z, torch.stack([o.z for o in per_chunk]).mean(0))
    torch.testing.assert_close(model(mel, coch).logits, out.logits, rtol=0, atol=0)  # deterministic


def test_short_chunk_train_mode_draws_one_random_chunk():
    model = model_of(ShortChunkResNet).train()
    mel, coch = inputs(TINY, b=6)
    torch.manual_seed(3)
    a = model(mel, coch).logits
    torch.manual_seed(3)
    b = model(mel, coch).logits
    torch.manual_seed(4)
    c = model(mel, coch).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    # The same draw by hand: the chunk at each sample's start, through the network.
    torch.manual_seed(3)
    start = torch.randint(0, TINY.n_frames - 8 + 1, (6,))
    chunks = torch.stack([mel[i, :, s:s + 8] for i, s in enumerate(start.tolist())])
    torch.testing.assert_close(model.encode_chunks(chunks)[0], a)


def test_short_input_is_padded_with_the_band_mean():
    model = model_of(ShortChunkResNet, replace(TINY, dropout=0.0))  # no dropout draws in training
    mean = torch.linspace(-3, 3, 32)
    model.set_normalisation(mean, torch.full((32,), 2.0), torch.zeros(12), torch.ones(12))
    mel, coch = inputs(TINY, b=2, t=5)
    padded = torch.cat([mel, mean[None, :, None].expand(2, 32, 3)], dim=2)  # to the 8-frame chunk
    torch.testing.assert_close(model(mel, coch).logits, model(padded, None).logits)
    model.train()
    torch.manual_seed(0)
    train_out = model(mel, coch).logits  # a single possible chunk: no randomness
    torch.manual_seed(1)
    torch.testing.assert_close(model(mel, coch).logits, train_out)


# -- augmentation -------------------------------------------------------------------------------
def test_augmentation_is_off_without_augment_or_in_eval_mode():
    model = model_of(ShortChunkResNet)
    seen = []

    def spy(mel, coch):
        seen.append((mel, coch))
        return model(mel, coch)

    mel, coch = inputs(TINY)
    batch = Batch(mel, coch, torch.tensor([0, 1, 0, 1]))
    cfg = TrainConfig(augment=False)
    CNNObjective(model, cfg, n_classes=2, device=torch.device("cpu"), forward=spy).loss(batch)
    cfg = TrainConfig(augment=True)
    CNNObjective(model.eval(), cfg, n_classes=2, device=torch.device("cpu"), forward=spy).loss(batch)
    for m, c in seen:
        assert m is mel and c is coch
    model.train()
    CNNObjective(model, cfg, n_classes=2, device=torch.device("cpu"), forward=spy).loss(batch)
    assert not torch.equal(seen[-1][0], mel) and not torch.equal(seen[-1][1], coch)


def test_augmentation_shifts_and_masks_with_the_band_mean():
    cfg = replace(TINY, n_mels=64, n_frames=40)
    model = model_of(ResNetMER, cfg).train()
    mel_mean, coch_mean = -1.0 - torch.arange(64.0), -1.0 - torch.arange(12.0)  # < 0: unlike data
    model.set_normalisation(mel_mean, torch.ones(64), coch_mean, torch.ones(12))
    b, t = 64, cfg.n_frames
    # Each cell holds its own (band, frame) address, so a shifted cell tells by how much.
    mel = (1000 * torch.arange(64.0)[:, None] + torch.arange(float(t))).expand(b, 64, t).clone()
    coch = (1000 * torch.arange(12.0)[:, None] + torch.arange(float(t))).expand(b, 12, t).clone()
    torch.manual_seed(0)
    am, ac = augment(mel, coch, model.norm)
    torch.manual_seed(0)
    am2, _ = augment(mel, coch, model.norm)
    torch.testing.assert_close(am, am2, rtol=0, atol=0)  # a function of the global seed
    shifts, time_widths, freq_widths = set(), set(), set()
    for i in range(b):
        s = None
        for x, mean, n in ((am[i], mel_mean, 64), (ac[i], coch_mean, 12)):
            masked = x < 0
            assert torch.equal(x[masked], mean[:, None].expand_as(x)[masked])  # fill = band mean
            cols = masked.all(dim=0).nonzero().flatten()  # the time mask spans every band
            rows = (masked & ~masked.all(dim=0, keepdim=True)).any(dim=1).nonzero().flatten()
            for span, limit in ((cols, int(t * MAX_TIME_MASK_FRACTION)),
                                (rows, int(n * MAX_FREQ_MASK_FRACTION))):
                assert len(span) <= limit and (len(span) == 0 or span[-1] - span[0] == len(span) - 1)
            time_widths.add(len(cols))
            if n == 64:
                freq_widths.add(len(rows))
                mel_cols = cols
            else:
                assert torch.equal(cols, mel_cols)  # both views share the time mask
            kept = ~masked
            frame = x % 1000
            band = torch.div(x, 1000, rounding_mode="floor")
            assert torch.equal(band[kept], torch.arange(float(n))[:, None].expand_as(x)[kept])
            shift = (torch.arange(float(t)) - frame) % t  # frame t holds original frame t - s
            s = shift[kept][0] if s is None else s
            assert torch.all(shift[kept] == s)  # one circular shift per sample, both views
        s = int(s)
        s = s - t if s > t // 2 else s
        assert abs(s) <= int(t * MAX_SHIFT_FRACTION)
        shifts.add(s)
    # Over 64 samples the draws vary (each would be constant for a broken sampler).
    assert len(shifts) > 5 and len(time_widths) > 2 and len(freq_widths) > 2


# -- learning -----------------------------------------------------------------------------------
def separable(cfg, n=64, seed=0, regression=False):
    """Class 1 (or a larger target) = more energy in Mel bands 10-20 and coch channels 3-8."""
    g = torch.Generator().manual_seed(seed)
    mel, coch = torch.randn(n, cfg.n_mels, cfg.n_frames, generator=g), torch.randn(
        n, cfg.n_coch, cfg.n_frames, generator=g)
    if regression:
        y = torch.rand(n, generator=g) * 2 - 1
        level = 2 * y
    else:
        y = torch.arange(n) % 2
        level = 2.0 * y
    mel[:, 10:20] += level[:, None, None]
    coch[:, 3:8] += level[:, None, None]
    return mel, coch, y


def fit(model, objective, mel, coch, y, steps, lr=3e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        model.train()
        idx = torch.randperm(len(y))[:32]
        total, terms, _ = objective.loss(Batch(mel[idx], coch[idx], y[idx]))
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(terms[0]))
    return losses


@pytest.mark.parametrize("cls", MODELS)
def test_learns_a_separable_task(cls):
    cfg = replace(TINY, width=8)
    model = model_of(cls, cfg)
    mel, coch, y = separable(cfg)
    model.set_normalisation(mel.mean((0, 2)), mel.std((0, 2)), coch.mean((0, 2)), coch.std((0, 2)))
    torch.manual_seed(0)
    fit(model, objective_of(model), mel, coch, y, steps=40)
    with torch.no_grad():
        acc = (model.eval()(mel, coch).logits.argmax(-1) == y).float().mean()
    assert acc > 0.9


@pytest.mark.parametrize("cls", MODELS)
def test_regression_output_trains(cls):
    cfg = replace(TINY, width=8, n_classes=1)
    model = model_of(cls, cfg)
    mel, coch, y = separable(cfg, regression=True)
    model.set_normalisation(mel.mean((0, 2)), mel.std((0, 2)), coch.mean((0, 2)), coch.std((0, 2)))
    objective = objective_of(model, label="a", regression=True)
    assert objective.regression
    with torch.no_grad():
        before = F.mse_loss(model.eval()(mel, coch).logits.squeeze(-1), y)
    torch.manual_seed(0)
    fit(model, objective, mel, coch, y, steps=40)
    with torch.no_grad():
        after = F.mse_loss(model.eval()(mel, coch).logits.squeeze(-1), y)
    assert after < 0.5 * before and after < 0.5 * y.var()


# -- interface, errors, round trips -------------------------------------------------------------
@pytest.mark.parametrize("cls", MODELS)
def test_predict_proba(cls):
    model = model_of(cls, replace(TINY, n_classes=4))
    probs = model.predict_proba(*inputs(TINY))
    torch.testing.assert_close(probs["out"].sum(-1), torch.ones(4))
    assert probs["ensemble"] is probs["out"]


@pytest.mark.parametrize("cls", MODELS)
def test_bad_input_shapes_are_reported(cls):
    model = model_of(cls)
    mel, coch = inputs(TINY)
    with pytest.raises(ValueError, match=r"mel must be \(B, 32, T\)"):
        model(mel[:, :20], coch)
    with pytest.raises(ValueError, match="batch sizes differ"):
        model(mel, coch[:2])
    with pytest.raises(ValueError, match=r"coch must be \(B, 12, T\)"):
        model(mel, coch[:, :5])
    if cls is ShortChunkResNet:
        with pytest.raises(ValueError, match="batches of >= 2 samples"):
            model.train()(mel[:1], coch[:1])


@pytest.mark.parametrize("name,cls", [("resnet", ResNetMER), ("shortchunk", ShortChunkResNet)])
def test_load_model_round_trip(tmp_path, name, cls):
    cfg = replace(TINY, name=name)
    model = model_of(cls, cfg)
    model.set_normalisation(torch.rand(32), torch.rand(32) + 0.5, torch.rand(12), torch.rand(12) + 0.5)
    mel, coch = inputs(cfg)
    model.train()
    fit(model, objective_of(model), mel, coch, torch.tensor([0, 1, 0, 1]), steps=2)  # BN statistics move
    path = save_checkpoint(tmp_path / "m.pt", make_checkpoint(cfg.name, asdict(cfg), model.state_dict()))
    loaded = load_model(path)
    assert type(loaded) is cls and not loaded.training
    torch.testing.assert_close(loaded(mel, coch).logits, model.eval()(mel, coch).logits)
    torch.testing.assert_close(loaded.norm.mel_mean, model.norm.mel_mean)
