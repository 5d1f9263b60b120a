"""The command line itself: the static command table, fast help, one-line stops."""
from __future__ import annotations

import argparse
import subprocess
import sys

from merkit.cli import build_parser, command_of
from merkit.commands import COMMANDS

# `merkit --help` must not pay for torch (3 s of imports): only the command that runs imports
# what it needs. Checked by what is imported, not by a clock (CI machines are noisy).
_NO_TORCH = """
import sys
from merkit.cli import main
try:
    main({argv!r})
except SystemExit as e:
    assert e.code == 0, e.code
heavy = sorted(m for m in ("torch", "sklearn", "scipy", "soundfile", "matplotlib") if m in sys.modules)
print("HEAVY", heavy)
"""


def _heavy_imports(argv):
    out = subprocess.run([sys.executable, "-c", _NO_TORCH.format(argv=argv)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY")][-1]
    return eval(line[len("HEAVY "):])  # noqa: S307 (our own print of a list of names)


def test_help_imports_no_heavy_library():
    assert _heavy_imports(["--help"]) == []
    for name in COMMANDS:  # every command's own --help too
        assert _heavy_imports([name, "--help"]) == [], name


def test_static_table_is_what_each_command_registers():
    full = build_parser("*")
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    registered = {c.dest: c.help for c in sub._choices_actions}
    assert registered == COMMANDS  # same names, same order, same one-line help
    for name in COMMANDS:
        assert sub.choices[name].get_default("func") is not None, name  # every module sets its runner
    lean = build_parser()
    lean_sub = next(a for a in lean._actions if isinstance(a, argparse._SubParsersAction))
    assert [c.dest for c in lean_sub._choices_actions] == list(COMMANDS)


def test_command_of_skips_global_options():
    assert command_of(["-v", "predict", "x.mp3"]) == "predict"
    assert command_of(["--version"]) is None
    assert command_of([]) is None


def test_help_texts_have_no_rest_markup():
    from merkit.cli import plain_text

    assert plain_text("see :func:`~merkit.predict.load_model` and ``-o``") == "see `load_model` and `-o`"
    full = build_parser("*")
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        text = parser.format_help()
        for mark in ("``", ":func:", ":class:", ":meth:", ":mod:", ":data:"):
            assert mark not in text, (name, mark)
