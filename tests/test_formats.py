"""The formats table: every entry recognises, judges, sizes, serves and decodes what OpenCV
writes in its format; the suffixes belong to one entry each."""

import numpy as np
import pytest

from inspector.cv_setup import cv2
from inspector.formats import (COMPLETE, FORMATS, IMAGE_SUFFIXES, INCOMPLETE, UNKNOWN, completeness, declared_pixels,
                               declared_size, decode_frame, format_of, media_type)
from helpers import jpeg_with_exif_thumbnail

WIDTH, HEIGHT = 53, 37
IMAGE = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8), (0, 0), 2)


def _encoded(entry) -> bytes:
    ok, data = cv2.imencode(entry.suffixes[0], IMAGE)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("entry", FORMATS, ids=lambda entry: entry.name)
def test_each_format_knows_what_opencv_writes_in_it(entry):
    data = _encoded(entry)
    assert format_of(data) is entry
    assert completeness(data) == (COMPLETE, "")
    state, detail = completeness(data[:len(data) // 2])
    assert state == INCOMPLETE and detail.startswith(f"incomplete {entry.name} file: ")
    assert declared_size(data) == (WIDTH, HEIGHT) and declared_pixels(data) == WIDTH * HEIGHT
    assert media_type(data[:8]) == entry.media_type
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if expected.ndim == 3:
        expected = cv2.cvtColor(expected, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(decode_frame(data), expected)


def test_every_suffix_belongs_to_exactly_one_format():
    assert len(IMAGE_SUFFIXES) == len(set(IMAGE_SUFFIXES))
    for suffix in IMAGE_SUFFIXES:
        assert suffix == suffix.lower()
        assert sum(suffix in entry.suffixes for entry in FORMATS) == 1


def test_other_content_is_no_format():
    text = b"not an image at all"
    assert format_of(text) is None and media_type(text[:8]) is None
    assert declared_size(text) is None and declared_pixels(text) is None
    assert completeness(text) == (UNKNOWN, "")
    assert completeness(b"") == (INCOMPLETE, "empty file")
    assert completeness(b"\x89PN") == (INCOMPLETE, "incomplete PNG file: only 3 bytes")


def test_a_jpeg_size_is_its_main_image_not_its_exif_thumbnail():
    data, _ = jpeg_with_exif_thumbnail(3)  # a 96x96 image with a 16x16 thumbnail
    assert declared_size(data) == (96, 96)
    assert completeness(data) == (COMPLETE, "")
