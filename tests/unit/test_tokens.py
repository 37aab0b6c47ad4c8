"""Tokens of the authenticated listeners: from a file or the environment, 16+ characters, errors naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.errors import ConfigError
from serving.tokens import read_token

KW = {"setting": "experiments serve", "file_setting": "--token-file", "what": "the experiments API"}


def test_a_file_wins_over_the_environment_and_is_stripped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_ENV_X", "e" * 20)
    token = tmp_path / "token"
    token.write_text("f" * 20 + "\n")
    assert read_token(token, "TOKEN_ENV_X", **KW) == "f" * 20
    assert read_token(None, "TOKEN_ENV_X", **KW) == "e" * 20


def test_short_missing_or_unreadable_tokens_are_refused_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN_ENV_X", "short")
    with pytest.raises(ConfigError, match=r"experiments serve: the experiments API needs a token of at least 16"):
        read_token(None, "TOKEN_ENV_X", **KW)
    with pytest.raises(ConfigError, match=r"--token-file: cannot read"):
        read_token(tmp_path / "missing", "TOKEN_ENV_X", **KW)
