"""Passwords for the line outputs: from a file or an environment variable, never from a log."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError


def read_password(file: Path | None, env: str, option: str) -> str | None:
    """The first line of `file` (the `option` that named it), else the variable `env`, else None."""
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").splitlines()[0] if file.stat().st_size else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{option}: cannot read {file}: {exc}") from None
    return os.environ.get(env)


__all__ = ["read_password"]
