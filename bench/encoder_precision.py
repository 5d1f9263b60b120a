"""musicnn at lower precision on the CPU (issue 22: "int8 or fp16 where outputs stay within a
stated tolerance"): speed and how far the embedding moves, against float32 in the same run.

    python bench/encoder_precision.py [--clips 30]      # needs merkit[onnx] and the shared data

Patches: the 3 s log-Mel patches of the first ``--clips`` MIREX-like previews (real 30 s clips,
each heard once at musicnn's level), 9 per clip. Variants, each on the same patches, 9 at a time
(a clip's worth), 2 threads, best of 3:

* torch float32 (the reference) and torch with bfloat16 autocast (this CPU may have native
  bfloat16: ``lscpu`` flags are recorded);
* onnxruntime float32 (the graph ``merkit export`` writes for the encoder, as one graph here);
* onnxruntime int8, static quantisation (QDQ, per-channel weights, activations calibrated on
  the first half of the patches, measured on the second half).

Reported: milliseconds per clip (9 patches) and the largest change of the 200-d penultimate
embedding and of the 753-d mid-end mean pool (the pooled view's two parts) against torch
float32. Results: bench/results/encoder_precision.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED = Path(os.environ.get("MERKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
PER_CLIP = 9


def clip_patches(n: int) -> np.ndarray:
    """(n * 9, 187, 96) log-Mel patches of the first ``n`` MIREX-like previews."""
    from merkit.audio import load_window
    from merkit.encoders.musicnn import patches
    from merkit.predict import load_model

    model = load_model()
    front = model.front_end()
    enc = front.encoders["musicnn"]
    out = []
    for f in sorted((SHARED / "mirex_mood" / "audio").glob("*.opus"))[:n]:
        win, info = load_window(f, model.config.audio)
        p = patches(enc.front_end(front.encoder_input(front.heard_once(win, info), info, enc)), enc.patch_frames)
        out.append(np.resize(p, (PER_CLIP,) + p.shape[1:]))  # 9 per clip (a 29 s clip has 9)
    return np.concatenate(out).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=30)
    args = ap.parse_args(argv)
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                          quantize_static)
    from torch import nn

    from merkit.encoders.musicnn import load_musicnn

    torch.set_num_threads(2)
    x = clip_patches(args.clips)
    half = (len(x) // 2) // PER_CLIP * PER_CLIP
    calib, test = x[:half], x[half:]

    class Pooled(nn.Module):  # the two parts of the pooled view, per patch
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, p):
            o = self.m(p)
            return o.penultimate, o.mean_pool

    net = Pooled(load_musicnn()).eval()

    class Calib(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"x": calib[i:i + PER_CLIP]} for i in range(0, len(calib), PER_CLIP))

        def get_next(self):
            return next(self.it, None)

    def session(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return lambda p: s.run(None, {"x": p})

    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        tmp = Path(tmp)
        torch.onnx.export(net, torch.from_numpy(x[:PER_CLIP]), str(tmp / "f32.onnx"), input_names=["x"],
                          output_names=["pen", "mid"], dynamic_axes={"x": {0: "b"}}, opset_version=17, dynamo=False)
        quant_pre_process(str(tmp / "f32.onnx"), str(tmp / "pre.onnx"))
        quantize_static(str(tmp / "pre.onnx"), str(tmp / "int8.onnx"), Calib(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)

        def bf16(p):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return [t.float().numpy() for t in net(torch.from_numpy(p))]

        variants = {"torch float32": lambda p: [t.numpy() for t in net(torch.from_numpy(p))],
                    "torch bfloat16 autocast": bf16,
                    "onnxruntime float32": session(tmp / "f32.onnx"),
                    "onnxruntime int8 (static, QDQ)": session(tmp / "int8.onnx")}
        ref = variants["torch float32"](test)
        rows = {}
        for name, fn in variants.items():
            fn(test[:PER_CLIP])
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                for i in range(0, len(test), PER_CLIP):
                    fn(test[i:i + PER_CLIP])
                best = min(best, (time.perf_counter() - t) / (len(test) / PER_CLIP))
            out = fn(test)
            rows[name] = {"ms_per_clip": 1000 * best,
                          "max_change_penultimate": float(np.abs(np.asarray(out[0]) - ref[0]).max()),
                          "max_change_mid_mean": float(np.abs(np.asarray(out[1]) - ref[1]).max())}
            print(name, rows[name], flush=True)
    flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    simd = sorted({f for f in flags.split() if f.startswith(("avx512", "avx2", "amx"))})
    record = {"date": time.strftime("%Y-%m-%d"), "clips": args.clips, "test_patches": int(len(test)),
              "embedding_scale": {"penultimate_max_abs": float(np.abs(ref[0]).max()),
                                  "mid_mean_max_abs": float(np.abs(ref[1]).max())},
              "cpu_flags": simd, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "encoder_precision.json").write_text(json.dumps(record, indent=2) + "\n")
    base = rows["torch float32"]["ms_per_clip"]
    lines = ["# musicnn at lower precision (bench/encoder_precision.py)", "",
             f"{len(test) // PER_CLIP} real 30 s clips (MIREX-like previews), 9 patches each; 2 threads; best of 3; "
             f"CPU flags: {', '.join(simd)}. Largest change against torch float32; the embedding's own largest "
             f"values are {record['embedding_scale']['penultimate_max_abs']:.2f} (penultimate) and "
             f"{record['embedding_scale']['mid_mean_max_abs']:.2f} (mid-end mean).", "",
             "| variant | ms per clip | × torch float32 | penultimate change | mid-end mean change |",
             "|---|--:|--:|--:|--:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['ms_per_clip']:.0f} | {r['ms_per_clip'] / base:.2f} | "
                     f"{r['max_change_penultimate']:.2g} | {r['max_change_mid_mean']:.2g} |")
    (RESULTS / "encoder_precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
