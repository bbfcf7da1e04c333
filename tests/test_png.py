"""The fast PNG path gives OpenCV's pixels, or leaves the file to OpenCV."""

import struct
import zlib

import numpy as np
import pytest

from inspector.cv_setup import cv2
from inspector.formats import decode_frame, png
from inspector.formats.png import PNG_SIGNATURE
from inspector.preprocess import ImageError

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (37, 53), dtype=np.uint8)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _encode(image, filters, pieces=3, extra=(), header=None):
    """A grey 8-bit PNG with the given filter byte per row, its data in `pieces` IDAT chunks."""
    height, width = image.shape
    rows, above = [], np.zeros(width, np.uint8)
    for row, kind in zip(image, filters):
        left = np.concatenate([[0], row[:-1]]).astype(np.uint8)
        corner = np.concatenate([[0], above[:-1]]).astype(np.uint8)
        encoded = {0: row, 1: row - left, 2: row - above, 3: row - ((left.astype(int) + above) // 2).astype(np.uint8),
                   4: row - _paeth(left, above, corner)}[kind]
        rows.append(bytes([kind]) + encoded.astype(np.uint8).tobytes())
        above = row
    stream = zlib.compress(b"".join(rows), 6)
    step = -(-len(stream) // pieces)
    header = header or struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header) + b"".join(_chunk(k, b) for k, b in extra)
            + b"".join(_chunk(b"IDAT", stream[i:i + step]) for i in range(0, len(stream), step))
            + _chunk(b"IEND", b""))


def _paeth(a, b, c):
    """The PNG spec's Paeth predictor from left, above and upper-left, pixel by pixel."""
    a, b, c = (x.astype(int) for x in (a, b, c))
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c)).astype(np.uint8)


def _opencv(data: bytes):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


FILTERS = {
    "none": [0] * 37,
    "sub": [1] * 37,
    "none and sub": list(RNG.integers(0, 2, 37)),
    "up": [2] * 37,
    "sub, then up": [1] + [2] * 36,
    "up first, then sub": [2] + [1] * 36,
}


@pytest.mark.parametrize("name", FILTERS)
def test_fast_path_gives_opencvs_pixels(name):
    data = _encode(IMAGE, FILTERS[name], extra=[(b"tEXt", b"Camera\x00line 3")])
    fast = png.decode(data)
    assert fast is not None and fast.dtype == np.uint8
    np.testing.assert_array_equal(fast, _opencv(data))
    np.testing.assert_array_equal(fast, IMAGE)


def test_a_png_written_by_opencv_takes_the_fast_path():
    image = RNG.integers(0, 256, (300, 400), dtype=np.uint8)
    data = cv2.imencode(".png", image)[1].tobytes()
    np.testing.assert_array_equal(png.decode(data), image)
    np.testing.assert_array_equal(decode_frame(data), image)


@pytest.mark.parametrize("name, data", [
    ("average rows", _encode(IMAGE, [1] * 36 + [3])),
    ("paeth rows", _encode(IMAGE, [4] + [1] * 36)),
    ("up mixed with sub", _encode(IMAGE, [1, 2] * 18 + [1])),
    ("16 bits", cv2.imencode(".png", IMAGE.astype(np.uint16) * 257)[1].tobytes()),
    ("colour", cv2.imencode(".png", cv2.cvtColor(IMAGE, cv2.COLOR_GRAY2BGR))[1].tobytes()),
    ("transparency", _encode(IMAGE, [1] * 37, extra=[(b"tRNS", b"\x00\x00")])),
    ("gamma", _encode(IMAGE, [1] * 37, extra=[(b"gAMA", struct.pack(">I", 45455))])),
    ("interlaced", _encode(IMAGE, [1] * 37, header=struct.pack(">IIBBBBB", 53, 37, 8, 0, 0, 0, 1))),
])
def test_other_pngs_are_left_to_opencv(name, data):
    assert png.decode(data) is None
    if name in ("average rows", "paeth rows", "up mixed with sub"):
        np.testing.assert_array_equal(decode_frame(data), IMAGE)  # by OpenCV


def test_a_bad_checksum_is_left_to_opencv_which_refuses_it():
    data = bytearray(_encode(IMAGE, [1] * 37, pieces=1))
    data[60] ^= 0xFF  # inside the image data: its chunk's CRC no longer matches
    assert png.decode(bytes(data)) is None
    with pytest.raises(ImageError):
        decode_frame(bytes(data))


def test_too_little_image_data_is_left_to_opencv():
    short = _encode(IMAGE[:30], [1] * 30, header=struct.pack(">IIBBBBB", 53, 37, 8, 0, 0, 0, 0))
    assert png.decode(short) is None


