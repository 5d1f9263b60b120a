"""Data-parallel training across processes: ``torchrun --nproc_per_node=N -m merkit train ...``.

torchrun starts N copies of merkit with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous
in the environment; :func:`init_from_env` joins them in a process group (``gloo`` on CPU,
``nccl`` on CUDA) and the training loop (:mod:`merkit.training.loop`) wraps the model in
``DistributedDataParallel``. What a run computes does not depend on the number of processes:
* **The global batch is the configured batch.** Every rank draws the same permutation (seeded by
  ``(seed, epoch)``) and takes a contiguous share of each global batch (:func:`rank_slice`).
* **Every loss is the loss of the global batch.** A per-sample mean over the local share would
  weight unequal shares unequally, and ratio losses (pseudo-labels over the selected samples,
  contrastive terms over the queries with a positive) would divide by local counts. The losses
  therefore divide their local sums by :func:`global_denominator` (the global count over the
  world size): DDP's averaging of the gradients over ranks then gives exactly the gradient of
  the global batch's loss. With one process these helpers are plain means.
* **State that spans the batch spans ranks**: DAMER's memory queue enqueues the keys and labels
  of all ranks in rank order (MoCo's all-gather, :func:`all_gather_rows`), MuseFuse's prototypes
  are updated from all ranks' features, logged statistics are summed over ranks, and validation
  and test predictions are made on shards of the split and gathered (:func:`sharded_predict`).
* **Rank 0 alone touches the run folder** (checkpoints, logs, tables), and sends what it reads
  (a checkpoint to resume from) to the others (:func:`on_main`), so only rank 0 needs the run
  folder; every rank needs the features.

What stays per rank: dropout masks (each rank seeds its own generator from the run's seed and
its rank) and random augmentation, so a run with dropout matches a one-process run in
distribution, not bit for bit; with dropout 0 the losses agree to float rounding
(``tests/test_distributed.py``). On CPU, batch norm (the CNN baselines) normalises each rank's
share by itself: ``SyncBatchNorm`` runs on accelerators only, and is used there.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from ..workers import die_with_parent
from ..models.inference import predict_heads as predict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    local_rank: int
    backend: str


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> Context | None:
    """Join the process group torchrun describes in the environment; ``None`` when this is a
    single process. With CUDA, collectives on GPU tensors use ``nccl`` and each rank its
    ``LOCAL_RANK``'s GPU; collectives on CPU tensors (and every collective of a CPU run) use
    ``gloo``, so one group serves a run on either device."""
    if not launched():
        return None
    local = int(os.environ.get("LOCAL_RANK", 0))
    if active():
        return Context(rank(), world(), local, str(dist.get_backend()))

    # torchrun's agent does not take its workers with it when it is killed; a rank left
    # training alone would hold its GPU and wait on the others for ever
    die_with_parent(os.getppid())
    cuda = torch.cuda.is_available()
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend)
    ctx = Context(dist.get_rank(), dist.get_world_size(), local, backend)
    if ctx.rank != 0:  # one log for the run: the others report warnings only
        logging.getLogger("merkit").setLevel(logging.WARNING)
    log.info("distributed training: %d processes, backend %s", ctx.world, backend)
    return ctx


def shutdown() -> None:
    if active():
        dist.destroy_process_group()


def device_for(name: str) -> torch.device | None:
    """The device of this rank for a ``TrainConfig.device`` of ``auto`` or ``cuda``: its local
    GPU; ``None`` where the name alone decides."""
    if active() and name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return None


def rank_seed(seed: int) -> int:
    """This rank's seed for its dropout generator, derived from the run's seed."""
    return int(np.random.SeedSequence([seed, rank()]).generate_state(1, dtype=np.uint32)[0])


# -- splitting a global batch ---------------------------------------------------------------------
def rank_slice(n: int) -> slice:
    """This rank's contiguous share of ``n`` samples; shares differ by at most one sample and,
    concatenated in rank order, give the ``n`` samples back."""
    w, r = world(), rank()
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return slice(start, start + base + (r < extra))


# -- collectives ----------------------------------------------------------------------------------
def global_denominator(d: torch.Tensor, *, floor: float | None = None) -> torch.Tensor:
    """The denominator of a mean over the global batch, for a rank's local sum: the global count
    (``floor``-clamped, as the one-process loss clamps it) divided by the world size. One
    process: ``d`` itself (clamped). No gradient flows through it."""
    d = d.detach().to(torch.float32)
    if not active():
        return d.clamp_min(floor) if floor is not None else d
    d = d.clone()
    dist.all_reduce(d)
    if floor is not None:
        d = d.clamp_min(floor)
    return d / world()


def batch_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of per-sample values ``x`` over the global batch (``x.mean()`` in one process)."""
    if not active():
        return x.mean()
    return x.sum() / global_denominator(torch.tensor(float(x.numel()), device=x.device))


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over ranks (a new tensor; ``t`` itself in one process)."""
    if not active():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t


def all_gather_rows(t: torch.Tensor) -> torch.Tensor:
    """The rows of ``t`` (n_r, ...) of every rank, concatenated in rank order (ranks may hold
    different numbers of rows). Carries no gradient."""
    if not active():
        return t
    t = t.detach().contiguous()
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(world())]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    m = max(sizes)
    pad = t.new_zeros((m - t.shape[0], *t.shape[1:]))
    bufs = [t.new_empty((m, *t.shape[1:])) for _ in sizes]
    dist.all_gather(bufs, torch.cat([t, pad]))
    return torch.cat([b[:s] for b, s in zip(bufs, sizes)])


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def on_main(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only and return its result on every rank; an exception raised by
    ``fn`` is raised on every rank (so no rank waits for one that failed)."""
    if not active():
        return fn()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("ok", fn())
        except Exception as e:  # sent to the other ranks, then raised everywhere
            box[0] = ("err", e)
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "err":
        raise value
    return value


def barrier() -> None:
    if active():
        dist.barrier()


def sharded_predict(model: torch.nn.Module, mel, coch, *, batch_size: int, device) -> dict[str, np.ndarray]:
    """:func:`merkit.models.inference.predict_heads` over the whole split: each rank predicts a
    contiguous shard and the outputs are gathered in order, so every rank gets the outputs of
    all samples (the same as one process)."""

    if not active():
        return predict(model, mel, coch, batch_size=batch_size, device=device)
    sl = rank_slice(len(mel))
    part = predict(model, mel[sl], coch[sl], batch_size=batch_size, device=device) if sl.stop > sl.start else None
    parts = [p for p in gather_objects(part) if p is not None]
    return {h: np.concatenate([p[h] for p in parts]) for h in parts[0]}


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in ``DistributedDataParallel`` (with ``SyncBatchNorm`` on CUDA); ``model`` itself
    in one process. The returned module is only called; the plain one keeps the weights."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":
        # converting replaces the BatchNorm modules in place, inside ``model``
        has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
        if has_bn:
            converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            if converted is not model:
                raise RuntimeError("SyncBatchNorm conversion replaced the root module")
        return DDP(model, device_ids=[device.index])
    return DDP(model)


__all__ = ["Context", "active", "world", "rank", "is_main", "launched", "init_from_env", "shutdown",
           "device_for", "rank_seed", "rank_slice", "global_denominator", "batch_mean", "all_reduce_sum",
           "all_gather_rows", "gather_objects", "on_main", "barrier", "sharded_predict", "wrap"]
