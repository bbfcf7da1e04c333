"""PNG: its signature, its completeness rule (the chunks are walked to the IEND chunk), the size
its IHDR chunk declares, a fast decoder for one common kind of PNG, and an encoder for another.

The fast decoder takes 8-bit grey, not interlaced, rows filtered with None or Sub (what
OpenCV's own writer gives, and so software built on it) or Up.

Decoding a 1024x1024 frame was the largest single cost of a verdict, and most of it is
inflating the compressed data: ISA-L (`isal`) inflates about three times as fast as zlib (1.6
against 4.9 ms for one frame here), and these three filters undo with numpy additions of whole
rows (Average and Paeth need a pixel-by-pixel loop). Any other PNG (colour, 16 bits, palette,
interlaced, transparency, Average or Paeth rows, a chunk not listed below, a side over
MAX_SIDE, a compressed stream declaring a window other than 32 KB) and any file with something
wrong in it (a bad checksum, too little or too much image data) is left to OpenCV:
`decode` returns None and the caller decodes as before, so a broken file gets OpenCV's verdict
on it. The pixels are the same as OpenCV's, tested.

`encode_indexed` writes one kind: 8-bit indexed colour (a palette), what a heatmap is (a level
and a colour table), at a third of the bytes OpenCV's writer would deflate for the same picture
in colour.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ..cv_setup import cv2
from .image_format import COMPLETE, INCOMPLETE, UNKNOWN, UNREADABLE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

try:
    from isal import isal_zlib
except ImportError:  # without ISA-L there is nothing to gain over OpenCV: every PNG goes there
    isal_zlib = None

# Chunks that do not change the pixels OpenCV returns for a grey image (gamma, colour profiles,
# transparency and the like might: files with them go to OpenCV).
_PASSIVE = {b"tEXt", b"zTXt", b"iTXt", b"tIME", b"pHYs"}
NONE, SUB, UP = 0, 1, 2
# Rows inflated first: if their filters are not ones handled here, the file goes to OpenCV
# having cost a few per cent of an inflate.
_PEEK_ROWS = 64
_PEEK_BYTES = 32 * 1024  # of compressed data, at most, for those rows
# Larger frames go to OpenCV: libpng refuses sides over 1,000,000 pixels (and so must we), and
# undoing the filters loops in Python over about 2 sqrt(side) blocks, so a side stays short.
MAX_SIDE = 16384
# libpng (as OpenCV sets it up) refuses an ancillary chunk before the image data of 8 MB or
# more; this path leaves any large one to it.
MAX_PASSIVE_CHUNK = 1 << 20
# The zlib header of a stream with a 32 KB window and deflate, the only one taken: ISA-L always
# inflates with a 32 KB window, where libpng keeps to the smaller one a header declares (and
# refuses a stream that reaches further back).
_ZLIB_32K = 0x78


def completeness(data: bytes) -> tuple[str, str]:
    """Complete once the chunks, walked by their lengths, reach the IEND chunk."""
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


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the IHDR chunk, which must come first; None if not there."""
    if data[:8] == PNG_SIGNATURE and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


# Deflate never makes data much larger (stored blocks add 5 bytes in 65,535): image data far
# beyond what the header's pixels inflate to is a decompression bomb (libpng would inflate it
# all before finding too much), refused unread.
BOMB_FACTOR, BOMB_SLACK = 1.25, 1024
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type: grey, RGB, palette, grey+alpha, RGBA


def refusal(data: bytes) -> str | None:
    """Why a PNG is refused before decoding: no IEND anywhere (libpng would fail on it too,
    printing on stderr), or compressed image data far larger than its declared pixels need."""
    if b"IEND" not in data:
        return UNREADABLE
    inflated = _inflated_size(data)
    if inflated is None:
        return None  # no usable header: the decoder says what is wrong
    limit = BOMB_FACTOR * inflated + BOMB_SLACK
    compressed, pos = 0, len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            compressed += length
            if compressed > limit:
                width, height = struct.unpack_from(">II", data, 16)
                return (f"PNG image data of {compressed}+ compressed bytes for {width}x{height} pixels, which "
                        f"inflate to {inflated} bytes: a decompression bomb, refused unread")
        elif kind == b"IEND":
            break
        pos += 12 + length
    return None


def _inflated_size(data: bytes) -> int | None:
    """Bytes the IHDR's pixels inflate to (every row with its filter byte; interlaced images have
    up to 7 passes, each row with its own), or None without a valid header."""
    if data[:8] != PNG_SIGNATURE or len(data) < 29 or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if colour not in _CHANNELS or depth not in (1, 2, 4, 8, 16):
        return None
    row = (width * depth * _CHANNELS[colour] + 7) // 8
    return height * (row + 1) + (7 * height if interlace else 0)


def decode(data: bytes) -> np.ndarray | None:
    """The frame of a PNG of the kind above as a (height, width) uint8 array, or None."""
    if isal_zlib is None or data[:8] != PNG_SIGNATURE:
        return None
    try:
        return _decode(memoryview(data))
    except (ValueError, OverflowError, MemoryError, struct.error, isal_zlib.error):
        return None


def _decode(data: memoryview) -> np.ndarray | None:
    chunks = _chunks(data)
    if chunks is None:
        return None
    (width, height), stream = chunks
    if width > MAX_SIDE or height > MAX_SIDE or stream[:1] != bytes([_ZLIB_32K]):
        return None
    stride = width + 1  # each row: its filter byte, then one byte per pixel
    expected = stride * height
    # The first rows' filters, from a separate look at the start of the stream: inflating it in
    # two goes would copy the rest of the stream and the pixels once more, and the second go's
    # growing buffer keeps the other threads waiting.
    head = isal_zlib.decompressobj().decompress(stream[:_PEEK_BYTES], min(expected, _PEEK_ROWS * stride))
    if len(head) >= stride and not _takes(np.frombuffer(head, np.uint8)[:len(head) - len(head) % stride:stride]):
        return None
    inflater = isal_zlib.decompressobj()
    inflated = inflater.decompress(stream, expected + 1)  # at most one byte more than declared: no bomb
    if len(inflated) != expected or not inflater.eof:
        return None
    rows = np.frombuffer(inflated, np.uint8).reshape(height, stride)
    return _unfilter(rows[:, 0], rows[:, 1:])


