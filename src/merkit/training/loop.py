"""Training DAMER on a :class:`~merkit.data.memo2496.FeatureSet` (paper Algorithm 1, §IV-E, §V-A).

:func:`fit` trains one seed into a run folder::
    RUN/last.pt        everything needed to continue (model, optimiser, scheduler, queue, key
                       encoder, RNG state, history), rewritten atomically after every epoch
    RUN/best.pt        the model of the best validation epoch (test metrics added at the end)
    RUN/log.csv        one row per epoch: losses, PCL and SAML statistics, validation metrics
    RUN/results.json   validation and test metrics of the selected model, per head

:func:`train` runs several seeds into ``RUN/seed_<k>/`` and writes the mean ± std table to
``RUN/results.json``. Both continue a killed run with ``resume=True`` and then produce exactly
the weights an uninterrupted run would have (on CPU): the batch order is drawn from a generator
seeded by ``(seed, epoch)``, and the global torch RNG (dropout) is saved with each epoch.

Size: one module over ~400 lines on purpose: the Trainer's step, AMP, compile, DDP and resume
interact (what a resumed, compiled, mixed-precision DDP step must restore), and reading them
together is how they are kept consistent; the run folder's files are :mod:`.run_files`, the
seed runner :mod:`.runner`.
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig, TrainConfig, from_dict
from ..data.memo2496 import FeatureSet
from ..data.splits import make_splits
from ..evaluation.protocol import head_metrics
from ..models import build_model, get_spec, resolve_head
from . import distributed as dist
from ..checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from ..cpu_memory import reuse_freed_memory
from .epochs import EarlyStopping
from .objective import Batch, Objective
from .run_files import BEST, LAST, LOG_CSV, RESULTS, data_description, usable, write_json
from ..outputs import atomic_path

log = logging.getLogger(__name__)

# Probability floor of the validation NLL: a confidently wrong sample costs log(1e12) ~ 27.6
# nats instead of inf, so one such sample cannot make every epoch tie at inf.
NLL_FLOOR = 1e-12
# On an accelerator, reading the running losses for the progress bar forces a sync; every
# this many steps is enough for a human to watch.
POSTFIX_EVERY = 10


class CompiledOrEager:
    """Call ``torch.compile(module)``; if compilation fails (no C compiler, an unsupported
    operation), warn once and call the eager module from then on. Compilation happens on the
    first call of each input shape and mode, so that is where a failure shows."""

    def __init__(self, module: nn.Module):
        self.module = module
        # dynamic=False: an epoch has at most two batch sizes (full and last), so two static
        # graphs beat one symbolic-shape graph.
        self.compiled = torch.compile(module, dynamic=False)

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as e:  # inductor and dynamo raise many types
                out = self.module(*args)  # bad input raises here, as it would without compile
                log.warning("torch.compile failed (%s: %s); training continues eagerly",
                            type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                self.compiled = None
                return out
        return self.module(*args)


class AutocastForward:
    """Run a forward pass under ``torch.autocast(device, dtype)`` and return its floating-point
    outputs as float32: on a CPU only the model's matrix products and activations run in low
    precision, while the losses (softmaxes at temperature 0.07, Jensen-Shannon terms of 1e-4)
    are computed in float32 outside autocast. Outputs may be tensors, dataclasses, tuples,
    lists or dicts of them."""

    def __init__(self, forward, device_type: str, dtype: torch.dtype):
        self.forward, self.device_type, self.dtype = forward, device_type, dtype

    def __call__(self, *args):
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            out = self.forward(*args)
        return _to_float32(out)


def _to_float32(x):
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() else x
    if is_dataclass(x) and not isinstance(x, type):
        return replace(x, **{f.name: _to_float32(getattr(x, f.name)) for f in fields(x) if f.init})
    if isinstance(x, (tuple, list)):
        return type(x)(_to_float32(v) for v in x)
    if isinstance(x, dict):
        return {k: _to_float32(v) for k, v in x.items()}
    return x


class StopTraining(Exception):
    """Raised by an ``on_epoch_end`` callback to end training early (the run stays resumable)."""


@dataclass
class Part:
    """One split held in RAM: raw features and labels as tensors."""

    mel: torch.Tensor  # (N, n_mels, T) float32
    coch: torch.Tensor  # (N, n_coch, T) float32
    y: torch.Tensor  # (N,) int64 (-1 for unlabelled)
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_featureset(cls, fs: FeatureSet, idx, y=None) -> "Part":
        idx = np.asarray(idx, dtype=np.int64)
        mel = torch.from_numpy(np.ascontiguousarray(fs.mel[idx], dtype=np.float32))
        coch = torch.from_numpy(np.ascontiguousarray(fs.coch[idx], dtype=np.float32))
        y = torch.full((len(idx),), -1) if y is None else torch.as_tensor(y)
        # classes are int64; regression targets stay floating point
        y = y.to(torch.float32) if y.is_floating_point() else y.to(torch.long)
        return cls(mel, coch, y, [fs.tracks[i].track_id for i in idx])

    def to(self, device) -> "Part":
        return Part(self.mel.to(device), self.coch.to(device), self.y.to(device), self.ids)


def band_statistics(mel: torch.Tensor, coch: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-band mean and standard deviation over tracks and frames (float64 accumulation)."""
    out = {}
    for name, x in (("mel", mel), ("coch", coch)):
        x = x.double()
        out[f"{name}_mean"] = x.mean(dim=(0, 2)).float()
        out[f"{name}_std"] = x.std(dim=(0, 2), correction=0).float()
    return out


