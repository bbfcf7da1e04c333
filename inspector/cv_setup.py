"""Import OpenCV once, with its limits and log level set before it loads (it reads them then).

Every module takes `cv2` from here, so no import order can skip the settings.
"""

from __future__ import annotations

import os

# Refuse images whose header declares more pixels than this before decoding them, so a crafted
# 50000x50000 PNG cannot exhaust memory (`formats` checks headers against it too). 1024x1024
# line cameras are far below it.
MAX_PIXELS = 10_000 * 10_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
# OpenCV's own log lines (e.g. "imdecode_(''): can't read data", TIFF_Error) would repeat what an
# ImageError already says, once per bad file, and outside the project's log; failures reach the
# caller as exceptions or a None image. OPENCV_LOG_LEVEL=INFO (say) shows them when debugging.
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")

import cv2  # noqa: E402  (must come after the environment settings above)

if os.environ["OPENCV_LOG_LEVEL"] == "SILENT":
    # Also when something loaded OpenCV before this module set the environment.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

__all__ = ["cv2", "MAX_PIXELS"]
