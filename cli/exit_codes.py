"""Exit codes of every ``encore`` command, and the one mapping from exceptions to them.

Every command ends with its code; a failure also prints one line on stderr,
``encore <command>: <message>`` (``cli.main`` prints it; ``-v`` adds the traceback to the log).

====  ============  ==========================================================================
code  name          meaning
====  ============  ==========================================================================
0     OK            done; a check passed
1     FAILED        the command ran and the answer is no: ``experiments validate`` found
                    problems, ``replay`` crossed a threshold, ``experiments simulate`` missed
                    the planted effect, ``rank``/``admin``: the server answered with an error
                    status, ``serve --workers``: the workers kept dying
2     BAD_INPUT     the command could not run as given: usage (an unknown flag, a missing
                    argument), an unreadable or invalid file or setting (bundle, settings,
                    experiments, dataset, captures, logs), a malformed Redis URL, an address
                    that cannot be used (a ``--port`` already in use, a ``--target`` or a
                    Redis that does not answer); every ``EncoreError`` not listed elsewhere
3     SRM           ``experiments analyze``/``report``: sample-ratio mismatch (the report is
                    printed or written)
70    INTERNAL      a bug in Encore (``common.errors.InternalError`` or an unexpected
                    exception, whose traceback is printed)
130   INTERRUPTED   Ctrl-C
141   PIPE_CLOSED   the reader of stdout went away (``encore … | head -1``): the rest of the
                    output is dropped quietly; 128 + SIGPIPE, as a shell reports other tools
====  ============  ==========================================================================

``encore bench`` and ``encore replay`` parse their own arguments and use the same table; a
command that ends with ``SystemExit("message")`` exits 2 with that message.
"""

from __future__ import annotations

from typing import Final

from common.errors import EncoreError, InternalError

OK: Final = 0
FAILED: Final = 1
BAD_INPUT: Final = 2
SRM: Final = 3
INTERNAL: Final = 70
INTERRUPTED: Final = 130
PIPE_CLOSED: Final = 141


class UsageError(EncoreError):
    """A flag combination argparse cannot check (e.g. ``--dataset hetrec`` without ``--data-path``)."""


class TargetUnreachable(EncoreError):
    """A ``--target`` server that does not answer (down, wrong address, or a TLS mismatch)."""


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an exception that ended a command (see the table above)."""
    if isinstance(exc, SystemExit):  # ``raise SystemExit("message")``: the command could not run
        return BAD_INPUT if isinstance(exc.code, str) else int(exc.code or 0)
    if isinstance(exc, BrokenPipeError):
        return PIPE_CLOSED
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, InternalError):
        return INTERNAL
    if isinstance(exc, EncoreError | OSError):  # OSError: a file or address the command was given
        return BAD_INPUT
    return INTERNAL