def resolve_device(name: str) -> torch.device:
    ranked = dist.device_for(name)  # under torchrun: this rank's GPU
    if ranked is not None:
        return ranked
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return dev


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's batch order: a function of ``(seed, epoch)`` only, so a
    resumed run draws the same batches as an uninterrupted one."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 matrix products natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the query
        return False


def batch_starts(n: int, batch_size: int, world: int = 1) -> list[int]:
    """Boundaries of an epoch's batches over ``n`` samples: ``[0, b, 2b, ..., n]``. A last batch
    of one sample joins the one before it: batch norm cannot normalise a single sample. Under
    DDP with ``world`` processes, a last batch of fewer than ``world`` samples joins it too,
    so that every rank has a share of every batch."""
    starts = list(range(0, n, batch_size)) + [n]
    if len(starts) > 2 and starts[-1] - starts[-2] < max(2, world):
        del starts[-2]
    return starts


class Trainer:
    """Holds the model, the optimiser and the model's :class:`Objective`; :meth:`train_epoch`
    runs one epoch (for DAMER, Algorithm 1)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, *, device: torch.device, n_classes: int,
                 objective: type[Objective] | None = None):
        self.model, self.cfg, self.device, self.n_classes = model, cfg, device, n_classes
        # foreach: one multi-tensor kernel per Adam operation instead of one per parameter (the
        # same update; torch enables it by default on CUDA only).
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                          foreach=True)
        if cfg.scheduler == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=cfg.epochs)
        else:  # stepped by fit() with the validation score (larger is better)
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
        if device.type == "cpu":
            reuse_freed_memory()  # large freed tensors stay mapped: no page faults per step
        # The checkpointed module stays the plain one; DDP and a compiled wrapper only run it.
        self.world = dist.world()
        if self.world > 1 and cfg.batch_size < self.world:
            raise ValueError(f"batch_size {cfg.batch_size} is smaller than the {self.world} processes: "
                             "the batch is the global batch, shared between them")
        runner = dist.wrap(model, device)
        forward = CompiledOrEager(runner) if cfg.compile else runner
        # CUDA: the whole loss under autocast (its float32 list covers the losses). CPU
        # (cpu_amp, on by default where bfloat16 is native): the forward passes only
        # (AutocastForward), the losses in float32.
        self.amp_dtype = None
        self.cpu_bf16 = False
        if cfg.amp and device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif cfg.amp and cfg.cpu_amp and device.type == "cpu":
            if cpu_has_native_bf16():
                self.cpu_bf16 = True
                forward = AutocastForward(forward, "cpu", torch.bfloat16)
            else:  # emulated bfloat16 matrix products are slower than float32 ones
                log.info("this CPU has no native bfloat16 matrix products (AVX512-BF16 or AMX): "
                         "training in float32")
        if objective is None:
            objective = get_spec(model.cfg.name).objective_class()
        self.objective = objective(model, cfg, n_classes=n_classes, device=device, forward=forward)
        self.head = resolve_head(model.cfg)
        # Loss scaling is needed for float16 only; a disabled scaler passes everything through.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    @property
    def terms(self) -> tuple[str, ...]:
        return self.objective.terms

    def _autocast(self, after_step: bool = False):
        if self.amp_dtype is not None:
            return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)
        if after_step and self.cpu_bf16:  # the key encoder's forward (the queue stores float32)
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- one optimisation step -------------------------------------------------------------------
    def step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One update: the objective's loss, back-propagation, clipping, the optimiser step, then
        the objective's post-step update (e.g. DAMER's memory queue).

        Returns the detached loss terms (``objective.terms`` order) and the number of correct
        training predictions of the inference head (a tensor, read once per epoch; 0 for
        regression).
        """
        cfg = self.cfg
        with self._autocast():
            loss, terms, logits = self.objective.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip, foreach=True)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with self._autocast(after_step=True):
            self.objective.after_step(batch)
        return terms, self._correct(logits, batch.y)

    def _correct(self, logits: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        if self.n_classes == 1:
            return torch.zeros((), dtype=torch.long, device=y.device)
        with torch.no_grad():
            if self.head == "ensemble":
                score = sum(torch.softmax(z.float(), -1) for z in logits.values())
            else:
                score = logits[self.head]
            return (score.argmax(-1) == y).sum()

    # -- one epoch -------------------------------------------------------------------------------
    def train_epoch(self, data: Part, epoch: int, *, seed: int, unlabelled: Part | None = None,
                    progress: bool = True) -> dict[str, float]:
        """Epoch ``epoch`` (1-based) over ``data`` in batches of a seeded permutation."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        schedule = self.objective.start_epoch(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        gen = epoch_generator(seed, epoch)
        n = len(data)
        perm = torch.randperm(n, generator=gen).to(self.device)
        starts = batch_starts(n, cfg.batch_size, self.world)
        n_steps = len(starts) - 1
        perm_u, bu = None, 0
        if unlabelled is not None and len(unlabelled) and cfg.unlabelled_ratio > 0:
            bu = max(1, round(cfg.batch_size * cfg.unlabelled_ratio))
            reps = math.ceil(n_steps * bu / len(unlabelled))
            perm_u = torch.cat([torch.randperm(len(unlabelled), generator=gen) for _ in range(reps)])
            perm_u = perm_u.to(self.device)
        self.model.train()
        names = self.terms
        sums = torch.zeros(len(names), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        t0 = time.perf_counter()
        # disable=None: tqdm shows the bar on a terminal only, so logs and CI stay clean
        bar = tqdm(range(n_steps), desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                   disable=None if progress else True, unit="step")
        for i in bar:
            # under DDP each rank takes its contiguous share of the global batch
            glob = perm[starts[i]:starts[i + 1]]
            idx = glob[dist.rank_slice(len(glob))]
            batch = Batch(data.mel[idx], data.coch[idx], data.y[idx])
            if perm_u is not None:
                iu = perm_u[i * bu:(i + 1) * bu]
                iu = iu[dist.rank_slice(len(iu))]
                batch.mel_u, batch.coch_u = unlabelled.mel[iu], unlabelled.coch[iu]
            terms, ok = self.step(batch)
            # a rank's terms are its share of the global batch's losses (sum / global count x
            # world): their mean over ranks is the global batch's value
            sums += terms * (len(glob) / self.world)
            correct += ok
            if progress and (self.device.type == "cpu" or i % POSTFIX_EVERY == 0):
                bar.set_postfix({k: f"{v:.3f}" for k, v in zip(names, terms.tolist())})
        bar.close()
        if self.world > 1:
            sums, correct = dist.all_reduce_sum(sums), dist.all_reduce_sum(correct)
        if cfg.scheduler == "cosine":
            self.scheduler.step()
        record = {"epoch": epoch, "lr": lr, **schedule}
        record.update({f"loss_{k}" if k != "loss" else k: v / n for k, v in zip(names, sums.tolist())})
        if self.n_classes > 1:
            record["train_acc"] = correct.item() / n
        record.update(self.objective.epoch_stats())
        record["time_s"] = time.perf_counter() - t0
        return record

    # -- resumable state -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "objective": self.objective.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        # Runs checkpointed before objectives existed kept DAMER's queue at the top level.
        obj = state.get("objective", {"queue": state.get("queue"), "key_encoder": state.get("key_encoder")})
        self.objective.load_state_dict(obj)


# -- validation and model selection --------------------------------------------------------------
def validation_record(model: nn.Module, part: Part, *, head: str, batch_size: int,
                      device) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Validation metrics of the inference head (``val_acc``, ``val_f1``, ``val_auc`` or, for
    regression, ``val_r2``, ``val_pearson``, ``val_ccc``, ``val_rmse``; and ``val_loss``: its
    NLL, or its MSE) and of every head."""
    outputs = dist.sharded_predict(model, part.mel, part.coch, batch_size=batch_size, device=device)
    y = part.y.cpu().numpy()
    per_head = head_metrics(y, outputs)
    rec = {f"val_{k}": v for k, v in per_head[head].items()}
    if outputs[head].ndim == 1:
        rec["val_loss"] = float(np.mean((outputs[head] - y) ** 2))
    else:
        p_true = outputs[head][np.arange(len(y)), y]
        rec["val_loss"] = float(-np.log(np.maximum(p_true, NLL_FLOOR)).mean())
    return rec, per_head


def selection_key(record: dict, metric: str) -> tuple[float, ...]:
    """Larger is better; ties on the metric go to the lower validation loss. A regression run
    has no acc/f1/auc and selects by CCC instead."""
    loss = record["val_loss"]
    if metric == "loss":
        return (-loss,)
    if f"val_{metric}" not in record and "val_ccc" in record:
        metric = "ccc"
    value = record[f"val_{metric}"]
    return (value if math.isfinite(value) else -math.inf, -loss)


def best_key_value(record: dict, metric: str) -> float:
    """The validation score the plateau schedule watches (larger is better)."""
    value = selection_key(record, metric)[0]
    return value if math.isfinite(value) else -math.inf


def _write_csv(path: Path, rows: list[dict]) -> None:
    names: list[str] = []
    for r in rows:
        names += [k for k in r if k not in names]

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=names)
        w.writeheader()
        w.writerows(rows)


