"""merkit export: the shipped model's network in ONNX gives torch's outputs (onnxruntime)."""
import json

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'merkit[onnx]')")


def test_export_matches_torch(tmp_path, capsys):
    import merkit
    from merkit.cli import main

    assert main(["export", "-o", str(tmp_path / "m.onnx")]) == 0
    side = json.loads((tmp_path / "m.onnx.json").read_text())
    model = merkit.load_model()
    net = model.net.float().eval()
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
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
    assert "largest difference" in capsys.readouterr().out
