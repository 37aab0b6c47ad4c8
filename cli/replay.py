"""``encore replay``: replay captured traffic and diff the answers; it parses its own arguments."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rp = sub.add_parser(
        "replay",
        help="replay captured traffic against primary/candidate/secondary and diff (see --help)",
        add_help=False,
    )
    rp.add_argument("replay_args", nargs=argparse.REMAINDER, help="arguments for loadtests.replay")
    rp.set_defaults(func=lambda args: run(args.replay_args))


def run(argv: Sequence[str]) -> int:
    from loadtests.replay.run import main

    return main(list(argv))
