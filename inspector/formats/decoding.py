"""Image bytes -> a 2-D grey frame: headers checked before decoding (no crafted size can
exhaust memory), the format's fast decoder when it has one and takes the file, else OpenCV.
"""

from __future__ import annotations

import os

import numpy as np

from ..cv_setup import MAX_PIXELS, cv2
from ..errors import ImageError
from .image_format import UNREADABLE
from .table import format_of


def decode(data: bytes, path: str | os.PathLike | None = None) -> np.ndarray:
    """Decode image bytes to a float32 grey image in [0, 1] at its own resolution.

    Accepts 8- and 16-bit images, grey, RGB or RGBA (alpha is ignored).
    """
    return to_unit(decode_frame(data, path))


def decode_frame(data: bytes, path: str | os.PathLike | None = None) -> np.ndarray:
    """Decode image bytes to a 2-D grey frame in its own pixel type (uint8, uint16 or float32).

    Raises `ImageError` when the bytes are empty, too large, corrupt or not an image, or a
    float image has pixels that are not finite.
    """
    if not data:
        raise ImageError(path, "empty file")
    image_format = format_of(data)
    size = image_format.declared_size(data) if image_format is not None else None
    if size is not None:
        width, height = size
        if width == 0 or height == 0:
            raise ImageError(path, "image header declares zero size")
        if width * height > MAX_PIXELS:
            raise ImageError(path, f"image too large ({width}x{height} pixels, limit {MAX_PIXELS})")
    refused = image_format.refusal(data) if image_format is not None and image_format.refusal is not None else None
    if refused is not None:
        raise ImageError(path, refused)
    if image_format is not None and image_format.fast_decoder is not None:
        image = image_format.fast_decoder(data)  # None: OpenCV decodes it
        if image is not None:
            return image
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageError(path, f"cannot decode image: {str(exc).strip().splitlines()[-1]}") from None
    if image is None or image.size == 0:
        raise ImageError(path, UNREADABLE)
    if image.dtype not in _UNIT_SCALE:
        raise ImageError(path, f"unsupported pixel type {image.dtype}")
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        elif channels == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif channels == 1:
            image = image[:, :, 0]
        else:
            raise ImageError(path, f"unsupported number of channels: {channels}")
    check_finite(image, path)
    return image


# What a pixel type's largest value is in [0, 1] intensities.
_UNIT_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}


def to_unit(frame: np.ndarray) -> np.ndarray:
    """A grey frame of a pixel type `decode_frame` gives -> float32 in [0, 1] (floats as they are)."""
    if frame.dtype == np.float32:
        return frame
    # One pass: each pixel cast and divided as it is read (the same values as casting first).
    return np.divide(frame, np.float32(_UNIT_SCALE[frame.dtype]), dtype=np.float32)


def check_finite(frame: np.ndarray, path: str | os.PathLike | None = None) -> None:
    """Refuse a frame with NaN or infinite pixels (`ImageError`). Integer pixels are always
    finite: only a float frame is looked at, saving a pass over every 8-bit one."""
    if frame.dtype.kind == "f" and not np.isfinite(frame).all():
        raise ImageError(path, "image has non-finite pixel values (NaN or infinity)")
