"""DAMER training speed at Memo2496 scale on the CPU, against the GEMM peak and a naive reference.

Measures, in one process and on the same synthetic data (1 747 training tracks of 128 x 87 Mel
+ 84 x 87 cochleagram, the size of Memo2496's 70 % training part; batch 256; the paper's
D = 128, L = 2, H = 4; full objective: 3-head CE + PCL + JS + memory contrastive with the EMA
key encoder):

* ``gemm``: the fp32 matrix-product peak, the median of ``GEMM_REPEATS`` 4096 x 4096 products;
* ``naive``: a straightforward PyTorch DAMER epoch kept in this script (``nn.MultiheadAttention``,
  ``nn.Sequential`` FFN, per-parameter EMA loop, the same maths as merkit's), run first, with
  glibc's default memory handling;
* ``merkit``: :meth:`merkit.training.loop.Trainer.train_epoch` eager (freed memory kept for
  reuse, merkit's CPU dropout and attention: ``bench/cpu_kernels.py``), without the key encoder,
  and with ``TrainConfig(compile=True)`` (compile time reported separately);
* on a CPU with native bfloat16 matrix products (AVX512-BF16 or AMX) also
  ``merkit_eager_cpu_bf16`` (``--cpu-amp``: bfloat16 autocast of the forward passes), with the
  bfloat16 GEMM peak beside the float32 one (``--cpu-amp`` is the default on such CPUs; the
  headline figures are float32, ``--no-cpu-amp``, comparable across machines).

Achieved FLOP/s uses the analytic count of :func:`train_flops_per_track` (matrix products only;
elementwise work is not counted, so the ratio to the GEMM peak is a lower bound of efficiency).
Other people share the machine: every figure is a median of several epochs, the ratios are taken
within this run, and the load average is recorded.

    python bench/train_speed.py [--epochs 3] [--threads 2] [--no-naive] [--no-compile]

Writes bench/results/train_speed.json and bench/results/train_speed.md.

``--device cuda`` times the same DAMER epoch on a GPU instead (:func:`device_main`): float32,
mixed precision (bfloat16 autocast, or float16 with loss scaling where bfloat16 is missing,
as ``TrainConfig(amp=True)`` trains) and compiled mixed precision, against merkit's float32
epoch on all the machine's CPU cores in the same run; and the musicnn encoder's throughput in
60 s tracks per second (20 patches of 187 x 96 per track), float32 and bfloat16, GPU and CPU.
Writes bench/results/train_speed_cuda.{json,md}.

    python bench/train_speed.py --device cuda [--epochs 5]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from merkit.config import ModelConfig, TrainConfig  # noqa: E402
from merkit.models import build_model  # noqa: E402
from merkit.training.loop import Part, Trainer, band_statistics, cpu_has_native_bf16  # noqa: E402

# Memo2496 (paper §III-B): 2 496 tracks, 70 / 30 split -> 1 747 training tracks.
N_TRAIN = 1747
N_MELS, N_COCH, N_FRAMES = 128, 84, 87  # paper §III-C
BATCH = 256  # paper §V-A
GEMM_N = 4096  # large enough that MKL runs at its peak on 2 cores
GEMM_REPEATS = 5


# -- the analytic FLOP count ------------------------------------------------------------------------
def forward_flops_per_track(m: ModelConfig) -> dict[str, int]:
    """Matrix-product FLOPs (2 per multiply-add) of one DAMER forward pass for one track.

    Per view with ``N`` band tokens (N = 128 Mel, 84 cochleagram) and ``D`` = dim:
    embedding ``N T D``; per layer: fused QKV ``3 N D^2``, attention scores against the other
    view's ``M`` tokens ``N M D`` and the weighted sum ``N M D``, output projection ``N D^2``,
    FFN ``2 mult N D^2``; heads: ``D C``. Fusion MLP: ``2 D D_f + D_f^2 + D_f C``.
    """
    n, mm, t, d = m.n_mels, m.n_coch, m.n_frames, m.dim
    f = m.ffn_mult
    counts = {
        "embed": (n + mm) * t * d,
        "qkv": m.n_layers * 3 * (n + mm) * d * d,
        "attention": m.n_layers * 2 * (2 * n * mm * d),  # both directions read N x M scores
        "out_proj": m.n_layers * (n + mm) * d * d,
        "ffn": m.n_layers * 2 * f * (n + mm) * d * d,
        "fusion_heads": 2 * d * m.fusion_dim + m.fusion_dim ** 2 + (2 * d + m.fusion_dim) * m.n_classes,
    }
    return {k: 2 * v for k, v in counts.items()}


def train_flops_per_track(m: ModelConfig) -> dict[str, int]:
    """FLOPs of one training step per track: forward (1x), backward (2x: gradients of the inputs
    and of the weights of every product, except the embedding, whose input needs no gradient:
    1x), and the key encoder's forward (1x) that fills the memory queue."""
    fwd = forward_flops_per_track(m)
    total_fwd = sum(fwd.values())
    backward = 2 * total_fwd - fwd["embed"]
    return {"forward": total_fwd, "backward": backward, "key_encoder": total_fwd,
            "total": 2 * total_fwd + backward}


