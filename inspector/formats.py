"""What an image file's own structure says without decoding it: whether it is complete, and how
many pixels it declares.

Completeness, per format (a writer may pause anywhere, for any time):
- PNG: the chunks are walked to the IEND chunk.
- JPEG: the marker segments are walked (an APPn segment is skipped by its length, so an EXIF
  thumbnail's end marker does not count), then each scan's entropy-coded data up to the next
  marker, to the end-of-image marker of the main image.
- TIFF (and BigTIFF): the chain of IFDs is followed; every IFD, every value stored outside it
  and every strip or tile (offset + byte count) must lie within the file.
- BMP: the file size declared in the header (bytes 2-6) equals the file's size.
An empty file, or the first bytes of one of these signatures, is incomplete: it may still grow.
"""

from __future__ import annotations

import re
import struct
from typing import Callable

COMPLETE = "complete"
INCOMPLETE = "incomplete"  # may still be written: wait for the rest
UNKNOWN = "unknown"  # no rule for this content (another format, or a structure broken for good)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# FF followed by a byte that ends the entropy-coded data: not a stuffed zero, not a restart
# marker, not another fill byte.
_JPEG_MARKER_AFTER_SCAN = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
                    16: 8, 17: 8, 18: 8}
_STRIPS = ((273, 279), (324, 325))  # (StripOffsets, StripByteCounts), (TileOffsets, TileByteCounts)
_MAX_IFDS = 10_000


def completeness(data: bytes) -> tuple[str, str]:
    """(COMPLETE, INCOMPLETE or UNKNOWN, and in words what is missing when incomplete)."""
    if not data:
        return INCOMPLETE, "empty file"
    for signature, name, rule in _RULES:
        if data.startswith(signature):
            state, detail = rule(data)
            return state, f"incomplete {name} file: {detail}" if state == INCOMPLETE else detail
        if len(data) < len(signature) and signature.startswith(data):
            return INCOMPLETE, f"incomplete {name} file: only {len(data)} bytes"
    return UNKNOWN, ""


def declared_pixels(data: bytes) -> int | None:
    """Width x height a PNG, JPEG, BMP or TIFF header declares; None when it cannot be told."""
    from .preprocess import declared_size

    size = declared_size(data) or tiff_size(data)
    return size[0] * size[1] if size else None


def _png(data: bytes) -> tuple[str, str]:
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        if length > 0x7FFFFFFF:
            return UNKNOWN, "a PNG chunk longer than the format allows"
        end = pos + 12 + length
        if end > len(data):
            break
        if data[pos + 4:pos + 8] == b"IEND":
            return COMPLETE, ""
        pos = end
    return INCOMPLETE, "it ends before its IEND chunk"


def _jpeg(data: bytes) -> tuple[str, str]:
    size, pos = len(data), 2
    missing = INCOMPLETE, "no end-of-image marker after the main image"
    while True:
        if pos >= size:
            return missing
        if data[pos] != 0xFF:
            return UNKNOWN, "JPEG marker segments are broken"
        while pos < size and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= size:
            return missing
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            return COMPLETE, ""
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length follows
            continue
        if pos + 2 > size:
            return missing
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        if length < 2:
            return UNKNOWN, "JPEG marker segments are broken"
        pos += length
        if pos > size:
            return missing
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            found = _JPEG_MARKER_AFTER_SCAN.search(data, pos)
            if found is None:
                return missing
            pos = found.start()


def tiff_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a TIFF's first image, from its first IFD; None if not found."""
    layout = _tiff_layout(data)
    if layout is None:
        return None
    tags = {}
    try:
        ifd = layout.first_ifd(data)
        for tag, values in layout.entries(data, ifd, wanted=(256, 257)):
            tags[tag] = values[0] if values else 0
    except (struct.error, _Beyond):
        return None
    return (tags[256], tags[257]) if 256 in tags and 257 in tags else None


