"""musicnn port: known answers from the original TensorFlow graph, the front end against
librosa, the checkpoint reader on a bundle written here, and the encoder's shapes."""
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tone
from merkit.encoders import get_encoder
from merkit.encoders.musicnn import (MSD_LABELS, Musicnn, MusicnnDims, MusicnnFrontEnd, load_musicnn,
                                     patches)
from merkit.encoders.tf_bundle import BundleError, list_bundle, masked_crc32c, read_bundle

FIXTURE = Path(__file__).parent / "data" / "musicnn_reference.npz"


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURE))


@pytest.mark.parametrize("checkpoint", ["MSD_musicnn", "MTT_musicnn"])
def test_port_reproduces_tensorflow(ref, checkpoint):
    """tools/make_musicnn_fixture.py ran the original TF graph on these patches."""
    model = load_musicnn(checkpoint)
    with torch.no_grad():
        out = model(torch.from_numpy(ref["x"]))
    for key in ("taggram", "logits", "penultimate"):
        np.testing.assert_allclose(getattr(out, key).numpy(), ref[f"{checkpoint}/{key}"], rtol=0, atol=1e-4)
    # pooled mid-end values reach ~100: compare relative to their scale
    for key in ("mean_pool", "max_pool"):
        want = ref[f"{checkpoint}/{key}"]
        assert np.abs(getattr(out, key).numpy() - want).max() <= 1e-5 * np.abs(want).max() + 1e-5
    want = ref[f"{checkpoint}/midend"]
    got = out.midend[0, ::8].numpy()
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max() + 1e-5
    # and it is a real tagger: the two patches do not give the same tags
    assert np.abs(ref[f"{checkpoint}/taggram"][0] - ref[f"{checkpoint}/taggram"][1]).max() > 0.01


def test_parameter_count_matches_the_paper_model():
    model = load_musicnn("MSD_musicnn")
    assert sum(p.numel() for p in model.parameters()) == 787_159
    assert model.dims.midend_channels == 753 and model.dims.frontend_channels == 561


def test_front_end_matches_librosa(ref):
    librosa = pytest.importorskip("librosa")
    y = ref["audio"]
    fe = MusicnnFrontEnd()
    spec = fe(y)
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96).T
    want = np.log10(1 + 10000 * mel.astype(np.float32))
    assert spec.shape == want.shape == (fe.n_frames(len(y)), 96)
    np.testing.assert_allclose(spec, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(spec[:374], ref["x"].reshape(-1, 96), rtol=0, atol=1e-5)
    # reflect padding, librosa's old default, changes the edge frames only
    spec_r = MusicnnFrontEnd(pad_mode="reflect")(y)
    want_r = np.log10(1 + 10000 * librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96, pad_mode="reflect").T.astype(np.float32))
    np.testing.assert_allclose(spec_r, want_r, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(spec_r[2:-2], spec[2:-2])


def test_front_end_tone_lands_in_its_band():
    from merkit.features.mel import hz_to_mel, mel_to_hz

    spec = MusicnnFrontEnd()(tone(1000.0, 2.0, 16000))
    edges = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(8000), 98))
    band = int(np.argmax(spec[10:-10].mean(0)))
    assert edges[band] < 1000 < edges[band + 2]
    assert np.isfinite(spec).all() and spec.min() >= 0  # log10(1 + x) of a power is >= 0


def test_float32_log_has_no_overflow():
    # musicnn's own float16 cast overflows for loud input; the port stays finite
    y = np.clip(tone(200.0, 1.0, 16000, amp=1.0) * 4, -1, 1)
    assert np.isfinite(MusicnnFrontEnd()(y)).all()


