"""Image files on disk: which files in a folder are images (by the table's suffixes), and
reading one safely (never too large, never blocking on a FIFO, optionally never through a
symlink).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import ImageError
from .table import IMAGE_SUFFIXES

MAX_FILE_BYTES = 256 * 1024 * 1024


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in `folder`, sorted by name; hidden files are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(folder, "not a folder")
    return sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def check_file_size(size: int, path: str | os.PathLike | None = None) -> None:
    """Refuse a file too large to read (`ImageError`), before reading it."""
    if size > MAX_FILE_BYTES:
        raise ImageError(path, f"file too large ({size} bytes, limit {MAX_FILE_BYTES})")


def read_bytes(path: str | os.PathLike, follow_symlinks: bool = True) -> bytes:
    """Read a file, refusing oversized ones with an `ImageError`.

    With `follow_symlinks=False` a symlink (even one swapped in at the last moment) is refused
    instead of read. Opening never blocks (a FIFO would wait for a writer): anything but a
    regular file is refused.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ImageError(path, "not a regular file (a FIFO, socket or device); not read")
            check_file_size(st.st_size, path)
            return fh.read()
    except OSError as exc:
        raise ImageError(path, f"cannot read file: {exc.strerror or exc}") from exc
