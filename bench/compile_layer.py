"""Does ``torch.compile`` speed up one DSAF layer's training step on this CPU?

One :class:`merkit.models.blocks.DualViewLayer` at the paper's size (D = 128, H = 4, FFN x4,
dropout 0.1; 128 Mel and 84 cochleagram tokens), forward + backward of a batch, timed eager and
compiled with inductor's ``default`` and ``max-autotune`` modes (the latter may replace the
matrix products by C++ GEMM templates with fused epilogues). Variants are interleaved round by
round so that load on a shared machine hits them alike; medians and the ratios to eager are
reported. This isolates the layer from the rest of the training step (objective, optimiser,
key encoder) that ``bench/train_speed.py`` times as a whole. Freed memory is kept for reuse, as
merkit's Trainer does (:mod:`merkit.cpu_memory`).

    python bench/compile_layer.py [--batch 64] [--threads 1] [--rounds 7]

Writes bench/results/compile_layer.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from merkit.models.blocks import DualViewLayer  # noqa: E402
from merkit.cpu_memory import reuse_freed_memory  # noqa: E402
from merkit.training.run_files import write_json, write_text  # noqa: E402

MODES = ("default", "max-autotune")


def layer() -> DualViewLayer:
    torch.manual_seed(0)
    return DualViewLayer(128, 4, 4, 0.1)


def step(f, mel: torch.Tensor, coch: torch.Tensor) -> None:
    a, b = f(mel, coch)
    (a.square().mean() + b.square().mean()).backward()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    reuse_freed_memory()  # as merkit's Trainer does
    mel, coch = torch.randn(args.batch, 128, 128), torch.randn(args.batch, 84, 128)
    variants = {"eager": layer()}
    variants.update({f"compiled_{m}": torch.compile(layer(), mode=None if m == "default" else m) for m in MODES})
    first = {}
    for name, f in variants.items():  # warm-up; includes compilation
        t = time.perf_counter()
        step(f, mel, coch)
        first[name] = time.perf_counter() - t
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, f in variants.items():
            t = time.perf_counter()
            step(f, mel, coch)
            times[name].append(time.perf_counter() - t)
    eager = statistics.median(times["eager"])
    res = {"batch": args.batch, "threads": args.threads, "rounds": args.rounds, "torch": torch.__version__,
           "loadavg": list(os.getloadavg()),
           "variants": {k: {"median_s": statistics.median(v), "times_s": v, "first_s": first[k],
                            "speedup_over_eager": eager / statistics.median(v)} for k, v in times.items()}}
    rows = ["| variant | step (ms, median) | first step incl. compile (s) | speed-up over eager |",
            "|---|--:|--:|--:|"]
    rows += [f"| {k} | {v['median_s'] * 1e3:.1f} | {v['first_s']:.1f} | {v['speedup_over_eager']:.2f}x |"
             for k, v in res["variants"].items()]
    md = (f"# One DSAF layer, forward + backward (batch {args.batch}, {args.threads} thread(s), "
          f"torch {torch.__version__})\n\n" + "\n".join(rows) +
          f"\n\nLoad average during the run: {res['loadavg'][0]:.2f} (shared machine; the variants are "
          f"interleaved, so the ratios are the figure to read).\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "compile_layer.json", res)
    write_text(out / "compile_layer.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
