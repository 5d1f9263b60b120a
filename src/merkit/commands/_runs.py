"""What the training commands share: reading ``--data``, naming and checking a new run folder,
which flags each family takes, a model file's family, and the tables of the families trained
outside the DAMER loop (``train``, ``train_unified``, ``train_dynamic``, ``compare``,
``ablate``, ``evaluate`` and ``plot`` import it; it imports none of them)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..config import ModelConfig, TrainConfig
from ._args import config_from_args
from ..outputs import OutputError, check_folder
from ..evaluation.protocol import format_cell
from ..models import MODELS, get_spec


def new_run(args, name: str):
    """Configs, seeds and a fresh run folder for a new run from the command line.

    ``name`` formats the default folder under ``runs/`` with ``data``, ``label`` and ``model``;
    a time stamp is appended."""
    if not args.data:
        raise ValueError("--data is required (or --resume RUN_DIR)")

    spec = get_spec(args.model)
    model_cfg = config_from_args(ModelConfig(**{**spec.model_defaults, "name": args.model}), args)
    train_cfg = config_from_args(TrainConfig(**spec.train_defaults), args)
    seeds = args.seeds or [train_cfg.seed]
    default = name.format(data=Path(args.data).name, label=train_cfg.label, model=model_cfg.name)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"{default}_{time.strftime('%Y%m%d-%H%M%S')}"
    _check_run_dir(run_dir, args.data)
    return model_cfg, train_cfg, seeds, run_dir


def _check_run_dir(run_dir: Path, data) -> None:
    """A new run needs a new or empty folder (``--resume`` continues a stopped one)."""

    try:
        check_folder(run_dir, flag="--run-dir", inputs=[d for d in str(data or "").split(",") if d], empty=True)
    except OutputError as e:
        raise OutputError(f"{e}" + ("; or --resume it" if "not empty" in str(e) else "")) from None


def _model_kind(path: Path) -> str | None:
    """The family of a model file (``damer``, ``unified``, ``dsaml``, ...), None for other files."""
    from ..checkpoint import checkpoint_kind

    return checkpoint_kind(path)


def _outside_loop() -> dict[str, tuple[str, ...]]:
    """Families trained outside the DAMER loop and the flags each takes (merkit.models.MODELS)."""

    return {n: s.cli_flags for n, s in MODELS.items() if not s.in_loop}


def _config_dests() -> set[str]:
    import dataclasses

    return ({f.name for f in dataclasses.fields(ModelConfig)} | {f.name for f in dataclasses.fields(TrainConfig)}
            | {"kd_weight", "inputs", "unlabelled"})


def family_config(arch: str):
    """The training config class of a family trained outside the DAMER loop (its defaults are
    the ones ``merkit train --arch ARCH`` uses)."""

    return get_spec(arch).train_config_class()


def family_help(arch: str) -> str:
    """``merkit train --arch unified|dsaml --help``: only the options that family takes, with its
    own defaults (the full help lists the DAMER loop's, e.g. --epochs 80)."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(family_config(arch))}
    if arch == "unified":  # the network's inputs: a field of the model's own config
        from ..models.unified import DEFAULT_INPUTS

        defaults["inputs"] = ",".join(DEFAULT_INPUTS)
    what = {"unified": "the multi-corpus model on encoder embeddings (+ key/chord features); --data takes a "
                       "comma-separated list of feature folders (with the musicnn view) or dataset names",
            "dsaml": "the dynamic (2 Hz) model; --data is a `merkit extract-dynamic` folder"}[arch]
    lines = [f"usage: merkit train --arch {arch} --data DATA [options]", "", f"{arch}: {what}.", "",
             "options of this family (default):"]
    for dest in _outside_loop()[arch]:
        lines.append(f"  --{dest.replace('_', '-'):<18} {defaults.get(dest)}")
    lines += ["", "and for every family: --data, --seeds SEED ... (default 0), --run-dir DIR, --threads N, "
              "--no-progress.", "Any other training option is refused for this family."]
    return "\n".join(lines) + "\n"


def family_overrides(args) -> dict:
    """The config fields ``--arch unified`` / ``dsaml`` take from the flags the user set; a
    flag the family does not use is a :class:`ValueError` naming it."""
    import dataclasses

    flags = _outside_loop().get(args.model)
    if flags is None:  # the DAMER loop's families: every ModelConfig / TrainConfig flag applies
        for flag in ("kd_weight", "inputs"):
            if getattr(args, flag, None) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} is an option of --arch unified, not of "
                                 f"--arch {args.model}")
        return {}
    unused = sorted(k for k, v in vars(args).items() if v is not None and k in _config_dests() and k not in flags)
    if unused:
        names = ", ".join("--" + k.replace("_", "-") for k in unused)
        takes = ", ".join("--" + k.replace("_", "-") for k in flags)
        raise ValueError(f"--arch {args.model} does not use {names}; it takes {takes} (and --data, --seeds, "
                         "--run-dir)")
    fields = {f.name for f in dataclasses.fields(family_config(args.model))}
    return {k: getattr(args, k) for k in flags if k in fields and getattr(args, k) is not None}


def unified_table(per_seed: list[dict[str, dict[str, float]]]) -> str:
    """Mean ± std over seeds of each corpus's test metrics (``per_seed``: corpus -> metric -> value)."""

    lines = ["| corpus | metric | test |", "|---|---|--:|"]
    for name in per_seed[0]:
        for m in sorted(per_seed[0][name]):
            vals = [s[name][m] for s in per_seed if m in s.get(name, {})]
            lines.append(f"| {name} | {m} | {format_cell({'mean': float(np.mean(vals)), 'std': float(np.std(vals)), 'n': len(vals)})} |")
    return "\n".join(lines)


def dynamic_table(per_seed: list[dict[str, float]]) -> str:
    """Mean ± std over seeds of the per-song test metrics."""

    lines = ["| metric | test (per song, mean over songs) |", "|---|--:|"]
    for k in per_seed[0]:
        vals = [p[k] for p in per_seed]
        lines.append(f"| {k} | {format_cell({'mean': float(np.nanmean(vals)), 'std': float(np.nanstd(vals)), 'n': len(vals)})} |")
    return "\n".join(lines)