def test_patches_cut_and_pad():
    spec = np.arange(500 * 2, dtype=np.float32).reshape(500, 2)
    p = patches(spec, 187)
    assert p.shape == (2, 187, 2)  # the 126-frame tail is dropped, as musicnn's extractor does
    np.testing.assert_array_equal(p[1], spec[187:374])
    short = patches(spec[:50], 187)
    assert short.shape == (1, 187, 2)
    np.testing.assert_array_equal(short[0, 50:100], spec[:50])  # repeated, not zero-padded
    assert patches(spec, 187, hop=100).shape == (4, 187, 2)


def test_batched_equals_per_patch(ref):
    model = load_musicnn("MSD_musicnn")
    x = torch.from_numpy(ref["x"])
    with torch.no_grad():
        both = model(x).penultimate
        one = torch.cat([model(x[i:i + 1]).penultimate for i in range(len(x))])
    torch.testing.assert_close(both, one, rtol=0, atol=1e-5)


def test_encoder_embedding(ref):
    enc = get_encoder("musicnn")
    assert enc.tag_names == MSD_LABELS and enc.sample_rate == 16000
    y = np.tile(ref["audio"], 2)  # 12.2 s -> 4 patches of 3 s
    e = enc.embed(y)
    assert e.sequence.shape == (enc.n_patches(len(y)), enc.seq_dim) == (4, 200)
    assert e.pooled.shape == (enc.dim,) == (1906,)
    np.testing.assert_allclose(e.pooled[:200], e.sequence.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(e.pooled[200:400], e.sequence.std(0), rtol=1e-5, atol=1e-6)
    assert e.tags.shape == (4, 50) and ((e.tags >= 0) & (e.tags <= 1)).all()
    assert abs(e.hop_seconds - 187 * 256 / 16000) < 1e-9
    # a clip shorter than one patch still gives one embedding
    assert enc.embed(ref["audio"][:8000]).sequence.shape == (1, 200)


def test_mtt_checkpoint_differs():
    a = load_musicnn("MSD_musicnn").out.weight
    b = load_musicnn("MTT_musicnn").out.weight
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown musicnn checkpoint"):
        load_musicnn("nope")


# ---- the TF checkpoint reader, on a bundle written here ------------------------------------

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, wire, payload):
    tag = _varint(number << 3 | wire)
    if wire == 0:
        return tag + _varint(payload)
    if wire == 5:
        return tag + struct.pack("<I", payload)
    return tag + _varint(len(payload)) + payload


def _block(entries):
    """A LevelDB block: entries with key prefix compression, restarts, trailer."""
    out, prev = bytearray(), b""
    for key, value in entries:
        shared = 0
        while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
            shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        prev = key
    out += struct.pack("<I", 0) + struct.pack("<I", 1)  # one restart point at 0
    body = bytes(out) + b"\x00"  # no compression
    return body + struct.pack("<I", masked_crc32c(body))


def _write_bundle(prefix: Path, tensors: dict[str, np.ndarray]):
    data, entries = bytearray(), [(b"", _field(1, 0, 1))]  # header: num_shards = 1
    for name in sorted(tensors):
        a = np.asarray(tensors[name], order="C")  # (ascontiguousarray would make a scalar 1-d)
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        dtype = {np.dtype("float32"): 1, np.dtype("int64"): 9, np.dtype("float16"): 19}[a.dtype]
        shape = b"".join(_field(2, 2, _field(1, 0, d)) for d in a.shape)
        e = (_field(1, 0, dtype) + _field(2, 2, shape) + _field(4, 0, len(data))
             + _field(5, 0, len(raw)) + _field(6, 5, masked_crc32c(raw)))
        entries.append((name.encode(), e))
        data += raw
    table = bytearray()
    data_block = _block(entries)
    table += data_block
    index_handle = _varint(0) + _varint(len(data_block) - 5)
    index_block = _block([(entries[-1][0] + b"\xff", index_handle)])
    index_off = len(table)
    table += index_block
    meta_off = len(table)
    meta_block = _block([])
    table += meta_block
    footer = (_varint(meta_off) + _varint(len(meta_block) - 5)
              + _varint(index_off) + _varint(len(index_block) - 5))
    footer += b"\x00" * (40 - len(footer)) + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(str(prefix) + ".index").write_bytes(bytes(table) + footer)
    Path(str(prefix) + ".data-00000-of-00001").write_bytes(bytes(data))


