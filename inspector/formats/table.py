"""The table of image formats, and what the rest of the program asks of a file's bytes, answered
from it: which format they are, whether the file is all there, the size its header declares,
what it is served as.

Adding an image format is one entry in `FORMATS`, and its module beside this one; tests/test_formats.py
checks every entry against what OpenCV writes in that format.
"""

from __future__ import annotations

from . import bmp, jpeg, png, tiff
from .image_format import COMPLETE, INCOMPLETE, UNKNOWN, ImageFormat

FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat("PNG", (".png",), (png.PNG_SIGNATURE,), "image/png", png.completeness, png.declared_size,
                fast_decoder=png.decode, refusal=png.refusal),
    ImageFormat("JPEG", (".jpg", ".jpeg"), (jpeg.SIGNATURE,), "image/jpeg", jpeg.completeness, jpeg.declared_size),
    ImageFormat("TIFF", (".tif", ".tiff"), tiff.SIGNATURES, "image/tiff", tiff.completeness, tiff.declared_size),
    ImageFormat("BMP", (".bmp",), (bmp.SIGNATURE,), "image/bmp", bmp.completeness, bmp.declared_size),
)

IMAGE_SUFFIXES = tuple(suffix for entry in FORMATS for suffix in entry.suffixes)


def format_of(data: bytes) -> ImageFormat | None:
    """The format whose signature `data` starts with; None for anything else."""
    return next((entry for entry in FORMATS if entry.recognises(data)), None)


def media_type(head: bytes) -> str | None:
    """What a file starting with `head` (its first 8 bytes suffice) is served as, if an image."""
    entry = format_of(head)
    return entry.media_type if entry is not None else None


def completeness(data: bytes) -> tuple[str, str]:
    """(COMPLETE, INCOMPLETE or UNKNOWN, and in words what is missing when incomplete), by the
    rule of the file's format. An empty file, or the first bytes of a signature, is incomplete:
    it may still grow. UNKNOWN: no rule for this content (another format, or a structure broken
    for good)."""
    if not data:
        return INCOMPLETE, "empty file"
    for entry in FORMATS:
        if entry.completeness is None:
            continue
        for signature in entry.signatures:
            if data.startswith(signature):
                state, detail = entry.completeness(data)
                return state, f"incomplete {entry.name} file: {detail}" if state == INCOMPLETE else detail
            if len(data) < len(signature) and signature.startswith(data):
                return INCOMPLETE, f"incomplete {entry.name} file: only {len(data)} bytes"
    return UNKNOWN, ""


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) the header of a file of any format in the table declares, without
    decoding; None when it cannot be told."""
    entry = format_of(data)
    return entry.declared_size(data) if entry is not None else None


def declared_pixels(data: bytes) -> int | None:
    """Width x height the header declares; None when it cannot be told."""
    size = declared_size(data)
    return size[0] * size[1] if size else None


def names_of_formats_with_rules() -> str:
    """The formats that have a completeness rule, in words for help texts: "PNG, JPEG, TIFF and BMP"."""
    names = [entry.name for entry in FORMATS if entry.completeness is not None]
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]])) if names else "none"