# -- the GEMM peak ----------------------------------------------------------------------------------
def gemm_peak(dtype: torch.dtype = torch.float32) -> float:
    a = torch.randn(GEMM_N, GEMM_N).to(dtype)
    b = torch.randn(GEMM_N, GEMM_N).to(dtype)
    torch.mm(a, b)  # warm-up (thread pool, MKL buffers)
    times = []
    for _ in range(GEMM_REPEATS):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * GEMM_N ** 3 / statistics.median(times)


# -- the naive reference ----------------------------------------------------------------------------
class NaiveView(nn.Module):
    def __init__(self, n_bands, m: ModelConfig):
        super().__init__()
        self.proj = nn.Linear(m.n_frames, m.dim)
        self.pos = nn.Parameter(torch.randn(n_bands, m.dim) * 0.02)


class NaiveLayer(nn.Module):
    """Cross-view attention with nn.MultiheadAttention, post-norm, GELU FFN: merkit's maths."""

    def __init__(self, m: ModelConfig):
        super().__init__()
        d = m.dim
        self.attn = nn.ModuleList([nn.MultiheadAttention(d, m.n_heads, batch_first=True) for _ in range(2)])
        self.norm1 = nn.ModuleList([nn.LayerNorm(d) for _ in range(2)])
        self.ffn = nn.ModuleList([nn.Sequential(nn.Linear(d, m.ffn_mult * d), nn.GELU(),
                                                nn.Linear(m.ffn_mult * d, d), nn.Dropout(m.dropout))
                                  for _ in range(2)])
        self.norm2 = nn.ModuleList([nn.LayerNorm(d) for _ in range(2)])
        self.drop = nn.Dropout(m.dropout)

    def forward(self, hs):
        outs = []
        for i in range(2):
            other = hs[1 - i]
            a, _ = self.attn[i](hs[i], other, other, need_weights=False)
            h = self.norm1[i](hs[i] + self.drop(a))
            outs.append(self.norm2[i](h + self.ffn[i](h)))
        return outs


