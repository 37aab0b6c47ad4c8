"""Entry point of the ``encore`` command: parser assembly, dispatch and the one error handler.

Each command is a module of this package with ``add_parser(subparsers)`` and a run function; this
module imports no command's dependencies (those are imported when the command runs), so
``encore serve --workers`` can configure prometheus_client first and ``encore serve`` never imports
offline code. Every command ends with an exit code from ``cli.exit_codes``; an error ends it with
one line on stderr, ``encore <command>: <message>``, and no traceback (``-v`` logs it), except for
a bug (exit 70), which keeps its traceback. A closed stdout (``encore … | head -1``) ends quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import cast

from cli import admin, bench, build, bundles, captures, config, experiments, features, rank, replay, serve
from cli.exit_codes import INTERNAL, exit_code_for
from common.cli_help import show_defaults

log = logging.getLogger("encore")

USAGE = """\
The ``encore`` command: build bundles, serve them, and rank against a running server.

encore build  [--dataset synthetic|hetrec] [--data-path DIR] [--n-items N] [--n-users N] [--out DIR]
encore serve  --bundle DIR [--port 50051] [--redis-url URL [--load-features]] [--metrics-port 9464]
encore rank   --user-id U [--surface home|now_playing] [--seed-item-id I] [--limit N] [--target HOST:PORT]
"""

#: In ``encore --help`` order.
COMMANDS = (build, bundles, serve, config, experiments, features, bench, replay, captures, admin, rank)

#: Commands that parse their own arguments (and ``--help``): ``encore bench …`` is ``loadtests.bench …``.
OWN_ARGUMENTS: dict[str, Callable[[Sequence[str]], int]] = {"bench": bench.run, "replay": replay.run}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="encore", description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return show_defaults(p)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``encore`` command; returns its exit code (see ``cli.exit_codes``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv and argv[0] in OWN_ARGUMENTS else None
    try:
        if name is not None:
            code = OWN_ARGUMENTS[name](argv[1:])
        else:
            args = parser().parse_args(argv)
            name = command_name(args)
            from serving.request_context import configure_logging

            configure_logging(logging.DEBUG if args.verbose else logging.INFO)
            code = int(cast(Callable[[argparse.Namespace], int], args.func)(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except SystemExit as exc:  # argparse (usage: exit 2, --help: exit 0), or a command's message
        if not isinstance(exc.code, str):
            try:
                sys.stdout.flush()  # e.g. --help still in the buffer
            except BrokenPipeError as broken:
                return handle(name or "encore", broken)
            raise
        message = exc.code.removeprefix(f"{name}: ")
        if message.startswith("encore"):
            with contextlib.suppress(OSError):
                print(message, file=sys.stderr, flush=True)
        else:
            report(name or "encore", message)
        return exit_code_for(exc)
    except BaseException as exc:
        return handle(name or "encore", exc)


def handle(name: str, exc: BaseException) -> int:
    """End command ``name`` after ``exc``: the one-line error (traceback only for a bug); the exit code."""
    code = exit_code_for(exc)
    if isinstance(exc, BrokenPipeError):
        quiet_stdout()
    elif isinstance(exc, KeyboardInterrupt):
        pass
    elif code == INTERNAL:
        traceback.print_exception(exc)
        report(name, f"internal error (a bug): {type(exc).__name__}: {exc}")
    else:
        log.debug("%s failed", name, exc_info=exc)
        report(name, str(exc) or type(exc).__name__)
    return code


def report(name: str, message: str) -> None:
    """``encore <command>: <message>`` on stderr (never raises: stderr may be a closed pipe too)."""
    with contextlib.suppress(OSError):
        print(f"encore {name}: {message}", file=sys.stderr, flush=True)


def quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush cannot fail.

    The recipe of the Python docs (signal module, "Note on SIGPIPE").
    """
    with contextlib.suppress(OSError, ValueError):  # ValueError, OSError: stdout has no descriptor (tests)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def command_name(args: argparse.Namespace) -> str:
    """``serve``, ``experiments validate``, ``admin status`` …: how error lines name the command."""
    parts = [args.command, getattr(args, "experiments_command", None), getattr(args, "action", None)]
    return " ".join(p for p in parts if p)


if __name__ == "__main__":
    raise SystemExit(main())
