"""merkit export and `merkit predict --backend onnx`: onnxruntime gives torch's outputs."""
import contextlib
import importlib.util
import io
import json
import sys
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import melody
from merkit.cli import main

needs_ort = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                               reason="the onnx extra is not installed (pip install 'merkit[onnx]')")
SR = 44_100
ATOL = 1e-4  # the bound on the probabilities


def _cli(argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue()


@pytest.fixture(scope="module")
def shipped_export(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    rc, text = _cli(["export", "-o", str(path)])
    assert rc == 0
    return path, text


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """An 8 s clip (looped into the track window, one timeline window) and a 20 s one (3 windows)."""
    folder = tmp_path_factory.mktemp("songs")
    for name, seconds, seed in (("short.wav", 8.0, 1), ("long.wav", 20.0, 2)):
        sf.write(folder / name, melody(seconds, SR, seed=seed), SR)
    return folder


@pytest.fixture(scope="module")
def damer_run(tmp_path_factory):
    """A tiny DAMER trained by merkit.training.fit (one epoch) on features of the front end's shapes."""
    from test_training import TINY_MODEL, TINY_TRAIN, separable

    from merkit.training import fit

    fs = separable(100, n_mels=128, n_coch=84, n_frames=87)
    fs.mel -= 13.0  # near the level of real log-Mel energies
    run = tmp_path_factory.mktemp("run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(fs, TINY_MODEL, replace(TINY_TRAIN, epochs=1, label="quadrant"), run, progress=False)
    finally:
        torch.set_num_threads(threads)
    return run / "best.pt"


def _predict_json(tmp_path, name, argv) -> dict:
    out = tmp_path / f"{name}.json"
    rc, _ = _cli(["predict", *argv, "--timeline", "--format", "json", "-o", str(out), "--no-progress"])
    assert rc == 0
    return json.loads(out.read_text())


def _no_torch_forward(*args, **kwargs):
    raise AssertionError("a torch network ran under --backend onnx")


def _assert_same_predictions(a: dict, b: dict, fields, n_timeline: int = 1 + 3) -> None:
    """``n_timeline``: timeline entries of the two songs (20 s and 8 s): 10 s windows every 5 s give
    1 + 3; the shipped model's 2 Hz curve 40 + 16."""
    assert len(a["results"]) == len(b["results"]) == 2
    n_windows = 0
    for ra, rb in zip(a["results"], b["results"]):
        assert ra["ok"] and rb["ok"] and ra["path"] == rb["path"]
        rows_a, rows_b = [ra["prediction"]] + ra["timeline"], [rb["prediction"]] + rb["timeline"]
        assert len(rows_a) == len(rows_b)
        n_windows += len(ra["timeline"])
        for pa, pb in zip(rows_a, rows_b):
            assert (pa["start"], pa["quadrant"], pa["mood_cluster"]) == (pb["start"], pb["quadrant"], pb["mood_cluster"])
            for k in fields:
                if pa[k] is None and pb[k] is None:  # e.g. the band of the track row
                    continue
                np.testing.assert_allclose(pb[k], pa[k], rtol=0, atol=ATOL, err_msg=k)
            if pa["gems"]:  # rounded to 4 decimals: one rounding step apart at most
                np.testing.assert_allclose(list(pb["gems"].values()), list(pa["gems"].values()), rtol=0,
                                           atol=ATOL + 1e-9)
    assert n_windows == n_timeline


# -- the shipped (unified) model -------------------------------------------------------------------
@needs_ort
def test_export_heads_graph_matches_torch(shipped_export):
    import onnxruntime as ort

    import merkit

    path, text = shipped_export
    assert "largest difference" in text
    side = json.loads(path.with_name("m.onnx.json").read_text())
    assert side["kind"] == "unified" and side["source"] == {"shipped": True}
    assert side["graphs"] == {"heads": "m.onnx", "musicnn.frames": "m.musicnn.frames.onnx",
                              "musicnn.head": "m.musicnn.head.onnx"}
    assert side["io"]["musicnn.frames"]["inputs"]["log_mel"] == ["batch", "time", 96]
    assert side["max_abs_difference_to_torch"] <= side["check"]["tolerance"] == ATOL
    model = merkit.load_model()
    net = model.net.float().eval()
    sess = ort.InferenceSession(str(path))
    rng = np.random.default_rng(1)
    for batch in (1, 5, 33):  # dynamic batch
        x = (net.mean.numpy() + net.std.numpy() * rng.standard_normal((batch, net.cfg.input_dim))).astype(np.float32)
        got = dict(zip(side["outputs"], sess.run(None, {"x": x})))
        with torch.inference_mode():
            ref = net.predict(torch.from_numpy(x))
        for k in side["outputs"]:
            np.testing.assert_allclose(got[k], ref[k].numpy(), atol=1e-4)
        # the probabilities merkit prints, from the ONNX outputs and the sidecar's calibration
        a, b = side["calibration"]["valence"]
        p = 1 / (1 + np.exp(-(a * got["va"][:, 0] + b)))
        want = [f["valence"] for f in model.predict_inputs(x)]
        np.testing.assert_allclose(p, want, atol=1e-4)


@needs_ort
def test_encoder_graphs_dynamic_batch_and_time(shipped_export):
    """Batch 7 = 7 batches of 1 = torch, for patches of 187 frames and sequences of other lengths."""
    from merkit.encoders.musicnn import Musicnn, load_musicnn
    from merkit.onnx_backend import OnnxGraph, OnnxMusicnn

    path, _ = shipped_export
    frames = OnnxGraph(path.with_name("m.musicnn.frames.onnx"))
    head = OnnxGraph(path.with_name("m.musicnn.head.onnx"))
    net = load_musicnn()
    rng = np.random.default_rng(0)
    for batch, n_frames in ((7, 187), (2, 263)):  # a track's patches; a stretch of the timeline's frames
        x = (3.0 * rng.random((batch, n_frames, 96))).astype(np.float32)  # log10(1 + 1e4 x) spans ~0-4
        batched = frames(log_mel=x)["frames"]
        single = np.concatenate([frames(log_mel=x[i:i + 1])["frames"] for i in range(batch)])
        with torch.inference_mode():
            ref = net.frames(torch.from_numpy(x)).numpy()
        assert batched.shape == (batch, 753, n_frames)
        np.testing.assert_allclose(single, batched, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(batched, ref, rtol=1e-5, atol=1e-4)
        out = head(frames=ref)
        one = [head(frames=ref[i:i + 1]) for i in range(batch)]
        with torch.inference_mode():
            want = net.head(torch.from_numpy(ref))
        for k in ("penultimate", "mean_pool", "max_pool", "logits"):
            np.testing.assert_allclose(np.concatenate([o[k] for o in one]), out[k], rtol=0, atol=1e-5)
            np.testing.assert_allclose(out[k], getattr(want, k).numpy(), rtol=0, atol=1e-4, err_msg=k)
    # the stand-in swaps in and out of a loaded model's encoder
    import merkit

    model = merkit.load_model().use_onnx(path)
    enc = model._front(model.config.audio).encoders["musicnn"]
    assert isinstance(enc.model, OnnxMusicnn) and model.backend == "onnx"
    assert isinstance(model.use_torch()._front(model.config.audio).encoders["musicnn"].model, Musicnn)


@needs_ort
def test_predict_onnx_equals_torch_for_the_shipped_model(shipped_export, songs, tmp_path, monkeypatch):
    from merkit.encoders.musicnn import Musicnn
    from merkit.models.unified import UnifiedMER

    path, _ = shipped_export
    ref = _predict_json(tmp_path, "torch", [str(songs), "--backend", "torch"])
    with monkeypatch.context() as m:  # every network call goes to onnxruntime
        for cls, name in ((Musicnn, "frames"), (Musicnn, "head"), (UnifiedMER, "forward"), (UnifiedMER, "predict")):
            m.setattr(cls, name, _no_torch_forward)
        got = _predict_json(tmp_path, "onnx", [str(songs), "--backend", "onnx", "--model", str(path)])
    assert ref["model"]["description"].endswith("backend=torch)")
    assert got["model"]["description"].endswith("backend=onnx)")
    _assert_same_predictions(ref, got, ("valence", "arousal", "certainty", "quadrant_probs", "valence_score",
                                        "arousal_score", "valence_band", "arousal_band"), n_timeline=40 + 16)


# -- a DAMER network from `merkit train` -------------------------------------------------------------
@needs_ort
def test_predict_onnx_equals_torch_for_a_trained_damer(damer_run, songs, tmp_path, monkeypatch):
    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "cache"))
    ref = _predict_json(tmp_path, "torch", [str(songs), "--model", str(damer_run)])
    got = _predict_json(tmp_path, "onnx", [str(songs), "--model", str(damer_run), "--backend", "onnx"])
    _assert_same_predictions(ref, got, ("valence", "arousal", "certainty", "quadrant_probs", "view_agreement"))
    # exported into the cache on first use, and reused
    cached = list((tmp_path / "cache" / "onnx").glob("*/model.onnx"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    from merkit.models.damer import DAMER

    with monkeypatch.context() as m:  # the networks run in onnxruntime only
        m.setattr(DAMER, "forward", _no_torch_forward)
        again = _predict_json(tmp_path, "again", [str(songs / "short.wav"), "--model", str(damer_run),
                                                  "--backend", "onnx"])
    assert cached[0].stat().st_mtime_ns == stamp
    assert again["results"][0]["prediction"] == got["results"][1]["prediction"]  # short.wav sorts second


@pytest.fixture(scope="module")
def damer_export(damer_run, tmp_path_factory):
    """`merkit export` of a copy of the trained checkpoint: (export, checkpoint)."""
    folder = tmp_path_factory.mktemp("damer_export")
    (folder / "best.pt").write_bytes(damer_run.read_bytes())
    rc, text = _cli(["export", str(folder / "best.pt"), "-o", str(folder / "d.onnx")])
    assert rc == 0 and "largest difference" in text
    return folder / "d.onnx", folder / "best.pt"


@needs_ort
def test_damer_graph_dynamic_batch(damer_export):
    from merkit.onnx_backend import OnnxGraph
    from merkit.predict import load_model

    path, model_file = damer_export
    side = json.loads(path.with_name("d.onnx.json").read_text())
    assert side["kind"] == "networks" and side["tasks"] == {"quadrant": ["coch", "ensemble", "fused", "mel"]}
    assert side["source"] == {"files": [str(model_file.resolve())]}
    graph = OnnxGraph(path)
    net = load_model(model_file).networks["quadrant"]
    rng = np.random.default_rng(3)
    mel = (rng.normal(-8, 3, (7, 128, 87))).astype(np.float32)
    coch = (rng.normal(-3, 1, (7, 84, 87))).astype(np.float32)
    batched = graph(mel=mel, coch=coch)
    with torch.inference_mode():
        ref = net.predict_proba(torch.from_numpy(mel), torch.from_numpy(coch))
    for i in range(7):
        one = graph(mel=mel[i:i + 1], coch=coch[i:i + 1])
        for k in side["outputs"]:
            np.testing.assert_allclose(one[k], batched[k][i:i + 1], rtol=0, atol=1e-6)
    for k in side["outputs"]:
        np.testing.assert_allclose(batched[k], ref[k.split(".", 1)[1]].numpy(), rtol=0, atol=ATOL)


@needs_ort
def test_an_export_of_other_weights_is_refused(damer_export):
    from merkit.predict import load_onnx_model
    from merkit.predict import load_model
    from merkit.checkpoint import load_checkpoint, save_checkpoint

    path, model_file = damer_export
    assert load_onnx_model(path).backend == "onnx"
    original = model_file.read_bytes()
    ckpt = load_checkpoint(model_file)
    ckpt["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    save_checkpoint(model_file, ckpt)  # retrained since the export
    try:
        with pytest.raises(ValueError, match="export it again"):
            load_onnx_model(path)
    finally:
        model_file.write_bytes(original)
    with pytest.raises(ValueError, match="--backend onnx"):
        load_model(path)


# -- without onnxruntime -----------------------------------------------------------------------------
def test_missing_onnxruntime_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    sf.write(tmp_path / "a.wav", melody(3.0, SR), SR)
    assert main(["predict", str(tmp_path / "a.wav"), "--backend", "onnx", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "onnxruntime" in err and "pip install 'merkit[onnx]'" in err and "Traceback" not in err
    assert main(["export", "-o", str(tmp_path / "m.onnx")]) == 1
    assert "pip install 'merkit[onnx]'" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.onnx*"))


def test_auto_backend_is_onnxruntime_for_the_shipped_model_only(monkeypatch):
    """--backend auto (the default): onnxruntime for the shipped model on the CPU where it is
    installed, torch for a model file, another device, or without onnxruntime."""
    import importlib.util

    from merkit.commands.predict import resolve_backend

    have = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
    assert resolve_backend("auto", None) == ("onnx" if have else "torch")
    assert resolve_backend("auto", ["model.pt"]) == "torch"
    assert resolve_backend("auto", None, "cuda") == "torch"
    assert resolve_backend("torch", None) == "torch" and resolve_backend("onnx", ["m.pt"]) == "onnx"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert resolve_backend("auto", None) == "torch"
