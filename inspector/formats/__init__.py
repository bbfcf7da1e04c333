"""Image formats: one table entry per format (`table.FORMATS`: suffixes, signatures, media type,
completeness rule, declared size, a fast decoder where one pays), and what is built on it:
listing and reading image files, decoding their bytes to a grey frame.

This package is the door: the rest of the program imports from `inspector.formats`. It stands
at the bottom of the layers, importing only numpy, OpenCV (through `inspector.cv_setup`), ISA-L
when installed, and `inspector.errors`; `preprocess` and everything above it build on it.
"""

from .decoding import check_finite, decode, decode_frame, to_unit
from .files import MAX_FILE_BYTES, check_file_size, list_images, read_bytes
from .image_format import COMPLETE, INCOMPLETE, UNKNOWN, ImageFormat
from .table import (FORMATS, IMAGE_SUFFIXES, completeness, declared_pixels, declared_size, format_of, media_type,
                    names_of_formats_with_rules)

__all__ = [
    "COMPLETE", "FORMATS", "IMAGE_SUFFIXES", "INCOMPLETE", "MAX_FILE_BYTES", "UNKNOWN", "ImageFormat",
    "check_file_size", "check_finite", "completeness", "declared_pixels", "declared_size", "decode", "decode_frame",
    "format_of", "list_images", "media_type", "names_of_formats_with_rules", "read_bytes", "to_unit",
]
