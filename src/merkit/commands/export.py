"""merkit export [MODEL] -o model.onnx: the unified model's network as ONNX (dynamic batch).

The file maps the network input (B, D) (musicnn's pooled embedding and the tonal summary, as
:meth:`merkit.predict_unified.UnifiedModel._inputs` assembles them) to every head's raw output:
``va`` (scores), ``quadrant``, ``mirex``, ``gems`` (probabilities). Beside it,
``model.onnx.json`` holds what turns those into merkit's fields: the calibration, the score
centres, the front end and the input layout. Needs ``pip install 'merkit[onnx]'`` (onnx,
onnxruntime); the export is checked against torch on inputs drawn around the training
statistics and refused beyond ``TOLERANCE``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

TOLERANCE = 1e-4


def register(sub) -> None:
    p = sub.add_parser("export", help="export the unified model's network to ONNX",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default=None, help="unified model file (default: the shipped model)")
    p.add_argument("-o", "--out", required=True, help="the .onnx file to write")
    p.set_defaults(func=run)


def export_unified(model, out: str | os.PathLike, *, check_rows: int = 256) -> float:
    """Write ``out`` (+ ``out.json``); returns the largest |onnx - torch| over the check inputs."""
    import numpy as np
    import torch

    try:
        import onnxruntime as ort
    except ImportError as e:
        raise RuntimeError("merkit export needs onnx and onnxruntime: pip install 'merkit[onnx]'") from e
    net = model.net.eval().float()
    heads = sorted(net.cfg.heads)

    class Heads(torch.nn.Module):
        def __init__(self, n):
            super().__init__()
            self.n = n

        def forward(self, x):
            o = self.n.predict(x)
            return tuple(o[h] for h in heads)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    x = net.mean[None] + net.std[None] * torch.randn(4, net.cfg.input_dim)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(Heads(net), (x,), str(tmp), input_names=["x"], output_names=heads,
                          dynamic_axes={"x": {0: "batch"}, **{h: {0: "batch"} for h in heads}}, dynamo=False)
    sess = ort.InferenceSession(str(tmp))
    g = torch.Generator().manual_seed(0)
    xc = (net.mean[None] + net.std[None] * torch.randn(check_rows, net.cfg.input_dim, generator=g)).float()
    got = sess.run(None, {"x": xc.numpy()})
    with torch.inference_mode():
        ref = net.predict(xc)
    worst = max(float(np.abs(a - ref[h].numpy()).max()) for a, h in zip(got, heads))
    if worst > TOLERANCE:
        tmp.unlink()
        raise ValueError(f"ONNX outputs differ from torch by {worst:.2e} > {TOLERANCE}; not exported")
    os.replace(tmp, out)
    side = {"inputs": list(net.cfg.inputs), "input_dim": net.cfg.input_dim, "outputs": heads,
            "calibration": {k: list(v) for k, v in model.calibration.items()},
            "predictor": model.config.to_dict(), "max_abs_difference_to_torch": worst,
            "fields": "P(positive valence) = sigmoid(a_v * va[:, 0] + b_v), P(high arousal) likewise with "
                      "va[:, 1]; quadrant probabilities = products of the two; valence_score = "
                      "tanh(va[:, 0] + b_v / a_v) (merkit.predict_unified)"}
    tmp = out.with_name(out.name + ".json.tmp")
    tmp.write_text(json.dumps(side, indent=2))
    os.replace(tmp, out.with_name(out.name + ".json"))
    return worst


def run(args) -> int:
    from ..predict import load_model
    from ..predict_unified import UnifiedModel

    model = load_model(args.model)
    if not isinstance(model, UnifiedModel):
        raise ValueError("merkit export handles unified model files (the shipped model, `merkit train --model unified`)")
    worst = export_unified(model, args.out)
    print(f"wrote {args.out} (+ {args.out}.json); largest difference to torch {worst:.1e}")
    return 0
