"""merkit export [MODEL ...] -o model.onnx: a model's networks as ONNX graphs (dynamic batch).

For the unified model (the shipped one, ``merkit train --arch unified``) ``model.onnx`` is the
head network, as before: input (B, D) (musicnn's pooled embedding and the tonal summary, as
:meth:`merkit.predictors.unified.UnifiedModel._inputs` assembles them) to every head's raw output,
``va`` (scores), ``quadrant``, ``mirex``, ``gems`` (probabilities). Beside it are the encoder's
two graphs: ``model.musicnn.frames.onnx`` (log-Mel (B, T, 96) → mid-end frames (B, 753, T)) and
``model.musicnn.head.onnx`` (frames → penultimate, mean_pool, max_pool, logits); batch and time
are dynamic. For DAMER-style networks (``merkit train`` best.pt, one file per task)
``model.onnx`` maps mel (B, 128, T) and coch (B, 84, T) (T: the networks' frame count) to every
task's head probabilities.

``model.onnx.json`` holds what turns those into merkit's fields: the calibration, the front end,
the graphs' shapes, and the torch model they came from (``merkit predict --backend onnx --model
model.onnx`` reads it). Needs ``pip install 'merkit[onnx]'`` (onnx, onnxruntime); the export is
checked against torch (inputs drawn around the training statistics, and the reference signal end
to end) and refused beyond 1e-4 on any output (:mod:`merkit.onnx_backend`).
"""
from __future__ import annotations

from . import COMMANDS
from ._args import add_old_spelling

import argparse
from ..outputs import check_file


def register(sub) -> None:
    p = sub.add_parser("export", help=COMMANDS['export'], description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="*", default=None,
                   help="model file(s): a unified model, or `merkit train` best.pt files, one per task "
                        "(default: the shipped model)")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write (companion graphs beside it)")
    add_old_spelling(p, "--out", "output")
    p.add_argument("--force", action="store_true",
                   help="let -o replace another kind of merkit output (never anything merkit did not write)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..onnx_backend import _require_export_tools, export_model
    from ..predict import load_model

    from ..onnx_backend import sidecar_path

    inputs = list(args.model or [])
    check_file(args.output, flag="-o", kind="onnx", inputs=inputs, force=args.force)
    check_file(sidecar_path(args.output), flag="-o", kind="export", inputs=inputs, force=args.force)
    _require_export_tools()  # before loading anything
    model = load_model(args.model or None)
    side = export_model(model, args.output)
    checks = ", ".join(f"{k.replace('_', ' ')} {v:.1e}" for k, v in side["check"].items() if k != "tolerance")
    print(f"wrote {', '.join(side['graphs'].values())} (+ {args.output}.json) in the folder of {args.output}; "
          f"largest difference to torch {side['max_abs_difference_to_torch']:.1e} ({checks})")
    return 0