class NaiveDamer(nn.Module):
    def __init__(self, m: ModelConfig):
        super().__init__()
        self.views = nn.ModuleList([NaiveView(m.n_mels, m), NaiveView(m.n_coch, m)])
        self.layers = nn.ModuleList([NaiveLayer(m) for _ in range(m.n_layers)])
        self.fusion = nn.Sequential(nn.Linear(2 * m.dim, m.fusion_dim), nn.GELU(), nn.Dropout(m.dropout),
                                    nn.Linear(m.fusion_dim, m.fusion_dim))
        self.heads = nn.ModuleList([nn.Linear(m.dim, m.n_classes), nn.Linear(m.dim, m.n_classes),
                                    nn.Linear(m.fusion_dim, m.n_classes)])

    def forward(self, mel, coch):
        hs = []
        for view, x in zip(self.views, (mel, coch)):
            x = (x - x.mean(dim=(0, 2), keepdim=True)) / x.std(dim=(0, 2), keepdim=True)
            hs.append(view.proj(x) + view.pos)
        for layer in self.layers:
            hs = layer(hs)
        z = [h.mean(1) for h in hs]
        zf = self.fusion(torch.cat(z, -1))
        return self.heads[0](z[0]), self.heads[1](z[1]), self.heads[2](zf), zf


def naive_epoch(model, key_model, opt, queue, mel, coch, y, gen, tc: TrainConfig):
    """One epoch of Eq. 22 written plainly (fixed tau/theta of the first epoch)."""
    tau, theta = tc.tau_max, tc.theta0
    keys, key_labels = queue
    model.train()
    perm = torch.randperm(len(y), generator=gen)
    for i in range(math.ceil(len(y) / BATCH)):
        idx = perm[i * BATCH:(i + 1) * BATCH]
        lm, lc, lf, zf = model(mel[idx], coch[idx])
        yb = y[idx]
        cls = F.cross_entropy(lm, yb) + F.cross_entropy(lc, yb) + F.cross_entropy(lf, yb)
        pm, pc = F.softmax(lm / tau, -1), F.softmax(lc / tau, -1)
        mid = (pm + pc) / 2
        js = 0.5 * (F.kl_div(mid.log(), pm, reduction="none").sum(-1)
                    + F.kl_div(mid.log(), pc, reduction="none").sum(-1))
        with torch.no_grad():
            pf = F.softmax(lf / tau, -1)
            conf, pseudo = pf.max(-1)
            r = torch.exp(-js)
            mask = (r * conf >= theta).float()
        pl = (r * F.cross_entropy(lf, pseudo, reduction="none") * mask).sum() / mask.sum().clamp_min(1)
        q = F.normalize(zf, dim=-1)
        logits = q @ keys.t() / tc.cont_tau
        logp = logits.log_softmax(-1)
        pos = (yb[:, None] == key_labels[None, :]).float()
        cont = (-(logp * pos).sum(1) / pos.sum(1).clamp_min(1)).mean()
        loss = tc.w_cls * cls + tc.w_pl * pl + tc.w_js * js.mean() + tc.w_cont * cont
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        with torch.no_grad():
            for pk, p in zip(key_model.parameters(), model.parameters()):
                pk.mul_(tc.key_momentum).add_(p, alpha=1 - tc.key_momentum)
            new_keys = F.normalize(key_model(mel[idx], coch[idx])[3], dim=-1)
            keys = torch.cat([keys, new_keys])[-tc.queue_size:]
            key_labels = torch.cat([key_labels, yb])[-tc.queue_size:]
    return keys, key_labels


# -- the runs ---------------------------------------------------------------------------------------
def synthetic_part(seed=0) -> Part:
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(N_TRAIN, N_MELS, N_FRAMES, generator=g) * 10 - 40
    coch = torch.randn(N_TRAIN, N_COCH, N_FRAMES, generator=g) - 2
    y = torch.randint(0, 2, (N_TRAIN,), generator=g)
    return Part(mel, coch, y, [f"t{i}" for i in range(N_TRAIN)])


def time_naive(part: Part, m: ModelConfig, tc: TrainConfig, epochs: int) -> list[float]:
    torch.manual_seed(0)
    model = NaiveDamer(m)
    key_model = copy.deepcopy(model).eval()
    for p in key_model.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    queue = (torch.zeros(0, m.fusion_dim), torch.zeros(0, dtype=torch.long))
    times = []
    for e in range(epochs + 1):  # the first epoch warms up allocators and thread pools
        t = time.perf_counter()
        queue = naive_epoch(model, key_model, opt, queue, part.mel, part.coch, part.y,
                            torch.Generator().manual_seed(e), tc)
        if e:
            times.append(time.perf_counter() - t)
    return times


