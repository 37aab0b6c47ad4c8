"""``--help`` that shows every option's default: the formatter every ``encore`` parser uses.

``DefaultsHelpFormatter`` keeps descriptions as written (like ``RawDescriptionHelpFormatter``) and
appends ``(default: X)`` to an option's help unless the help already names its default, the
default is ``None``/``False``/suppressed, or the option is a flag. ``show_defaults(parser)`` applies
it to a parser and every sub-parser under it.
"""

from __future__ import annotations

import argparse

__all__ = ["DefaultsHelpFormatter", "show_defaults"]


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Raw descriptions, and ``(default: X)`` after each option that has a meaningful default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not _meaningful(action) or "default" in text:
            return action.help
        default = action.default
        return f"{text} (default: {_shown(default)})"


def _meaningful(action: argparse.Action) -> bool:
    """Whether ``action`` has a default worth printing (flags and unset options have none)."""
    default = action.default
    return not (default is None or default is False or default is argparse.SUPPRESS or action.nargs == 0)


def _shown(default: object) -> str:
    if isinstance(default, list | tuple):
        return " ".join(map(str, default))
    return str(default)


def show_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Use ``DefaultsHelpFormatter`` on ``parser`` and on every sub-parser below it; returns ``parser``."""
    parser.formatter_class = DefaultsHelpFormatter
    for action in parser._actions:
        if action.help is None and action.option_strings and _meaningful(action):
            action.help = f"default: {_shown(action.default)}"  # argparse prints nothing for help=None
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                show_defaults(child)
    return parser
