"""``merkit`` command line: a thin layer that parses flags and calls library functions.

Each sub-command lives in ``merkit.commands.<name>`` and provides ``register(subparsers)``
(which adds its parser and sets ``func``); :data:`merkit.commands.COMMANDS` lists them, so that
adding a command touches its module and that table. Only the command being run is imported.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys

from .commands import COMMANDS, module_name
from . import __version__
from .outputs import space_error
from .stopping import describe, stop_on_signals
from .stdio import quiet_native_stderr


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser. Only ``command``'s own module is imported and registered (all of them when
    ``command`` is ``"*"``, as the tests do); the others are listed from the static table."""

    p = argparse.ArgumentParser(prog="merkit", description="Music emotion recognition toolkit.")
    p.add_argument("--version", action="version", version=f"merkit {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS.items():
        if command in (name, "*"):
            importlib.import_module(module_name(name)).register(sub)
            plain_help(sub.choices[name])
        else:
            sub.add_parser(name, help=summary)
    return p


_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr):`~?([^`]+)`")


def plain_text(text: str | None) -> str | None:
    """Help text without reST markup: the command modules' docstrings double as their
    ``--help`` descriptions, and ``:func:`~merkit.x.f``` or ````code```` reads badly in a
    terminal. A role keeps its last name (``f``), double backquotes become single ones."""
    if not text:
        return text
    text = _ROLE.sub(lambda m: "`" + m.group(1).rsplit(".", 1)[-1] + "`", text)
    return text.replace("``", "`")


def plain_help(parser: argparse.ArgumentParser) -> None:
    """:func:`plain_text` on a parser's description, epilog and every option's help, and on
    its sub-commands' parsers."""
    parser.description, parser.epilog = plain_text(parser.description), plain_text(parser.epilog)
    for action in parser._actions:
        if isinstance(action.help, str):
            action.help = plain_text(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                plain_help(child)


def command_of(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not a global option)."""
    return next((a for a in argv if not a.startswith("-")), None)


# what a stopped command keeps, said in its one line
RESUME_HINTS = {
    "extract": "; finished tracks are kept: rerun the same command to resume",
    "extract-dynamic": "; finished tracks are kept: rerun the same command to resume",
    "train": "; finished epochs are kept: merkit train --resume RUN_DIR continues",
    "compare": "; finished runs are kept: merkit compare --resume RUN_DIR continues",
    "ablate": "; finished runs are kept: merkit ablate --resume RUN_DIR continues",
}

# commands that decode user audio (libmpg123's notes on damaged MP3s would flood their output)
QUIET_NATIVE_COMMANDS = ("predict", "extract", "serve", "medleys", "extract-dynamic")


def normalise_flags(argv: list[str]) -> list[str]:
    """``--batch_size 8`` -> ``--batch-size 8``: the underscore spelling of every flag works, as
    in the research scripts (MuseFuse's README uses ``--label_mode``, ``--data_root``, ...).
    Values are left alone, and so is everything after a bare ``--``."""
    out, flags = [], True
    for a in argv:
        if a == "--":
            flags = False
        if flags and a.startswith("--") and "_" in a.split("=", 1)[0]:
            name, eq, value = a.partition("=")
            a = name.replace("_", "-") + eq + value
        out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = normalise_flags(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    if args.command in QUIET_NATIVE_COMMANDS:  # before logging binds a handler to sys.stderr

        quiet_native_stderr()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2

    stop_on_signals()  # SIGTERM / SIGHUP keep finished work, as Ctrl-C does
    try:
        rc = args.func(args)
    except KeyboardInterrupt as e:
        what, code = describe(e)
        if not getattr(e, "reported", False):  # a command that kept work says so in its own line
            print(f"merkit {args.command}: stopped by {what}{RESUME_HINTS.get(args.command, '')}", file=sys.stderr)
        return code
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        # Expected user-facing failures: one clear line, no traceback (use -v for one).
        if args.verbose:
            raise
        print(f"merkit {args.command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a full disk, a permission, a vanished folder: one line naming the path
        if args.verbose:
            raise
        err = space_error(e, e.filename) if e.filename else None
        msg = str(err) if err else (f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e))
        print(f"merkit {args.command}: error: {msg}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