def time_merkit(part: Part, m: ModelConfig, tc: TrainConfig, epochs: int) -> tuple[list[float], float]:
    """Epoch times (after a warm-up epoch) and the duration of the warm-up epoch itself (which
    includes the compilation when ``tc.compile``)."""
    torch.manual_seed(0)
    model = build_model("damer", m)
    model.set_normalisation(**band_statistics(part.mel, part.coch))
    trainer = Trainer(model, tc, device=torch.device("cpu"), n_classes=m.n_classes)
    times, first = [], 0.0
    for e in range(1, epochs + 2):
        t = time.perf_counter()
        trainer.train_epoch(part, e, seed=0, progress=False)
        if e == 1:
            first = time.perf_counter() - t
        else:
            times.append(time.perf_counter() - t)
    return times, first


# -- the GPU mode ------------------------------------------------------------------------------------
ENCODER_PATCHES_PER_TRACK = 20  # a 60 s window: 3 750 musicnn frames (16 kHz, hop 256) / 187


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_device_epochs(part: Part, m: ModelConfig, tc: TrainConfig, device: torch.device,
                       epochs: int) -> tuple[list[float], float]:
    """merkit's epoch (``Trainer.train_epoch``) on ``device``: per-epoch times after a warm-up
    epoch (which holds any compilation), and the warm-up's time."""
    torch.manual_seed(0)
    model = build_model("damer", m)
    model.set_normalisation(**band_statistics(part.mel, part.coch))
    model.to(device)
    data = part.to(device)
    trainer = Trainer(model, tc, device=device, n_classes=m.n_classes)
    times, first = [], 0.0
    for e in range(1, epochs + 2):
        _sync(device)
        t = time.perf_counter()
        trainer.train_epoch(data, e, seed=0, progress=False)
        _sync(device)
        if e == 1:
            first = time.perf_counter() - t
        else:
            times.append(time.perf_counter() - t)
    return times, first


def time_encoder(device: torch.device, dtype: torch.dtype, *, tracks: int, repeats: int = 5) -> float:
    """Tracks per second of the musicnn network (front end excluded) on ``tracks`` 60 s tracks
    at once, median of ``repeats`` after a warm-up."""
    from merkit.encoders.musicnn import load_musicnn

    net = load_musicnn().to(device)
    x = torch.randn(tracks * ENCODER_PATCHES_PER_TRACK, 187, 96, device=device)
    times = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for r in range(repeats + 1):
            _sync(device)
            t = time.perf_counter()
            net(x)
            _sync(device)
            if r:
                times.append(time.perf_counter() - t)
    return tracks / statistics.median(times)


