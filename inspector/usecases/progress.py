"""How a use case reports progress on long work without knowing who shows it."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable, Protocol


class Bar(Protocol):
    def update(self, steps: int, current: Any = None) -> None:
        """`steps` more done; `current` says what (a loss, a file)."""


# progress(length, label, **options) -> a context manager giving a `Bar`; the command line's
# shows a bar on a terminal; options are those of click.progressbar (show_pos, item_show_func).
Progress = Callable[..., AbstractContextManager]
Warn = Callable[[str], None]


class _Silent:
    def update(self, steps: int, current: Any = None) -> None:
        pass


def no_progress(length: int, label: str, **options) -> AbstractContextManager:
    return nullcontext(_Silent())


def no_warnings(message: str) -> None:
    pass
