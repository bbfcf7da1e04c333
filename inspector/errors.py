"""The errors `inspector` raises on purpose: each says, in one line, what the user can fix.

The command line prints an `InspectorError` as a one-line message (exit code 1); anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import os


class InspectorError(Exception):
    """An expected failure the user can act on: bad settings, a broken model bundle, bad input."""


class ConfigError(InspectorError, ValueError):
    """A pipeline file or setting is invalid; the message names the offending key."""


class BundleError(InspectorError):
    """A model directory is missing, incomplete, corrupt or made by an incompatible version."""


class CalibrationError(InspectorError, ValueError):
    """A threshold cannot be chosen from the data given (too few scores, missing defects)."""


class TrainingError(InspectorError):
    """A model cannot be trained on the data given (too few readable images)."""


class DatabaseError(InspectorError):
    """The database cannot be used: unreachable, of an unknown type, missing, or (SQLite) its file
    was deleted or replaced while in use. A database that is only locked is waited for instead."""


class ImageError(InspectorError):
    """An input file cannot be used as an image; `reason` says why, in words for a log."""

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = str(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)

    def __reduce__(self):  # pickled with its two arguments: it crosses from a decoding worker
        return ImageError, (self.path, self.reason)
