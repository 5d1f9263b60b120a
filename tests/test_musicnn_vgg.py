"""musicnn's VGG baselines: known answers from the original TensorFlow graphs
(tools/make_musicnn_vgg_fixture.py), the converted weights, and the encoder's shapes."""
import runpy
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from merkit.encoders import get_encoder
from merkit.encoders.musicnn import MSD_LABELS, MTT_LABELS, OnDevice
from merkit.encoders.musicnn_vgg import MODELS_PY_POOLS, MusicnnVgg, VggDims, load_musicnn_vgg
from test_musicnn import _musicnn_wheel

FIXTURE = Path(__file__).parent / "data" / "musicnn_vgg_reference.npz"
CHECKPOINTS = ["MSD_vgg", "MTT_vgg"]


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURE))


def _close(got, want):
    # maps reach a few units: compare relative to their scale, as tests/test_musicnn.py does
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max() + 1e-5


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
def test_port_reproduces_tensorflow(ref, checkpoint):
    model = load_musicnn_vgg(checkpoint)
    x = torch.from_numpy(ref["x"])
    with torch.no_grad():
        out = model(x)
        maps = [m.permute(0, 2, 3, 1).numpy() for m in model.pools(x)]  # TF's NHWC
    for key in ("taggram", "logits"):
        np.testing.assert_allclose(getattr(out, key).numpy(), ref[f"{checkpoint}/{key}"], rtol=0, atol=1e-4)
    _close(out.pool5.numpy(), ref[f"{checkpoint}/pool5"])
    _close(out.embedding.numpy(), ref[f"{checkpoint}/pool5"].max(axis=(1, 2)))
    _close(maps[0][0, ::8, ::8, ::8], ref[f"{checkpoint}/pool1"])
    _close(maps[2][0, :, :, ::4], ref[f"{checkpoint}/pool3"])
    # a real tagger: the two patches do not give the same tags
    assert np.abs(ref[f"{checkpoint}/taggram"][0] - ref[f"{checkpoint}/taggram"][1]).max() > 0.01


def test_msd_vgg_needs_its_stored_pooling(ref):
    """musicnn's models.py pools differently from MSD_vgg's stored graph; the weights load into
    both, but only the stored graph's pooling reproduces the checkpoint's outputs."""
    good = load_musicnn_vgg("MSD_vgg")
    assert good.dims.pools != MODELS_PY_POOLS
    assert load_musicnn_vgg("MTT_vgg").dims.pools == MODELS_PY_POOLS
    wrong = MusicnnVgg(VggDims(pools=MODELS_PY_POOLS)).eval()
    wrong.load_state_dict(good.state_dict())
    with torch.no_grad():
        logits = wrong(torch.from_numpy(ref["x"])).logits.numpy()
    assert np.abs(logits - ref["MSD_vgg/logits"]).max() > 0.1


def test_architecture():
    model = load_musicnn_vgg("MSD_vgg")
    assert sum(p.numel() for p in model.parameters()) == 605_748
    assert model.dims.pool5_shape == VggDims().pool5_shape == (2, 1)
    with pytest.raises(ValueError, match="log-Mel patches"):
        model(torch.zeros(1, 300, 96))  # the dense layer fixes the patch length
    with pytest.raises(ValueError, match="unknown musicnn VGG checkpoint"):
        load_musicnn_vgg("MSD_musicnn")
    assert not torch.equal(model.out.weight, load_musicnn_vgg("MTT_vgg").out.weight)


def test_on_device_stand_in(ref):
    """What --device cuda puts in the encoder (here on the CPU) answers like the module."""
    model = load_musicnn_vgg("MTT_vgg")
    x = torch.from_numpy(ref["x"])
    with torch.no_grad():
        a, b = model(x), OnDevice(model, torch.device("cpu"))(x)
    assert type(b).__name__ == "VggOutput"
    assert torch.equal(a.logits, b.logits) and torch.equal(a.embedding, b.embedding)


@pytest.mark.parametrize("name, labels", [("musicnn_vgg", MSD_LABELS), ("musicnn_vgg_mtt", MTT_LABELS)])
def test_encoder_embedding(name, labels):
    from conftest import melody

    enc = get_encoder(name)
    assert enc.name == name and enc.tag_names == labels and enc.sample_rate == 16000
    y = melody(12.2, 16000)  # -> 4 patches of 3 s
    e = enc.embed(y)
    assert e.sequence.shape == (enc.n_patches(len(y)), enc.seq_dim) == (4, 128)
    assert e.pooled.shape == (enc.dim,) == (256,) and e.pooled.dtype == np.float32
    np.testing.assert_allclose(e.pooled[:128], e.sequence.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(e.pooled[128:], e.sequence.std(0), rtol=1e-5, atol=1e-6)
    assert e.tags.shape == (4, 50) and ((e.tags >= 0) & (e.tags <= 1)).all()
    assert abs(e.hop_seconds - 187 * 256 / 16000) < 1e-9
    assert enc.embed(y[:8000]).sequence.shape == (1, 128)  # shorter than a patch: repeated
    assert enc.info()["encoder"] == name and enc.info()["dim"] == 256


def test_front_end_view_shapes():
    from merkit.frontend import FrontEnd

    shapes = FrontEnd(views="musicnn_vgg").row_shapes()  # the paper preset's 60 s window
    assert shapes["musicnn_vgg"] == (256,) and shapes["musicnn_vgg_seq"] == (20, 128)


def test_conversion_reproduces_shipped_weights(tmp_path):
    """tools/convert_musicnn.py's VGG mapping on the PyPI wheel gives exactly the shipped files."""
    wheel = _musicnn_wheel()
    if wheel is None:
        pytest.skip("musicnn-0.1.0 wheel not cached (pip download --no-deps musicnn==0.1.0)")
    from merkit.encoders.musicnn_vgg import POOLS
    from merkit.encoders.tf_bundle import read_bundle

    tool = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "convert_musicnn.py"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path, [n for n in z.namelist() if "_vgg/" in n])
    for name in CHECKPOINTS:
        model = MusicnnVgg(VggDims(pools=POOLS[name]))
        new = tool["convert_vgg"](read_bundle(tmp_path / "musicnn" / name), model)
        shipped = load_musicnn_vgg(name).state_dict()
        assert set(new) == set(shipped)
        for k in new:
            torch.testing.assert_close(new[k].to(shipped[k].dtype), shipped[k], rtol=0, atol=0)
