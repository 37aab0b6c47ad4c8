"""``encore bench``: the latency/throughput benchmark; it parses its own arguments (and ``--help``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bn = sub.add_parser(
        "bench",
        help="benchmark: component floor, server stages, open-loop rate steps, memory (see --help)",
        add_help=False,
    )
    bn.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for loadtests.bench")
    bn.set_defaults(func=lambda args: run(args.bench_args))


def run(argv: Sequence[str]) -> int:
    from loadtests.bench.runner import main

    return main(list(argv))