def _chunks(data: memoryview) -> tuple[tuple[int, int], bytes] | None:
    """(width, height) and the joined image data of an 8-bit grey PNG, or None."""
    pos, size, parts, ended = 8, None, [], False
    while True:
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if len(body) != length or isal_zlib.crc32(body, isal_zlib.crc32(kind)) != crc:
            return None
        if size is None:  # the first chunk must be the header
            if kind != b"IHDR" or length != 13:
                return None
            width, height, depth, colour, compression, method, interlace = struct.unpack(">IIBBBBB", body)
            if (depth, colour, compression, method, interlace) != (8, 0, 0, 0, 0) or not width or not height:
                return None
            size = (width, height)
        elif kind == b"IDAT":
            if ended:  # image data in two runs: not a valid PNG
                return None
            parts.append(body)
        elif kind == b"IEND":
            return (size, b"".join(parts)) if parts else None
        elif kind in _PASSIVE and length <= MAX_PASSIVE_CHUNK:
            ended = ended or bool(parts)
        else:
            return None
        pos += 12 + length


def _unfilter(filters: np.ndarray, pixels: np.ndarray) -> np.ndarray | None:
    """Undo the row filters (PNG spec, section 9): Sub adds the pixel to the left, Up the one
    above, both modulo 256 (uint8 addition wraps). The first row has no row above, so Up leaves
    it as it is. With the other rows all None or Sub each row stands alone; with Up each row
    builds on the one above, so only all-Up is taken. Running sums go down rows of pixels
    (`_running_sum`; numpy's cumsum over uint8 is several times slower)."""
    if not _takes(filters):
        return None
    first, rest = filters[0], filters[1:]
    if (rest <= SUB).all():
        sub = filters == SUB
        if not sub.any():
            return pixels.copy()
        columns = cv2.transpose(np.ascontiguousarray(pixels))  # a sum along rows is one down columns
        _running_sum(columns)
        image = cv2.transpose(columns)
        if not sub.all():
            image[~sub] = pixels[~sub]
        return image
    image = pixels.copy()  # all Up after the first row
    if first == SUB:
        image[0] = np.cumsum(pixels[0], dtype=np.uint8)
    _running_sum(image)
    return image


def _takes(filters: np.ndarray) -> bool:
    """Whether rows with these filter bytes (the first ones, or all) can be undone here: the first
    None, Sub or Up, the others all None or Sub, or all Up."""
    first, rest = filters[0], filters[1:]
    return bool(first <= UP and ((rest <= SUB).all() or (rest == UP).all()))


def _running_sum(rows: np.ndarray) -> None:
    """Each row plus all the rows above it, modulo 256, in place.

    In blocks of about sqrt(n) rows: the sums within every block at once, then each block's
    carry from the blocks above it. About 2 sqrt(n) whole-array additions instead of n row
    additions: each numpy call takes the GIL, so n of them kept the other decoding threads
    waiting (two threads decoded no faster than one)."""
    n = len(rows)
    block = max(1, int(n ** 0.5))
    full = n - n % block
    blocks = rows[:full].reshape(full // block, block, *rows.shape[1:])
    for i in range(1, block):
        np.add(blocks[:, i], blocks[:, i - 1], out=blocks[:, i])
    carry = blocks[:, -1].copy()  # each block's total, then the total of it and all above it
    for j in range(1, len(carry)):
        np.add(carry[j], carry[j - 1], out=carry[j])
    np.add(blocks[1:], carry[:-1, None], out=blocks[1:])
    for i in range(max(full, 1), n):  # the rows after the last whole block
        np.add(rows[i], rows[i - 1], out=rows[i])


def encode_indexed(indices: np.ndarray, palette: np.ndarray) -> bytes:
    """An 8-bit indexed PNG of `indices` (uint8, height x width) and `palette` (N x 3 RGB uint8,
    1 <= N <= 256, every index below N; anything else is a ValueError): rows unfiltered, deflated
    fast with run-length matching (a heatmap is long runs of a few levels)."""
    if indices.ndim != 2 or indices.dtype != np.uint8 or not indices.size:
        raise ValueError(f"indices: a 2-D uint8 array with pixels, not {indices.dtype} {indices.shape}")
    colours = np.asarray(palette)
    if colours.dtype != np.uint8 or colours.ndim != 2 or colours.shape[1] != 3 or not 1 <= len(colours) <= 256:
        raise ValueError(f"palette: 1 to 256 RGB colours, uint8, not {colours.dtype} {colours.shape}")
    if len(colours) < 256 and int(indices.max()) >= len(colours):
        raise ValueError(f"index {int(indices.max())} beyond a palette of {len(colours)} colours")
    height, width = indices.shape
    colours = np.ascontiguousarray(colours)
    rows = np.zeros((height, width + 1), np.uint8)  # each row: its filter byte (None), its indices
    rows[:, 1:] = indices
    deflate = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS, 8, zlib.Z_RLE)
    data = deflate.compress(rows) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)  # 8 bits, palette, no interlace
    return b"".join((PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"PLTE", colours.tobytes()),
                     _chunk(b"IDAT", data), _chunk(b"IEND", b"")))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))
