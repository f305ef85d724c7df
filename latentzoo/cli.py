"""Console scripts ``latentzoo`` and ``brainscore``.

Each subcommand is one ``_cmd_<name>(args)`` function plus its argparse set-up in ``_parser()``.
Exit codes: 0 success, 1 a user or data error (one line on stderr; ``--debug`` for the traceback),
2 a bad command line (argparse).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, Sequence

from latentzoo.errors import UserError

# Brain-Score must never pip-install or query EC2 metadata from inside latentzoo.
os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentzoo", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = _adder(sub)  # noqa: F841  (each command block below calls add(name, handler, help))
    return p


def _adder(sub: argparse._SubParsersAction) -> Callable[..., argparse.ArgumentParser]:
    """``_add(name, func, help)`` registers a subcommand whose handler is ``func(args)``."""

    def add(name: str, func: Callable[[argparse.Namespace], int | None], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    return add


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        if args.debug:
            traceback.print_exc()
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``latentzoo`` command."""
    return _run(_parser(), argv)


def brainscore_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``brainscore`` command (score/list); filled in by the Brain-Score part."""
    raise SystemExit("brainscore: not available yet")


if __name__ == "__main__":
    sys.exit(main())