def device_main(args, device: torch.device, *, n_train: int = N_TRAIN, encoder_tracks: int = 64) -> dict:
    """The ``--device cuda`` measurements (see the module docstring); returns the results."""
    m = ModelConfig(n_mels=N_MELS, n_coch=N_COCH, n_frames=N_FRAMES, n_classes=2)
    tc = TrainConfig(batch_size=BATCH, epochs=100, device=str(device))
    g = torch.Generator().manual_seed(0)
    part = Part(torch.randn(n_train, N_MELS, N_FRAMES, generator=g) * 10 - 40,
                torch.randn(n_train, N_COCH, N_FRAMES, generator=g) - 2,
                torch.randint(0, 2, (n_train,), generator=g), [f"t{i}" for i in range(n_train)])
    res: dict = {"device": str(device), "n_train": n_train, "batch_size": BATCH, "epochs_timed": args.epochs,
                 "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "cpu": cpu_model(),
                             "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu = torch.device("cpu")
    plan = [("cpu_fp32_reference", cpu, replace_tc(tc, device="cpu", amp=False)),
            (f"{device.type}_fp32", device, replace_tc(tc, amp=False)),
            (f"{device.type}_amp", device, replace_tc(tc, amp=True)),
            (f"{device.type}_amp_compiled", device, replace_tc(tc, amp=True, compile=True))]
    for name, dev, cfg in plan:
        torch.set_num_threads(os.cpu_count() or 1)
        times, first = time_device_epochs(part, m, cfg, dev, args.epochs if dev == device else 1)
        res[name] = {"times_s": times, "median_s": statistics.median(times), "first_epoch_s": first}
        print(f"{name}: {res[name]['median_s']:.3f} s/epoch", flush=True)
        write_atomic(out / "train_speed_cuda.json", json.dumps(res, indent=2))
    for name, dev, dtype in (("encoder_cpu_fp32", cpu, torch.float32), (f"encoder_{device.type}_fp32", device, torch.float32),
                             (f"encoder_{device.type}_bf16", device, torch.bfloat16)):
        res[name] = {"tracks_per_s": time_encoder(dev, dtype, tracks=encoder_tracks if dev == device else 4)}
        print(f"{name}: {res[name]['tracks_per_s']:.1f} tracks/s", flush=True)
    write_atomic(out / "train_speed_cuda.json", json.dumps(res, indent=2))
    write_atomic(out / "train_speed_cuda.md", device_markdown(res))
    print(device_markdown(res))
    return res


def device_markdown(r: dict) -> str:
    ref = r["cpu_fp32_reference"]["median_s"]
    dev = r["device"].split(":")[0]
    rows = ["| DAMER epoch (Memo2496 scale) | s / epoch (median) | first epoch (s) | vs CPU float32 |",
            "|---|--:|--:|--:|"]
    for k in ("cpu_fp32_reference", f"{dev}_fp32", f"{dev}_amp", f"{dev}_amp_compiled"):
        if k in r:
            v = r[k]
            rows.append(f"| {k} | {v['median_s']:.3f} | {v['first_epoch_s']:.2f} | {ref / v['median_s']:.1f}x |")
    rows += ["", "| musicnn encoder | 60 s tracks / s |", "|---|--:|"]
    for k in ("encoder_cpu_fp32", f"encoder_{dev}_fp32", f"encoder_{dev}_bf16"):
        if k in r:
            rows.append(f"| {k} | {r[k]['tracks_per_s']:.1f} |")
    mach = r["machine"]
    return (f"# DAMER training and encoder speed on {r['device']}\n\n"
            f"{mach.get('gpu') or r['device']}; CPU {mach['cpu']} ({mach['cpu_count']} threads for the CPU rows); "
            f"torch {mach['torch']}; {r['n_train']} training tracks of 128 x 87 Mel + 84 x 87 cochleagram, "
            f"batch {r['batch_size']}, the paper's D = 128, L = 2, H = 4, full objective with the key "
            f"encoder. Target: a Memo2496-scale epoch <= 1 s on one datacenter GPU.\n\n"
            + "\n".join(rows) + "\n\nRerun: `python bench/train_speed.py --device cuda`\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (after one warm-up "
                                                          "epoch, which includes any compilation)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-naive", dest="naive", action="store_false")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--no-key-variant", dest="no_key", action="store_false",
                    help="skip the variant without the key encoder (key_momentum 0: the queue holds the "
                         "online features, one forward pass less per step)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--device", default="cpu", help="cpu (this bench) or cuda[:N] (device_main)")
    args = ap.parse_args(argv)
    if args.device != "cpu":
        if not torch.cuda.is_available():
            ap.error(f"--device {args.device}: CUDA is not available on this machine")
        device_main(args, torch.device(args.device))
        return 0
    torch.set_num_threads(args.threads)
    m = ModelConfig(n_mels=N_MELS, n_coch=N_COCH, n_frames=N_FRAMES, n_classes=2)
    # long schedule: tau/theta barely move; float32 unless a variant says otherwise
    tc = TrainConfig(batch_size=BATCH, epochs=100, cpu_amp=False)
    part = synthetic_part()
    flops = train_flops_per_track(m)
    epoch_flops = flops["total"] * N_TRAIN
    load_before = os.getloadavg()

    peak = gemm_peak()
    print(f"GEMM peak {peak / 1e9:.1f} GFLOP/s", flush=True)
    bf16 = cpu_has_native_bf16()
    res: dict = {"gemm_peak_flops": peak, "epoch_flops": epoch_flops, "flops_per_track": flops,
                 "forward_flops_per_track": forward_flops_per_track(m), "n_train": N_TRAIN,
                 "batch_size": BATCH, "threads": args.threads, "epochs_timed": args.epochs}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res["machine"] = {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                      "python": platform.python_version(), "platform": platform.platform(),
                      "cpu": cpu_model(), "vector_isa": torch.backends.cpu.get_cpu_capability(),
                      "native_bf16": bf16}
    if bf16:
        res["gemm_peak_flops_bf16"] = gemm_peak(torch.bfloat16)
        print(f"bfloat16 GEMM peak {res['gemm_peak_flops_bf16'] / 1e9:.1f} GFLOP/s", flush=True)
    res["loadavg_before"] = list(load_before)
    # Order: the cheap, always-available figures first; the results files are rewritten after
    # every variant, so a run stopped during compilation still leaves the eager comparison.
    # The naive reference goes first: merkit's Trainer makes glibc keep freed memory
    # (merkit.cpu_memory) for the rest of the process, and the reference is meant to
    # run as plain PyTorch does.
    plan = [("naive", None)] if args.naive else []
    plan.append(("merkit_eager", replace_tc(tc, compile=False)))
    if args.no_key:
        plan.append(("merkit_eager_no_key_encoder", replace_tc(tc, compile=False, key_momentum=0.0)))
    if bf16:
        plan.append(("merkit_eager_cpu_bf16", replace_tc(tc, compile=False, cpu_amp=True)))
    if args.compile:
        plan.append(("merkit_compiled", replace_tc(tc, compile=True)))
    for name, cfg in plan:
        if cfg is None:
            res[name] = summary(time_naive(part, m, tc, args.epochs), epoch_flops, peak)
        else:
            times, first = time_merkit(part, m, cfg, args.epochs)
            work = epoch_flops if cfg.key_momentum > 0 else (flops["total"] - flops["key_encoder"]) * N_TRAIN
            res[name] = summary(times, work, peak)
            res[name]["epoch_flops"] = work
            res[name]["first_epoch_s"] = first
            if cfg.cpu_amp:
                res[name]["flops_over_bf16_peak"] = work / res[name]["median_s"] / res["gemm_peak_flops_bf16"]
            if cfg.compile:
                res[name]["compile_s_approx"] = first - res[name]["median_s"]
        print(f"{name}: {res[name]['median_s']:.2f} s/epoch", flush=True)
        merkit = [k for k in ("merkit_eager", "merkit_compiled") if k in res]
        if not merkit:
            continue
        best = min(merkit, key=lambda k: res[k]["median_s"])
        res["best"] = best
        res["seconds_per_epoch"] = res[best]["median_s"]
        res["flops_over_gemm_peak"] = res[best]["flops_over_peak"]
        if "naive" in res:
            res["speedup_over_naive"] = res["naive"]["median_s"] / res[best]["median_s"]
        # merkit's defaults on this CPU: bfloat16 where it is native (cpu_amp), else float32
        default = "merkit_eager_cpu_bf16" if "merkit_eager_cpu_bf16" in res else "merkit_eager"
        if default in res:
            res["default"] = {"variant": default, "seconds_per_epoch": res[default]["median_s"],
                              "flops_over_gemm_peak": res[default]["flops_over_peak"]}
            if "naive" in res:
                res["default"]["speedup_over_naive"] = res["naive"]["median_s"] / res[default]["median_s"]
        res["loadavg_after"] = list(os.getloadavg())
        write_atomic(out / "train_speed.json", json.dumps(res, indent=2))
        write_atomic(out / "train_speed.md", markdown(res))
    print(markdown(res))
    return 0