def _tensorboard(run_dir: Path):
    """A TensorBoard writer when the optional ``tensorboard`` package is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(run_dir / "tb"))


# -- one seed ------------------------------------------------------------------------------------
def _resume(run_dir: Path, config: dict, model: nn.Module, trainer: Trainer) -> dict:
    """Load ``last.pt`` into the model and trainer and restore the RNG; its ``train_state``.
    Under DDP rank 0 reads the file and sends it to the others, and each rank restores its own
    generator state."""
    ckpt = dist.on_main(lambda: load_checkpoint(run_dir / LAST))
    # Fields added to the configs since the run started take their defaults (as in run.json).
    stored = {"model": asdict(from_dict(ModelConfig, ckpt["model_config"])),
              "train": asdict(from_dict(TrainConfig, ckpt["train_config"]))}
    if stored != config:
        raise ValueError(f"{run_dir / LAST}: trained with a different configuration; "
                         "resume needs the original data and settings")
    model.load_state_dict(ckpt["state_dict"])
    st = ckpt["train_state"]
    trainer.load_state_dict(st)
    ranks = st.get("rng_ranks")
    if dist.world() > 1 or ranks is not None:
        if ranks is None or len(ranks) != dist.world():
            raise ValueError(f"{run_dir / LAST}: written by {len(ranks) if ranks else 1} process(es); "
                             f"resume it with as many (torchrun --nproc_per_node), not {dist.world()}")
        mine = ranks[dist.rank()]
        torch.set_rng_state(mine["torch"])
        if mine.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(mine["cuda"])
    else:
        torch.set_rng_state(st["rng_torch"])
        if st.get("rng_cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["rng_cuda"])
    log.info("resuming %s after epoch %d", run_dir, st["epoch"])
    return st


def _log_epoch(rec: dict, epochs: int, improved: bool) -> None:
    parts = [f"{k[5:]} {v:.4f}" for k, v in rec.items() if k.startswith("loss_")]
    terms = f" ({' '.join(parts)})" if parts else ""
    val = "".join(f" {k[4:]} {rec[k]:.4f}" for k in ("val_acc", "val_f1", "val_auc", "val_r2", "val_ccc",
                                                      "val_rmse") if k in rec)
    log.info("epoch %d/%d  loss %.4f%s%s  %.1fs%s", rec["epoch"], epochs, rec["loss"], terms,
             f"  val{val}" if val else "", rec["time_s"], "  *" if improved else "")


def fit(fs: FeatureSet, model_cfg: ModelConfig, cfg: TrainConfig, run_dir: str | os.PathLike, *,
        unlabelled: FeatureSet | None = None, resume: bool = False, progress: bool = True,
        on_epoch_end: Callable[[int, dict], None] | None = None) -> dict:
    """Train one seed (``cfg.seed``) of ``model_cfg`` on ``fs`` into ``run_dir``.

    The input sizes and class count of ``model_cfg`` are taken from the data and the task. The
    model is selected on the validation part; the test part is predicted once, at the end.
    ``on_epoch_end(epoch, record)`` runs after each epoch's checkpoint is written (raise
    :class:`StopTraining` to stop; the run can then be resumed). Tracks with non-finite features
    are skipped with a warning.

    Returns ``{"seed", "best_epoch", "epochs_run", "val", "test", "history", ...}`` where ``val``
    and ``test`` are ``{head: {"acc", "f1", "auc"}}`` of the selected model.
    """
    run_dir = Path(run_dir)
    main = dist.is_main()  # under DDP (merkit.training.distributed) only rank 0 touches run_dir

    def state_of_run_dir():
        if resume and (run_dir / RESULTS).is_file():  # this seed finished before the kill
            return json.loads((run_dir / RESULTS).read_text())
        if not resume and (run_dir / LAST).exists():
            raise ValueError(f"{run_dir}: already holds a run; resume it or choose another folder")
        run_dir.mkdir(parents=True, exist_ok=True)
        return {"resumable": resume and (run_dir / LAST).is_file()}

    state = dist.on_main(state_of_run_dir)
    if "resumable" not in state:
        return state
    progress = progress and main
    device = resolve_device(cfg.device)

    # -- data: split, tensors in RAM, the model's input sizes ------------------------------------
    fs = usable(fs, "labelled")
    splits = make_splits(fs, cfg.label, threshold=cfg.threshold, mode=cfg.split,
                         test_size=cfg.test_size, val_size=cfg.val_size, seed=cfg.seed,
                         regression=cfg.regression)
    model_cfg = replace(model_cfg, n_mels=fs.mel.shape[1], n_coch=fs.coch.shape[1],
                        n_frames=fs.mel.shape[2], n_classes=cfg.n_classes)
    pool = None
    if unlabelled is not None:
        unlabelled = usable(unlabelled, "unlabelled")
        if unlabelled.mel.shape[1:] != fs.mel.shape[1:] or unlabelled.coch.shape[1:] != fs.coch.shape[1:]:
            raise ValueError(f"{unlabelled.root or 'unlabelled data'}: features of shapes "
                             f"{unlabelled.mel.shape[1:]} / {unlabelled.coch.shape[1:]}, but the "
                             f"labelled ones are {fs.mel.shape[1:]} / {fs.coch.shape[1:]}")
        pool = Part.from_featureset(unlabelled, np.arange(len(unlabelled))).to(device)
    config = {"model": asdict(model_cfg), "train": asdict(cfg)}
    data_info = data_description(fs, splits, cfg, unlabelled)

    def checkpoint(model: nn.Module, **fields) -> dict:
        return make_checkpoint(model_cfg.name, config["model"], model.state_dict(), train_config=config["train"],
                               data_info=data_info, **fields)
    train_part = Part.from_featureset(fs, splits.train, splits.y_train)
    val_part = Part.from_featureset(fs, splits.val, splits.y_val).to(device)

    # -- model and training state ----------------------------------------------------------------
    torch.manual_seed(cfg.seed)  # the one global seed of this run: initialisation and dropout
    model = build_model(model_cfg.name, model_cfg)
    model.set_normalisation(**band_statistics(train_part.mel, train_part.coch))
    model.to(device)
    train_part = train_part.to(device)
    trainer = Trainer(model, cfg, device=device, n_classes=cfg.n_classes)
    if pool is not None and not trainer.objective.semi_supervised:
        raise ValueError(f"--unlabelled: model {model_cfg.name} does not use unlabelled data")
    if dist.world() > 1:  # same initial weights everywhere, then a dropout generator per rank
        torch.manual_seed(dist.rank_seed(cfg.seed))
    history: list[dict] = []
    stopping = EarlyStopping(cfg.patience)  # the weights of the best epoch are on disk (best.pt)
    if state["resumable"]:
        st = _resume(run_dir, config, model, trainer)
        history = st["history"]
        stopping.load_state_dict(st)

    # -- epochs ----------------------------------------------------------------------------------
    tb = _tensorboard(run_dir) if main else None
    head = trainer.head
    try:
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            if stopping.should_stop(epoch):
                log.info("early stop: no validation improvement in %d epochs", cfg.patience)
                break
            rec = trainer.train_epoch(train_part, epoch, seed=cfg.seed, unlabelled=pool, progress=progress)
            improved = True  # without a validation part the last epoch is kept
            if len(val_part):
                rec.update(validation_record(model, val_part, head=head, batch_size=cfg.eval_batch_size,
                                             device=device)[0])
                improved = stopping.update(epoch, selection_key(rec, cfg.select_metric))
            else:
                stopping.best_epoch = epoch
            if cfg.scheduler == "plateau":  # the validation score, or the training loss without one
                trainer.scheduler.step(best_key_value(rec, cfg.select_metric) if len(val_part) else -rec["loss"])
            if improved:
                val_metrics = {k: v for k, v in rec.items() if k.startswith("val_")}
                if main:
                    save_checkpoint(run_dir / BEST, checkpoint(model, metrics={"epoch": epoch, **val_metrics}))
            rec["best_epoch"] = stopping.best_epoch
            history.append(rec)
            rng = {"torch": torch.get_rng_state(),
                   "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None}
            ranks = dist.gather_objects(rng) if dist.world() > 1 else None
            if main:
                train_state = {**trainer.state_dict(), "epoch": epoch, "history": history,
                               **stopping.state_dict(), "rng_torch": torch.get_rng_state(),
                               "rng_cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                               "rng_ranks": ranks}
                save_checkpoint(run_dir / LAST, checkpoint(model, metrics=rec, train_state=train_state))
                _write_csv(run_dir / LOG_CSV, history)
            if tb is not None:
                for k, v in rec.items():
                    if isinstance(v, (int, float)) and k != "epoch":
                        tb.add_scalar(k, v, epoch)
            _log_epoch(rec, cfg.epochs, improved)
            if on_epoch_end is not None:
                on_epoch_end(epoch, rec)
    finally:
        if tb is not None:
            tb.close()

    # -- test once, with the model selected on validation ----------------------------------------
    best = dist.on_main(lambda: load_checkpoint(run_dir / BEST))
    model.load_state_dict(best["state_dict"])
    test_part = Part.from_featureset(fs, splits.test, splits.y_test)
    test = head_metrics(splits.y_test, dist.sharded_predict(model, test_part.mel, test_part.coch,
                                                            batch_size=cfg.eval_batch_size, device=device))
    val = {}
    if len(val_part):
        val = head_metrics(splits.y_val, dist.sharded_predict(model, val_part.mel, val_part.coch,
                                                              batch_size=cfg.eval_batch_size, device=device))
    best["metrics"] = {"epoch": stopping.best_epoch, "val": val, "test": test}
    result = {"seed": cfg.seed, "best_epoch": stopping.best_epoch, "epochs_run": len(history),
              "inference_head": head, "val": val, "test": test, "sizes": splits.sizes(),
              "history": history}
    if main:
        save_checkpoint(run_dir / BEST, {k: v for k, v in best.items() if k not in ("format", "versions")})
        write_json(run_dir / RESULTS, result)
    dist.barrier()  # the next seed (or the caller) may read what rank 0 wrote
    return result
