"""Command-line flags generated from config dataclasses (one source of truth for options)."""
from __future__ import annotations

import argparse
import dataclasses
import typing


def worker_count(text: str) -> int:
    """The one rule for ``--workers`` (processes) and ``--threads`` (decoding threads): an
    integer ≥ 0, where 0 (like 1) means in this process, with no pool."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (0: in this process), got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (0: in this process), got {n}")
    return n


def positive_int(text: str) -> int:
    """``--threads`` of torch: an integer ≥ 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return n


def _base_type(tp):
    """int | None -> int; str -> str; tuple/list types are not exposed."""
    if isinstance(tp, str):
        tp = eval(tp, {"None": None, "int": int, "float": float, "str": str, "bool": bool})  # noqa: S307
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def add_config_args(parser: argparse.ArgumentParser, cls, *, prefix: str = "", exclude=(),
                    group_title: str | None = None) -> None:
    """Add ``--{prefix}{field-name}`` for each scalar field of dataclass ``cls`` (default None =
    keep the config's value). Booleans get ``--x`` / ``--no-x``."""
    g = parser.add_argument_group(group_title or f"{cls.__name__} options")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or f.name.startswith("_"):
            continue
        tp = _base_type(hints[f.name])
        flag = "--" + prefix + f.name.replace("_", "-")
        dest = prefix.replace("-", "_") + f.name
        doc = f.metadata.get("help", "")
        helptext = f"{doc} (default: {f.default})" if doc else f"(default: {f.default})"
        if tp is bool:
            g.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        elif tp in (int, float, str):
            g.add_argument(flag, dest=dest, type=tp, default=None, metavar=tp.__name__.upper(), help=helptext)


def config_from_args(base, args: argparse.Namespace, *, prefix: str = ""):
    """``base`` with every field the user set on the command line replaced."""
    changes = {}
    for f in dataclasses.fields(base):
        v = getattr(args, prefix.replace("-", "_") + f.name, None)
        if v is not None:
            changes[f.name] = v
    return dataclasses.replace(base, **changes)


def add_cluster_args(p, items: str, note: str = "") -> None:
    """``--cluster`` and ``--shard-size`` (:mod:`merkit.cluster`) of a command that sends ``items``
    (tracks, files) to the workers; ``note`` ends the help."""
    p.add_argument("--cluster", metavar="ADDRESS", default=None,
                   help="run on a dask.distributed cluster instead of local processes: a scheduler "
                        "address (tcp://host:8786), a scheduler file (.json), or local:N for a "
                        f"LocalCluster of N processes (needs merkit[dask]){note}")
    p.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help=f"with --cluster: {items} per task (default: 32, fewer for a small input)")


def add_old_spelling(p, flag: str, dest: str, **kw) -> None:
    """Accept ``flag``, an earlier spelling of an option, as a hidden alias of ``dest`` (one
    spelling per concept in the help; scripts written for the old one keep working)."""
    p.add_argument(flag, dest=dest, help=argparse.SUPPRESS, **kw)
