"""CPU kernels of a DAMER training step: merkit's choices against torch's, with and without
glibc keeping freed memory (:mod:`merkit.cpu_memory`).

At DAMER's training shapes (batch 256, 128 Mel tokens attending to 84 cochleagram tokens,
D = 128, H = 4), forward + backward, milliseconds (median of ``--repeats``):

* ``add``: an element-wise sum over a 256 x 128 x 512 FFN activation (67 MB), the page-fault
  cost alone;
* ``dropout``: ``F.dropout`` against :class:`merkit.models.blocks.Dropout` (p = 0.1) on a
  256 x 128 x 128 residual branch;
* ``attention``: ``F.scaled_dot_product_attention`` (its CPU flash kernel) against
  :func:`merkit.models.blocks.attention` (bmm, softmax, bmm).

Each memory setting runs in its own child process (``mallopt`` is process-wide), both in this
run, so the ratios compare like with like on a shared machine.

    python bench/cpu_kernels.py [--threads 2] [--repeats 9]

Writes bench/results/cpu_kernels.json and bench/results/cpu_kernels.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

B, H, N, M, D = 256, 4, 128, 84, 128
FFN = 4 * D
SETTINGS = {"glibc default": "0", "freed memory reused": "1"}


def measure(threads: int, repeats: int) -> dict[str, float]:
    """The kernels' times in this process (milliseconds)."""
    import torch
    import torch.nn.functional as F

    from merkit.models.blocks import Dropout, attention
    from merkit.cpu_memory import reuse_freed_memory

    torch.set_num_threads(threads)
    active = reuse_freed_memory()
    torch.manual_seed(0)
    d = D // H
    x_ffn = torch.randn(B, N, FFN)
    x = torch.randn(B, N, D, requires_grad=True)
    q = torch.randn(B, H, N, d, requires_grad=True)
    k = torch.randn(B, H, M, d, requires_grad=True)
    v = torch.randn(B, H, M, d, requires_grad=True)
    g_x, g_q = torch.randn_like(x), torch.randn_like(q)
    fast_drop = Dropout(0.1)

    def timed(fn) -> float:
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return 1e3 * statistics.median(times)

    return {
        "reuse_active": active,
        "add": timed(lambda: x_ffn + x_ffn),
        "dropout_torch": timed(lambda: F.dropout(x, 0.1, training=True).backward(g_x)),
        "dropout_merkit": timed(lambda: fast_drop(x).backward(g_x)),
        "attention_sdpa": timed(lambda: F.scaled_dot_product_attention(q, k, v).backward(g_q)),
        "attention_merkit": timed(lambda: attention(q, k, v).backward(g_q)),
    }


def markdown(res: dict) -> str:
    rows = ["| kernel (forward + backward) | " + " | ".join(SETTINGS) + " |",
            "|---|" + "--:|" * len(SETTINGS)]
    names = [("add", "element-wise add, 256 x 128 x 512 (forward only)"),
             ("dropout_torch", "dropout: `F.dropout`"), ("dropout_merkit", "dropout: merkit `Dropout`"),
             ("attention_sdpa", "attention: `F.scaled_dot_product_attention`"),
             ("attention_merkit", "attention: merkit `attention` (bmm, softmax, bmm)")]
    for key, label in names:
        rows.append(f"| {label} | " + " | ".join(f"{res[s][key]:.1f} ms" for s in SETTINGS) + " |")
    for a, b, label in (("dropout_torch", "dropout_merkit", "dropout speed-up"),
                        ("attention_sdpa", "attention_merkit", "attention speed-up")):
        rows.append(f"| {label} (torch / merkit) | "
                    + " | ".join(f"{res[s][a] / res[s][b]:.2f}x" for s in SETTINGS) + " |")
    return (f"# CPU kernels of a DAMER training step ({res['threads']} threads)\n\n"
            f"Batch {B}, {N} query tokens, {M} key tokens, D = {D}, H = {H}; median of "
            f"{res['repeats']} repeats; each column ran in its own process in the same run.\n\n"
            + "\n".join(rows) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.threads, args.repeats)))
        return 0
    res: dict = {"threads": args.threads, "repeats": args.repeats, "loadavg_before": list(os.getloadavg())}
    for setting, flag in SETTINGS.items():
        env = dict(os.environ, MERKIT_REUSE_FREED_MEMORY=flag)
        out = subprocess.run([sys.executable, __file__, "--child", "--threads", str(args.threads),
                              "--repeats", str(args.repeats)], env=env, check=True,
                             capture_output=True, text=True).stdout
        res[setting] = json.loads(out.strip().splitlines()[-1])
        print(setting, res[setting], flush=True)
    res["loadavg_after"] = list(os.getloadavg())
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    for name, text in (("cpu_kernels.json", json.dumps(res, indent=2)), ("cpu_kernels.md", markdown(res))):
        tmp = outdir / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, outdir / name)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
