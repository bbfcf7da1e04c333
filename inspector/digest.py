"""The SHA-256 of a file's content: one function for bundles (the model's checksum, the
training images' fingerprint) and for the inbox (verifying a move or a copy).

A leaf: imports only the standard library.
"""

from __future__ import annotations

import hashlib
import os

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike, follow_symlinks: bool = True) -> str:
    """The hex SHA-256 of the file at `path`, read in 1 MiB chunks.

    With `follow_symlinks=False` a symlink is refused (`OSError`, ELOOP) instead of read
    through, and the file is opened without blocking (a FIFO swapped in does not hang the
    caller): what the inbox needs, where anyone may write.
    """
    if follow_symlinks:
        opened = open(path, "rb")
    else:
        opened = open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb")
    digest = hashlib.sha256()
    with opened as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
