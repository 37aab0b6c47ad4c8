"""``encore config table``: every setting, its ``ENCORE_*`` variable, type, default and description.

The table is generated from ``serving.config`` (``settings_table``) and is the README's, between
the ``<!-- settings-table:start -->`` / ``<!-- settings-table:end -->`` markers: ``--write README.md``
replaces that block, ``--check README.md`` exits 1 when it differs (a unit test checks it too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.exit_codes import FAILED, OK

START = "<!-- settings-table:start -->"
END = "<!-- settings-table:end -->"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("config", help="settings: the table of every key and its ENCORE_* variable")
    actions = c.add_subparsers(dest="action", required=True)
    t = actions.add_parser("table", help="print the Markdown table of every setting (README's settings table)")
    where = t.add_mutually_exclusive_group()
    where.add_argument("--check", type=Path, metavar="FILE", help="exit 1 when FILE's table block differs")
    where.add_argument("--write", type=Path, metavar="FILE", help="replace FILE's table block with the table")
    t.set_defaults(func=run_table)


def table_block(text: str, source: str = "text") -> str:
    """The table between the markers of ``text``; ``ConfigError`` when they are missing."""
    from serving.errors import ConfigError

    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ConfigError(f"{source}: no {START} … {END} block")
    return text[start + len(START) : end].strip("\n") + "\n"


def with_table(text: str, table: str, source: str = "text") -> str:
    """``text`` with the block between the markers replaced by ``table``."""
    table_block(text, source)  # the markers are there
    start, end = text.find(START) + len(START), text.find(END)
    return f"{text[:start]}\n{table}{text[end:]}"


def run_table(args: argparse.Namespace) -> int:
    from serving.config import settings_table

    table = settings_table()
    if args.check is not None:
        if table_block(args.check.read_text(encoding="utf-8"), str(args.check)) != table:
            print(f"{args.check}: the settings table is out of date: encore config table --write {args.check}")
            return FAILED
        return OK
    if args.write is not None:
        text = args.write.read_text(encoding="utf-8")
        args.write.write_text(with_table(text, table, str(args.write)), encoding="utf-8")
        return OK
    sys.stdout.write(table)
    return OK
