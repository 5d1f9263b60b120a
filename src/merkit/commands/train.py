"""merkit train --data DIR --label a|v|quadrant [--arch damer] [--seeds 0 1 2 3 4]: train a
model and print the table.

Every field of :class:`~merkit.config.ModelConfig` and :class:`~merkit.config.TrainConfig` is a
flag (``--epochs``, ``--no-use-pcl``, ...; the underscore spelling ``--batch_size`` works too);
a model's own defaults (:data:`merkit.models.MODELS`) apply where no flag is given.
``merkit train --resume RUN_DIR`` continues a run that was stopped, with the settings stored in
``RUN_DIR/run.json``. MuseFuse's documented command line (``--label_mode``, ``--data_root``,
``--out_dir``, ``--mixed_precision``) is accepted as well, and a MuseFuse run also writes its
checkpoint as ``musefuse_memo_{a|v}_{timestamp}.pt``.
"""
from __future__ import annotations

from . import COMMANDS

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

from ..config import ModelConfig, TrainConfig, from_dict
from ._args import add_config_args, add_old_spelling, positive_int
from ..feature_cache import load_features
from ._runs import _model_kind, _outside_loop, family_help, family_overrides, new_run
from ..outputs import atomic_path
from ..models import MODELS

log = logging.getLogger(__name__)

# Filled in from the data and the task, never from the command line.
_DATA_FIELDS = ("name", "n_mels", "n_coch", "n_frames", "n_classes")


class _FamilyHelp(argparse.Action):
    """``-h``: the full help, or, after ``--arch unified`` / ``dsaml``, that family's own."""

    def __call__(self, parser, namespace, values, option_string=None):
        arch = getattr(namespace, "model", None)
        sys.stdout.write(family_help(arch) if arch in _outside_loop() else parser.format_help())
        parser.exit()


