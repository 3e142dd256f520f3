"""``holdsgm``: one entry point with subcommands.

Each subcommand lives in its own module of this package, exposing ``register(subparsers)``, which adds
its parser and sets ``func`` (called with the parsed args, returning an exit code or None).
User errors (:class:`holdsgm.errors.HoldsgmError`, ValueError, OSError) are printed as one line and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand modules, in the order ``--help`` lists them
COMMANDS = ["demo", "train", "sample", "eval", "likelihood", "fid", "bench", "data", "vocode", "tts", "config"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="holdsgm",
        description="Score-based generative modelling with phase-space SDEs (VP, CLD, HOLD).")
    parser.add_argument("--version", action="version", version=f"holdsgm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"holdsgm.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"holdsgm.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is the one global flag: accepted in any position (holdsgm sample RUN --debug)
    debug = "--debug" in argv[: argv.index("--")] if "--" in argv else "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        args = parser.parse_args(argv)
    except ValueError as e:  # an option's own check (--set without '='): one line, like every user error
        if debug:
            raise
        command = next((a for a in argv if not a.startswith("-")), "")
        print(f"holdsgm {command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 1
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("holdsgm: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:  # HoldsgmError subclasses ValueError
        if debug:
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"holdsgm {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