def test_bundle_reader_round_trip(tmp_path, rng):
    tensors = {"conv2d/kernel": rng.standard_normal((7, 3, 1, 4)).astype(np.float32),
               "conv2d/bias": rng.standard_normal(4).astype(np.float32),
               "dense/kernel": rng.standard_normal((5, 2)).astype(np.float16),
               "global_step": np.array(12345, dtype=np.int64)}
    _write_bundle(tmp_path / "model.ckpt", tensors)
    got = read_bundle(tmp_path / "model.ckpt")
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)
    assert list_bundle(tmp_path / "model.ckpt.index")["conv2d/kernel"] == ("float32", (7, 3, 1, 4))
    assert set(read_bundle(tmp_path, names=["conv2d/bias"])) == {"conv2d/bias"}  # folder form


def test_bundle_reader_detects_corruption(tmp_path, rng):
    _write_bundle(tmp_path / "m", {"w": rng.standard_normal(64).astype(np.float32)})
    data = tmp_path / "m.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[10] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="checksum mismatch in tensor 'w'"):
        read_bundle(tmp_path / "m")
    assert read_bundle(tmp_path / "m", verify=False)["w"].shape == (64,)
    index = tmp_path / "m.index"
    raw = bytearray(index.read_bytes())
    raw[3] ^= 0xFF
    index.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="block checksum"):
        read_bundle(tmp_path / "m")
    (tmp_path / "x.index").write_bytes(b"not a table" * 10)
    with pytest.raises(BundleError, match="bad table magic"):
        read_bundle(tmp_path / "x")


def _musicnn_wheel():
    p = os.environ.get("MERKIT_MUSICNN_WHEEL")
    if p and Path(p).is_file():
        return Path(p)
    cache = Path(os.environ.get("MERKIT_CACHE", Path.home() / ".cache" / "merkit")) / "wheels"
    found = sorted(cache.glob("musicnn-0.1.0-*.whl"))
    return found[0] if found else None


def test_conversion_reproduces_shipped_weights(tmp_path):
    """tools/convert_musicnn.py on the PyPI wheel gives exactly the shipped state dicts (CI
    downloads the wheel into the cache; elsewhere the test needs MERKIT_MUSICNN_WHEEL)."""
    wheel = _musicnn_wheel()
    if wheel is None:
        pytest.skip("musicnn-0.1.0 wheel not cached (pip download --no-deps musicnn==0.1.0)")
    import runpy
    import sys

    tool = Path(__file__).resolve().parents[1] / "tools" / "convert_musicnn.py"
    argv = sys.argv
    sys.argv = [str(tool), str(wheel), "--out", str(tmp_path)]
    try:
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(tool), run_name="__main__")
        assert exit_.value.code == 0
    finally:
        sys.argv = argv
    for name in ("MSD_musicnn", "MTT_musicnn"):
        new = torch.load(tmp_path / f"{name}.pt", weights_only=True)["state_dict"]
        shipped = load_musicnn(name).state_dict()
        assert set(new) == set(shipped)
        for k in new:
            torch.testing.assert_close(new[k].to(shipped[k].dtype), shipped[k], rtol=0, atol=0)
    assert "Universitat Pompeu Fabra" in (tmp_path / "LICENSE").read_text()


def test_port_accepts_other_lengths():
    model = Musicnn(MusicnnDims()).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 300, 96))
    assert out.midend.shape == (1, 300, 753) and out.penultimate.shape == (1, 200)
    with pytest.raises(ValueError, match="log-Mel patches"):
        model(torch.zeros(1, 187, 64))


