"""JPEG: its signature, and one walk over its marker segments that both its completeness rule
and the size its frame header declares are read from.

The walk: marker segments one after another, each skipped by its length (so an APPn segment's
EXIF thumbnail, a JPEG of its own, is never mistaken for the main image), then each scan's
entropy-coded data up to the next marker, to the end-of-image marker of the main image.
"""

from __future__ import annotations

import re
import struct
from typing import Generator

from .image_format import COMPLETE, INCOMPLETE, UNKNOWN

# Start of image followed by the next marker's FF: what every JPEG begins with.
SIGNATURE = b"\xff\xd8\xff"
# FF followed by a byte that ends the entropy-coded data: not a stuffed zero, not a restart
# marker, not another fill byte.
_MARKER_AFTER_SCAN = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
_END_OF_IMAGE, _START_OF_SCAN = 0xD9, 0xDA
# Start-of-frame markers carry the dimensions (not DHT C4, JPG C8, DAC CC).
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_BROKEN = UNKNOWN, "JPEG marker segments are broken"
_MISSING = INCOMPLETE, "no end-of-image marker after the main image"

# (marker, start of its segment's body, end of that body) for each segment, in order; the walk
# returns its outcome: (COMPLETE, INCOMPLETE or UNKNOWN, what is missing or broken).
Segments = Generator[tuple[int, int, int], None, tuple[str, str]]


def completeness(data: bytes) -> tuple[str, str]:
    """Complete once the walk reaches the end-of-image marker of the main image."""
    walk = _segments(data)
    while True:
        try:
            next(walk)
        except StopIteration as end:
            return end.value


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame segment; None if not found."""
    for marker, body, _end in _segments(data):
        if marker in _FRAME_MARKERS:
            if body + 5 > len(data):
                return None
            # The body: sample precision (1 byte), then height and width.
            height, width = struct.unpack_from(">HH", data, body + 1)
            return width, height
    return None


def _segments(data: bytes) -> Segments:
    """The walk over the marker segments after the start-of-image marker. A segment is yielded
    as soon as its length is read, so its body may run past the end of `data`."""
    size, pos = len(data), 2
    while True:
        if pos >= size:
            return _MISSING
        if data[pos] != 0xFF:
            return _BROKEN
        while pos < size and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= size:
            return _MISSING
        marker = data[pos]
        pos += 1
        if marker == _END_OF_IMAGE:
            return COMPLETE, ""
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length follows
            continue
        if pos + 2 > size:
            return _MISSING
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        if length < 2:
            return _BROKEN
        yield marker, pos + 2, pos + length
        pos += length
        if pos > size:
            return _MISSING
        if marker == _START_OF_SCAN:  # entropy-coded data up to the next real marker
            found = _MARKER_AFTER_SCAN.search(data, pos)
            if found is None:
                return _MISSING
            pos = found.start()
