"""Bearer tokens of the authenticated listeners (admin, experimentation API): read once at start-up."""

from __future__ import annotations

import os
from pathlib import Path

from serving.errors import ConfigError

MIN_TOKEN_LENGTH = 16


def read_token(path: Path | None, env: str, *, setting: str, file_setting: str, what: str) -> str:
    """The token from ``path`` (the ``file_setting``, when given) or the environment variable
    ``env``; ``ConfigError`` naming the settings when it cannot be read or is under 16 characters."""
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{file_setting}: cannot read {path}: {exc}") from exc
    else:
        token = os.environ.get(env, "").strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{setting}: {what} needs a token of at least {MIN_TOKEN_LENGTH} characters ({file_setting} or {env})"
        )
    return token