def test_pooling_shortcut_is_exact(ref):
    """Eval mode pools before BN/ReLU (valid for an affine BN); the layer-by-layer order gives
    the same numbers."""
    model = load_musicnn("MTT_musicnn")
    x = torch.from_numpy(ref["x"])
    with torch.no_grad():
        fast = model(x).penultimate
        model.training = True  # the top module only: its BN layers stay in eval mode
        slow = model(x).penultimate
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-5)


def test_frame_sequence_chunks_are_exact(ref):
    """Chunked frames (bounded memory) equal one pass over the whole signal."""
    enc = get_encoder("musicnn")
    y = np.tile(ref["audio"], 3)  # 18 s, ~1140 frames
    whole = enc.frame_sequence(y, chunk=10_000)
    # The same arithmetic up to summation order: oneDNN blocks a convolution differently for
    # inputs of different lengths, and each frame value sums thousands of float32 products, so
    # chunks agree to a few ulps of the largest value (measured: 5-7 ulps on AVX2 and AVX-512;
    # a fixed 1e-4 failed on AVX-512 for values up to ~120). A wrong chunk seam or overlap
    # moves values by O(1), far above this bound.
    tol = 32 * np.finfo(np.float32).eps * np.abs(whole).max()
    for chunk in (100, 333):
        np.testing.assert_allclose(enc.frame_sequence(y, chunk=chunk), whole, rtol=0, atol=tol)
    with torch.no_grad():
        direct = enc.model.frames(torch.from_numpy(enc.front_end(y))[None])[0].numpy()
    np.testing.assert_allclose(whole, direct, rtol=0, atol=tol)


def test_segment_embeddings_match_per_window_embeddings(ref):
    """Windows pooled from the shared frame sequence agree with running each window alone,
    up to the context at patch edges."""
    enc = get_encoder("musicnn")
    y = np.tile(ref["audio"], 3)
    frames = enc.frame_sequence(y)
    hop = enc.front_end.hop_length
    starts_s = [0.0, 3.0, 6.0]
    shared = enc.embed_segments(frames, [int(s * 16000 / hop) for s in starts_s], 187 * 2)
    for s, e in zip(starts_s, shared):
        alone = enc.embed(y[int(s * 16000):int(s * 16000) + 374 * hop])
        assert e.sequence.shape == alone.sequence.shape == (2, 200)
        assert np.corrcoef(e.pooled, alone.pooled)[0, 1] > 0.99
    # one window that is the whole signal of one patch: exactly the network on that patch
    one = enc.embed_segments(enc.frame_sequence(y[:187 * hop - 1]), [0], 187)[0]
    alone = enc.embed(y[:187 * hop - 1])
    np.testing.assert_allclose(one.sequence, alone.sequence, rtol=1e-4, atol=1e-4)


def test_top_tags_on_real_recordings(shared_data):
    """The tagger hears what the recordings are (Emotify: classical and rock excerpts)."""
    from merkit.audio import load_window
    from merkit.config import AudioConfig
    from merkit.frontend import FrontEnd

    fe = FrontEnd(AudioConfig(), views="musicnn,musicnn_mtt")
    tops = {}
    for genre in ("classical", "rock"):
        win, info = load_window(shared_data / "emotify" / "audio" / genre / "1.mp3", fe.audio)
        for name, enc in fe.encoders.items():
            tags = enc.embed(fe.encoder_input(win, info, enc)).tags.mean(0)
            tops[genre, name] = [enc.tag_names[i] for i in np.argsort(-tags)[:4]]
    assert "classical" in tops["classical", "musicnn_mtt"] and "strings" in tops["classical", "musicnn_mtt"]
    assert "rock" in tops["rock", "musicnn"] and "rock" in tops["rock", "musicnn_mtt"]
    assert "rock" not in tops["classical", "musicnn"] and "classical" not in tops["rock", "musicnn_mtt"]
