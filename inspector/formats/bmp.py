"""BMP: its signature, its completeness rule and the size its header declares.

Completeness: the file size declared in the header (bytes 2-6) equals the file's size.
"""

from __future__ import annotations

import struct

from .image_format import COMPLETE, INCOMPLETE, UNKNOWN

SIGNATURE = b"BM"


def completeness(data: bytes) -> tuple[str, str]:
    """Complete when the file is exactly as long as its header declares."""
    if len(data) < 6:
        return INCOMPLETE, "its header is cut short"
    (declared,) = struct.unpack("<I", data[2:6])
    if declared == len(data):
        return COMPLETE, ""
    if declared > len(data):
        return INCOMPLETE, f"{len(data)} of the {declared} bytes its header declares"
    return UNKNOWN, "larger than its header declares"


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the info header; a negative height (rows top down) counts as its
    size. None if the header is cut short."""
    if data[:2] == SIGNATURE and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    return None
