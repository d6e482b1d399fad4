"""``visionnets``: the command line, a thin shell over the Python API.

Errors raised on purpose (``VisionnetsError``) print ``error: <message>`` on one line and exit
with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from visionnets import __version__
from visionnets.commands import COMMANDS
from visionnets.errors import VisionnetsError


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``command``'s sub-parser gets its arguments (every one's when None). Only that
    command's module is imported: some import scikit-learn or matplotlib, and a command should not
    wait seconds for the others' imports (``compare``'s alone took 3.3 s of every start)."""
    parser = argparse.ArgumentParser(
        prog="visionnets",
        description="Neural nets for vision (CVPR 2012 tutorial, part II): train, inspect and "
                    "compare deep nets built from simple blocks.")
    parser.add_argument("--version", action="version", version=f"visionnets {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name, help=help_)          # listed in the help, never parsed here
            continue
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip().splitlines()[0])
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in COMMANDS else "")
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except VisionnetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:          # the output's reader stopped early (`visionnets ... | head`): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