def _damaged(base: bytes, fix_crc: bool):
    """`base` with a few bytes changed, cut short, or (with `fix_crc`) one chunk's body changed
    and its CRC made right again, so the decoder's own checks are reached."""
    data = bytearray(base)
    if not fix_crc:
        for _ in range(int(RNG.integers(1, 4))):
            data[int(RNG.integers(0, len(data)))] = int(RNG.integers(0, 256))
        return bytes(data[:int(RNG.integers(8, len(data)))] if RNG.random() < 0.3 else data)
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        chunks.append([bytes(data[pos + 4:pos + 8]), bytearray(data[pos + 8:pos + 8 + length])])
        pos += 12 + length
    kind, body = chunks[int(RNG.integers(0, len(chunks)))]
    if body:
        for _ in range(int(RNG.integers(1, 3))):
            body[int(RNG.integers(0, len(body)))] = int(RNG.integers(0, 256))
    return PNG_SIGNATURE + b"".join(_chunk(k, bytes(b)) for k, b in chunks)


@pytest.mark.parametrize("fix_crc", [False, True])
def test_damaged_files_never_raise_and_never_give_other_pixels_than_opencv(fix_crc):
    base = cv2.imencode(".png", RNG.integers(0, 256, (128, 128), dtype=np.uint8))[1].tobytes()
    assert png.decode(base) is not None
    taken = 0
    for _ in range(1500):
        data = _damaged(base, fix_crc)
        fast = png.decode(data)
        if fast is not None:
            taken += 1
            reference = _opencv(data)
            assert reference is not None and np.array_equal(fast, reference)
    assert taken > 0  # changes that alter nothing the decoder reads (in a checksum it skips, say) still decode


def _zlib_with_window(raw: bytes, cinfo: int) -> bytes:
    stream = zlib.compress(raw)
    cmf = (cinfo << 4) | 8
    return bytes([cmf, (31 - (cmf * 256) % 31) % 31]) + stream[2:]


def _png_with_stream(width, height, stream, before=b""):
    return (PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + before
            + _chunk(b"IDAT", stream) + _chunk(b"IEND", b""))


def test_a_stream_declaring_another_window_is_left_to_opencv():
    raw = b"".join(b"\x00" + bytes(RNG.integers(0, 256, 17, dtype=np.uint8)) for _ in range(20))
    invalid = _png_with_stream(17, 20, _zlib_with_window(raw, 8))  # no such window: libpng refuses it
    assert png.decode(invalid) is None and _opencv(invalid) is None
    small = _png_with_stream(17, 20, _zlib_with_window(raw, 2))  # ISA-L would not hold it to 1 KB
    assert png.decode(small) is None


def test_sides_libpng_refuses_and_degenerate_shapes_are_left_to_opencv():
    wide = _png_with_stream(1_000_001, 1, zlib.compress(b"\x00" + bytes(1_000_001)))
    assert png.decode(wide) is None and _opencv(wide) is None
    long_one = _png_with_stream(1, png.MAX_SIDE + 1, zlib.compress(b"\x02\x00" * (png.MAX_SIDE + 1)))
    assert png.decode(long_one) is None
    absurd = _png_with_stream(0xFFFFFFFF, 0xFFFFFFFF, zlib.compress(b""))
    assert png.decode(absurd) is None


def test_a_large_text_chunk_before_the_image_is_left_to_opencv():
    stream = zlib.compress(b"".join(b"\x00" + IMAGE[y].tobytes() for y in range(37)))
    big = _png_with_stream(53, 37, stream, before=_chunk(b"zTXt", b"k\x00\x00" + bytes(png.MAX_PASSIVE_CHUNK)))
    assert png.decode(big) is None
    np.testing.assert_array_equal(png.decode(_png_with_stream(53, 37, stream)), IMAGE)


def test_filters_past_the_first_rows_are_checked_too():
    tall = RNG.integers(0, 256, (100, 53), dtype=np.uint8)  # its last row Paeth, after the 64 looked at first
    filters = [1] * 99 + [4]
    data = _encode(tall, filters, pieces=2)
    assert png.decode(data) is None
    np.testing.assert_array_equal(decode_frame(data), tall)  # by OpenCV


def test_a_screw_prepares_alike_with_and_without_the_fast_path(monkeypatch):
    from pathlib import Path

    from inspector.models.pipeline_files import resolve_pipeline
    from inspector.preprocess import preprocess

    config = resolve_pipeline("screw").preprocess
    screw = sorted((Path(__file__).parent.parent / "sample_data" / "train" / "good").glob("*.png"))[0]
    data = cv2.imencode(".png", cv2.imread(str(screw), cv2.IMREAD_GRAYSCALE))[1].tobytes()  # Sub rows
    assert png.decode(data) is not None
    fast = preprocess(data, config)
    monkeypatch.setattr(png, "isal_zlib", None)  # without ISA-L every PNG goes to OpenCV
    np.testing.assert_array_equal(fast, preprocess(data, config))


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 3), (16, 16), (17, 5), (5, 17), (100, 7), (7, 100)])
@pytest.mark.parametrize("kind", [1, 2])
def test_running_sums_in_blocks_give_opencvs_pixels_for_any_shape(shape, kind):
    image = RNG.integers(0, 256, shape, dtype=np.uint8)
    data = _encode(image, [kind] * shape[0], pieces=1)
    fast = png.decode(data)
    assert fast is not None
    np.testing.assert_array_equal(fast, _opencv(data))