def replace_tc(tc: TrainConfig, **kw) -> TrainConfig:
    from dataclasses import replace

    return replace(tc, **kw)


def summary(times: list[float], epoch_flops: float, peak: float) -> dict:
    med = statistics.median(times)
    return {"times_s": times, "median_s": med, "flops_per_s": epoch_flops / med,
            "flops_over_peak": epoch_flops / med / peak}


def markdown(r: dict) -> str:
    rows = ["| variant | s / epoch (median) | GFLOP/s | / GEMM peak | vs naive |", "|---|---|---|---|---|"]
    naive = r.get("naive", {}).get("median_s")
    for k in ("naive", "merkit_eager", "merkit_eager_no_key_encoder", "merkit_eager_cpu_bf16", "merkit_compiled"):
        if k in r:
            v = r[k]
            ratio = f"{naive / v['median_s']:.2f}x" if naive else "-"
            rows.append(f"| {k} | {v['median_s']:.2f} | {v['flops_per_s'] / 1e9:.1f} | "
                        f"{v['flops_over_peak']:.2f} | {ratio} |")
    extra = ""
    if "merkit_eager_no_key_encoder" in r:
        v = r["merkit_eager_no_key_encoder"]
        extra += (f"\n`merkit_eager_no_key_encoder`: `key_momentum 0` (no EMA key encoder; the queue holds "
                  f"the online fused features), {v['epoch_flops'] / 1e12:.3f} TFLOP per epoch.\n")
    if "merkit_eager_cpu_bf16" in r:
        v = r["merkit_eager_cpu_bf16"]
        extra += (f"\n`merkit_eager_cpu_bf16`: `--cpu-amp` (bfloat16 autocast of the forward passes, losses and "
                  f"weights in float32); bfloat16 GEMM peak {r['gemm_peak_flops_bf16'] / 1e9:.1f} GFLOP/s, of "
                  f"which it reaches {v['flops_over_bf16_peak']:.2f}.\n")
    if "default" in r:
        v = r["default"]
        extra += (f"\nmerkit's default configuration on this CPU is `{v['variant']}`: {v['seconds_per_epoch']:.2f} s "
                  f"per epoch, {v['flops_over_gemm_peak']:.2f} of the fp32 GEMM peak"
                  + (f", {v['speedup_over_naive']:.2f}x the naive reference" if "speedup_over_naive" in v else "")
                  + "; the float32 figures above compare across machines.\n")
    if "merkit_compiled" in r:
        extra += f"\nCompilation (first epoch minus a steady one): {r['merkit_compiled']['compile_s_approx']:.1f} s.\n"
    return (f"# DAMER training speed (Memo2496 scale: {r['n_train']} tracks, batch {r['batch_size']}, "
            f"{r['threads']} threads)\n\n"
            f"CPU: {r['machine'].get('cpu', '?')} ({r['machine'].get('vector_isa', '?')}"
            f"{', native bfloat16' if r['machine'].get('native_bf16') else ''}).\n\n"
            f"GEMM peak (fp32 {GEMM_N}^3): {r['gemm_peak_flops'] / 1e9:.1f} GFLOP/s; "
            f"analytic work per epoch {r['epoch_flops'] / 1e12:.3f} TFLOP "
            f"(forward + backward + key encoder, matrix products only).\n\n" + "\n".join(rows) + "\n" + extra +
            f"\nLoad average before / after: {r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f} "
            f"(the machine is shared; ratios are within one run).\n")


def cpu_model() -> str:
    """The CPU's model name (Linux), for the results: speeds differ across machines."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    raise SystemExit(main())
