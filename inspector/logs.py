"""Log lines on stderr: plain text, or one JSON object per line for a journal or a log shipper.

Every command logs through the root logger's one handler set up here, third-party loggers too
(the QA page's access log comes from werkzeug). Text has no colour codes unless stderr is a
terminal; JSON never has them. With JSON, what native libraries write straight to the process's
stderr (libpng's "libpng error: ..." from OpenCV) comes through the logger too
(`native_messages`), so every line stays JSON.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

FORMATS = ("text", "json")
PROGRESS = "inspector.progress"  # the logger of long work's progress lines, shown at any level
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def _plain(text: str) -> str:
    return _COLOUR.sub("", text)


class TextFormatter(logging.Formatter):
    """`2026-11-23 12:00:00,123 INFO message`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if sys.stderr.isatty() else _plain(text)


class JsonFormatter(logging.Formatter):
    """{"time": ISO 8601 UTC, "level", "logger", "message"[, "exception"]} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _plain(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted (click's test runner swaps it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


def setup(verbose: int = 0, log_format: str = "text", level: int = logging.WARNING) -> None:
    """Log inspector's records from `level` (each `verbose` step one level lower, down to DEBUG)
    and other libraries' from WARNING, in `log_format`, on stderr. Calling it again replaces the
    earlier set-up."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    logging.getLogger("inspector").setLevel(max(logging.DEBUG, level - 10 * verbose))
    logging.getLogger(PROGRESS).setLevel(logging.INFO)


@contextmanager
def native_messages() -> Iterator[None]:
    """Route what C libraries write to file descriptor 2 through the logger `inspector.native`
    (a WARNING per line), while Python's own stderr writes to the real stderr. A stderr that is
    not the process's own (a test runner's) is left alone."""
    try:
        if sys.stderr.fileno() != 2:
            raise OSError
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    python_stderr, sys.stderr = sys.stderr, open(saved, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                                                 closefd=False)
    pump = threading.Thread(target=_log_lines, args=(read_end,), daemon=True, name="inspector-native-log")
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the pump reads to its end and stops
        pump.join(timeout=5)
        sys.stderr.close()
        sys.stderr = python_stderr
        os.close(saved)


def _log_lines(fd: int) -> None:
    log = logging.getLogger("inspector.native")
    with open(fd, "rb") as pipe:
        for line in pipe:
            text = line.decode("utf-8", "backslashreplace").rstrip()
            if text:
                log.warning("%s", text)