def test_a_wide_frame_whose_first_rows_do_not_fit_the_first_look_is_still_checked_whole():
    wide = RNG.integers(0, 256, (80, 3000), dtype=np.uint8)  # 64 rows of noise: far more than the bytes looked at first
    good = _encode(wide, [1] * 80, pieces=4)
    np.testing.assert_array_equal(png.decode(good), wide)
    paeth_late = _encode(wide, [1] * 40 + [4] + [1] * 39, pieces=4)
    assert png.decode(paeth_late) is None
    np.testing.assert_array_equal(decode_frame(paeth_late), wide)  # by OpenCV


def _bomb(width: int, height: int, inflated: int, colour: int = 0) -> bytes:
    """A PNG declaring `width` x `height` whose image data inflates to `inflated` zero bytes."""
    deflate, parts, block = zlib.compressobj(9), [], bytes(1 << 20)
    for _ in range(inflated // len(block)):
        parts.append(deflate.compress(block))
    stream = b"".join(parts) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


@pytest.mark.parametrize("colour", [0, 2])
def test_a_small_header_hiding_a_huge_deflate_stream_is_refused_unread(colour):
    bomb = _bomb(16, 16, 256 << 20, colour)  # 256 KB that inflate to 256 MiB, for 16x16 pixels
    assert png.refusal(bomb) is not None
    with pytest.raises(ImageError, match="decompression bomb, refused unread"):
        decode_frame(bomb)


def test_ordinary_pngs_are_not_taken_for_bombs():
    for image in (IMAGE, np.zeros((1, 1), np.uint8), RNG.integers(0, 256, (300, 200, 3), dtype=np.uint8)):
        for level in (0, 9):
            ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, level])
            assert ok and png.refusal(data.tobytes()) is None
    for filters in ([0] * 37, [4] * 37):
        assert png.refusal(_encode(IMAGE, filters)) is None


def test_an_indexed_png_reads_back_as_its_palette_colours_everywhere():
    """`encode_indexed`: OpenCV and the completeness rule read it as a whole PNG whose pixels are
    the palette's colours at the indices, odd sizes and every index included; it is not taken
    by the fast grey path."""
    from inspector.formats.image_format import COMPLETE

    rng = np.random.default_rng(3)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)  # RGB
    for shape in ((1, 1), (7, 300), (64, 192)):
        indices = rng.integers(0, 256, shape, dtype=np.uint8)
        indices[0, 0], indices[-1, -1] = 0, 255
        data = png.encode_indexed(indices, palette)
        assert png.completeness(data)[0] == COMPLETE
        assert png.declared_size(data) == (shape[1], shape[0]) and png.refusal(data) is None
        assert png.decode(data) is None
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(pixels, palette[indices][..., ::-1])
    short = png.encode_indexed(np.zeros((4, 4), np.uint8), palette[:2])  # a palette of two colours
    assert np.array_equal(cv2.imdecode(np.frombuffer(short, np.uint8), cv2.IMREAD_COLOR), np.broadcast_to(palette[0, ::-1], (4, 4, 3)))


@pytest.mark.parametrize("indices, palette, why", [
    (np.array([[300, -1]]), np.zeros((256, 3), np.uint8), "2-D uint8"),
    (np.zeros((0, 4), np.uint8), np.zeros((256, 3), np.uint8), "2-D uint8"),
    (np.zeros((2, 2, 3), np.uint8), np.zeros((256, 3), np.uint8), "2-D uint8"),
    (np.zeros((2, 2), np.uint8), np.zeros((300, 3), np.uint8), "1 to 256 RGB colours"),
    (np.zeros((2, 2), np.uint8), np.zeros((0, 3), np.uint8), "1 to 256 RGB colours"),
    (np.zeros((2, 2), np.uint8), np.zeros((4, 3), np.float32), "1 to 256 RGB colours"),
    (np.full((2, 2), 4, np.uint8), np.zeros((4, 3), np.uint8), "index 4 beyond a palette of 4 colours"),
])
def test_an_indexed_png_that_no_reader_would_take_is_refused(indices, palette, why):
    with pytest.raises(ValueError, match=why):
        png.encode_indexed(indices, palette)
