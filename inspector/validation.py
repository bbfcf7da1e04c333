"""Typed settings from plain data: the checks every settings table of a pipeline goes through.

A settings class is a frozen dataclass whose field defaults give each key's type, with a
`validate(where)` method raising `ConfigError` for a bad value. `settings_from_dict` builds one
from a parsed TOML table (or a bundle's JSON), naming any unknown or mistyped key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import ConfigError


def settings_from_dict(cls: type, raw: Any, key: str, source: str, hint: str = "") -> Any:
    """A validated `cls` from the table `raw` found at `key` in `source`.

    `hint` is added to the message about an unknown key (say, which keys would be known).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{key}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in fields:
            raise ConfigError(f"{source}: unknown key '{key}.{name}'{hint}")
        values[name] = coerce(f"{key}.{name}", value, fields[name].default, source)
    try:
        settings = cls(**values)
        settings.validate(key)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return settings


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """Plain data of a settings dataclass, as `settings_from_dict` reads it back (lists, not tuples)."""
    return {name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(settings).items()}


def coerce(where: str, value: Any, default: Any, source: str) -> Any:
    """Check a value against the type of the field's default; ints are accepted for floats."""
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{where}' must be a list")
        return tuple(value)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{source}: '{where}' must be of type {type(default).__name__}, got {value!r}")
    return value


def check_choice(where: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"'{where}' must be one of {', '.join(choices)}; got {value!r}")


def check_range(where: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"'{where}' must be between {low} and {high}; got {value!r}")