def register(sub) -> None:
    p = sub.add_parser("train", help=COMMANDS['train'], add_help=False,
                       description="Train on a Memo2496-layout feature folder with the paper's protocol "
                                   "(stratified, song-grouped 70/30 split; model selection on a validation "
                                   "part of the training data) and print mean ± std over the seeds.")

    p.add_argument("-h", "--help", action=_FamilyHelp, nargs=0, help="show this help (with --arch unified or "
                                                                      "dsaml first: only that family's options)")
    p.add_argument("--data", "--data-root", metavar="DIR|DATASET",
                   help="feature folder (Memo2496 layout), or emopia | emotify | synthetic (features "
                        "extracted into the cache on first use)")
    p.add_argument("--arch", dest="model", default="damer", choices=list(MODELS),
                   help="architecture (default: damer; `merkit compare --list` describes them). unified: the "
                        "multi-corpus model on musicnn embeddings; --data takes a comma-separated list. "
                        "dsaml: the dynamic (2 Hz) model on a `merkit extract-dynamic` folder")
    add_old_spelling(p, "--model", "model", choices=list(MODELS))
    p.add_argument("--recipe", choices=("default",),
                   help="default: the shipped model's recipe (the unified model on EMOPIA, the MIREX-like set, "
                        "Emotify and 4Q with the settings chosen by leave-one-corpus-out validation, calibrated, "
                        "float16-checked); --data takes their four feature folders in that order (default: "
                        "merkit's cache)")
    p.add_argument("--kd-weight", type=float, default=None,
                   help="unified: weight of distillation from per-corpus teachers (default 0: off)")
    p.add_argument("--inputs", default=None, metavar="VIEWS",
                   help="unified: comma-separated model inputs (default musicnn,tonal). tonal: key/chord "
                        "summary from the cochleagram; madmom: madmom's key/chord networks (pip install "
                        "'merkit[madmom]'; CC BY-NC-SA models); any encoder view (musicnn_mtt)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="seeds to run (default: 0)")
    p.add_argument("--run-dir", "--out-dir", metavar="DIR",
                   help="output folder (default: runs/<data>_<label>_<model>_<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run; all settings come from it")
    p.add_argument("--unlabelled", metavar="PATH", help="feature folder of unlabelled tracks for "
                                                        "semi-supervised PCL")
    p.add_argument("--threads", type=positive_int, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add_config_args(p, ModelConfig, exclude=_DATA_FIELDS, group_title="model (ModelConfig)")
    add_config_args(p, TrainConfig, exclude=("seed",), group_title="training (TrainConfig)")
    # MuseFuse's README spells two options differently
    p.add_argument("--label-mode", dest="label", choices=("a", "v"), help=argparse.SUPPRESS)
    p.add_argument("--mixed-precision", dest="amp", action="store_true", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _check_resumable(run_dir: Path) -> None:
    """``--resume`` continues the DAMER loop's runs (a ``last.pt`` per epoch); a unified or DSAML
    run keeps no such state, and says so instead of "not a run folder"."""
    from ..training.run_files import RUN_JSON

    if (run_dir / RUN_JSON).is_file() or not run_dir.is_dir():
        return
    kinds = {_model_kind(p) for p in run_dir.glob("seed_*/model.pt")} - {None}
    if kinds:
        raise ValueError(f"{run_dir}: a --arch {'/'.join(sorted(kinds))} run; --resume continues runs of the "
                         "DAMER training loop (which keep last.pt every epoch), and this family trains in seconds "
                         "to minutes without one: run the same command again with a new --run-dir")


def run(args) -> int:
    from ..training import distributed as dist

    # under torchrun: join the other processes (merkit.training.distributed; docs/scale.md)
    dist.init_from_env()
    try:
        return _run(args)
    finally:
        dist.shutdown()


def _run(args) -> int:
    import torch

    from ..training import distributed as dist
    from ..training.run_files import RUN_JSON
    from ..training.runner import train

    if args.threads:
        torch.set_num_threads(args.threads)
    if dist.world() > 1 and (args.model in _outside_loop() and not args.resume):
        raise ValueError(f"--arch {args.model} trains a small network on stored embeddings in "
                         "seconds: run it in one process, without torchrun")
    if getattr(args, "recipe", None):
        if args.resume or args.model not in ("damer", "unified"):
            raise ValueError("--recipe default trains the unified model from scratch; leave out --arch and --resume")
        from .train_unified import run_recipe

        return run_recipe(args)
    if args.resume:
        _check_resumable(Path(args.resume))
    else:
        family_overrides(args)  # a flag the family does not use fails before any data is loaded
    if args.model == "dsaml" and not args.resume:
        from .train_dynamic import run_dynamic

        return run_dynamic(args)
    if args.model == "unified" and not args.resume:
        from .train_unified import run_unified

        return run_unified(args)
    if args.resume:
        run_dir = Path(args.resume)
        meta_path = run_dir / RUN_JSON

        def read_meta():
            if not meta_path.is_file():
                raise FileNotFoundError(f"{meta_path}: not found, so {run_dir} is not a merkit run folder")
            import json

            return json.loads(meta_path.read_text())

        meta = dist.on_main(read_meta)  # under DDP only rank 0 needs the run folder
        model_cfg = from_dict(ModelConfig, meta["model"])
        train_cfg = from_dict(TrainConfig, meta["train"])
        seeds, data, unlabelled = meta["seeds"], meta["data"], meta.get("unlabelled")
        log.info("resuming %s (settings from %s; other flags are ignored)", run_dir, meta_path)
    else:
        # rank 0 names (and checks) the folder: the others' clocks may show another second
        model_cfg, train_cfg, seeds, run_dir = dist.on_main(lambda: new_run(args, "{data}_{label}_{model}"))
        data, unlabelled = args.data, args.unlabelled
    loaded = {}

    def load():
        loaded["sets"] = load_features(data), (load_features(unlabelled) if unlabelled else None)

    dist.on_main(load)  # rank 0 first: a named dataset is extracted into the cache once
    if "sets" not in loaded:
        load()
    fs, pool = loaded["sets"]
    out = train(fs, model_cfg, train_cfg, run_dir, seeds=seeds, unlabelled=pool,
                resume=bool(args.resume), progress=args.progress, data_ref=str(data))
    if dist.is_main():
        if model_cfg.name == "musefuse":
            _musefuse_checkpoints(run_dir, seeds, train_cfg.label)
        print(out["table"])
        print(f"results: {run_dir / 'results.json'}")
    return 0


def _musefuse_checkpoints(run_dir: Path, seeds, label: str) -> None:
    """MuseFuse's own checkpoint name beside ``best.pt`` (the same content: state dict, training
    configuration, validation metrics), so scripts written for its README find it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for seed in seeds:
        best = run_dir / f"seed_{seed}" / "best.pt"
        if best.is_file() and not any(best.parent.glob(f"musefuse_memo_{label}_*.pt")):
            target = best.parent / f"musefuse_memo_{label}_{stamp}.pt"

            with atomic_path(target) as tmp:
                shutil.copyfile(best, tmp)