def _tiff(data: bytes) -> tuple[str, str]:
    layout = _tiff_layout(data)
    if layout is None:
        return UNKNOWN, "not a TIFF header"
    if len(data) < layout.header:
        return INCOMPLETE, "its header is cut short"
    ifd, seen = layout.first_ifd(data), set()
    if ifd == 0:
        return UNKNOWN, "a TIFF without images"
    while ifd:
        if ifd in seen or len(seen) > _MAX_IFDS:
            return UNKNOWN, "its IFD chain loops"
        seen.add(ifd)
        if ifd + layout.count_size > len(data):
            return INCOMPLETE, "an IFD lies beyond the end of the file"
        count = layout.unpack(layout.count_format, data, ifd)
        end = ifd + layout.count_size + count * layout.entry_size + layout.offset_size
        if end > len(data):
            return INCOMPLETE, "an IFD lies beyond the end of the file"
        try:
            tags = dict(layout.entries(data, ifd, wanted=(273, 279, 324, 325)))
        except _Beyond:
            return INCOMPLETE, "a tag's values lie beyond the end of the file"
        for offsets, counts in _STRIPS:
            for offset, length in zip(tags.get(offsets, ()), tags.get(counts, ())):
                if offset + length > len(data):
                    return INCOMPLETE, "a strip or tile lies beyond the end of the file"
        ifd = layout.unpack(layout.offset_format, data, end - layout.offset_size)
    return COMPLETE, ""


class _Beyond(Exception):
    """A value of an IFD entry lies beyond the end of the data."""


class _TiffLayout:
    """Classic TIFF (32-bit offsets) or BigTIFF (64-bit), in one byte order."""

    def __init__(self, order: str, big: bool):
        self.order, self.big = order, big
        self.header = 16 if big else 8
        self.count_format, self.count_size = ("Q", 8) if big else ("H", 2)
        self.offset_format, self.offset_size = ("Q", 8) if big else ("I", 4)
        self.entry_size = 20 if big else 12

    def unpack(self, fmt: str, data: bytes, pos: int) -> int:
        return struct.unpack_from(self.order + fmt, data, pos)[0]

    def first_ifd(self, data: bytes) -> int:
        return self.unpack(self.offset_format, data, 8 if self.big else 4)

    def entries(self, data: bytes, ifd: int, wanted: tuple[int, ...]):
        """(tag, values) of the IFD's entries; raises `_Beyond` when any entry's values lie
        outside the data (every entry is checked; only `wanted` tags are decoded)."""
        count = self.unpack(self.count_format, data, ifd)
        for i in range(count):
            pos = ifd + self.count_size + i * self.entry_size
            tag, kind = struct.unpack_from(self.order + "HH", data, pos)
            number = self.unpack(self.offset_format, data, pos + 4)
            width = _TIFF_TYPE_SIZES.get(kind)
            if width is None:
                continue  # an unknown type: readers skip it
            total, where = width * number, pos + 4 + self.offset_size
            if total > self.offset_size:
                where = self.unpack(self.offset_format, data, where)
                if where + total > len(data):
                    raise _Beyond()
            if tag in wanted and kind in (3, 4, 16):
                fmt = {3: "H", 4: "I", 16: "Q"}[kind]
                yield tag, struct.unpack_from(f"{self.order}{number}{fmt}", data, where)


def _tiff_layout(data: bytes) -> _TiffLayout | None:
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 4:
        return None
    version = struct.unpack(order + "H", data[2:4])[0]
    return {42: _TiffLayout(order, False), 43: _TiffLayout(order, True)}.get(version)


def _bmp(data: bytes) -> tuple[str, str]:
    if len(data) < 6:
        return INCOMPLETE, "its header is cut short"
    (declared,) = struct.unpack("<I", data[2:6])
    if declared == len(data):
        return COMPLETE, ""
    if declared > len(data):
        return INCOMPLETE, f"{len(data)} of the {declared} bytes its header declares"
    return UNKNOWN, "larger than its header declares"


_RULES: tuple[tuple[bytes, str, Callable[[bytes], tuple[str, str]]], ...] = (
    (PNG_SIGNATURE, "PNG", _png),
    (b"\xff\xd8", "JPEG", _jpeg),
    (b"II*\x00", "TIFF", _tiff),
    (b"MM\x00*", "TIFF", _tiff),
    (b"II+\x00", "TIFF", _tiff),
    (b"MM\x00+", "TIFF", _tiff),
    (b"BM", "BMP", _bmp),
)
