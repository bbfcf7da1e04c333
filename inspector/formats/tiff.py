"""TIFF (and BigTIFF): its signatures, its completeness rule and the size its first IFD declares.

Completeness: the chain of IFDs is followed; every IFD, every value stored outside it and
every strip or tile (offset + byte count) must lie within the file.
"""

from __future__ import annotations

import struct

from .image_format import COMPLETE, INCOMPLETE, UNKNOWN

# Classic TIFF and BigTIFF, little- and big-endian.
SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
                    16: 8, 17: 8, 18: 8}
_STRIPS = ((273, 279), (324, 325))  # (StripOffsets, StripByteCounts), (TileOffsets, TileByteCounts)
_MAX_IFDS = 10_000


def declared_size(data: bytes) -> tuple[int, int] | None:
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


def completeness(data: bytes) -> tuple[str, str]:
    """Complete once every IFD of the chain, and all they point to, lies within the data."""
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
