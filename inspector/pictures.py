"""The pictures drawn from error maps, and where a part's pictures go.

A heatmap (the error map in colour), the heat blended over the model's input (the upright crop),
the heat drawn back onto the photo; written through a temporary name and a rename. The names of
one part's picture files are made here only (`picture_paths`, `picture_paths_bounded`), for
`inspector score --heatmaps` and for the daemon alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .cv_setup import cv2
from .names import output_name
from .preprocess import crop_corners
from .scoring import squeeze


def heatmap_image(error_map: np.ndarray, scale: float) -> np.ndarray:
    """A BGR uint8 colour picture of an error map; `scale` is the error drawn at full red.

    The scale comes from the bundle (calibration images), so colours compare across parts.
    """
    level = (np.clip(error_map / max(scale, 1e-12), 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.LUT(cv2.cvtColor(level, cv2.COLOR_GRAY2BGR), _JET)


# OpenCV's JET colours as a lookup table: the same picture as `applyColorMap`, which builds its
# table again on every call (half its time).
_JET = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_JET).reshape(256, 1, 3)


def overlay_image(model_input: np.ndarray, error_map: np.ndarray, scale: float, alpha: float = 0.45,
                  heat: np.ndarray | None = None) -> np.ndarray:
    """The heatmap blended over the (preprocessed) input image, BGR uint8 (`heat`: the heatmap
    picture of `error_map`, when it is drawn already)."""
    grey = (np.clip(squeeze(model_input[None])[0], 0, 1) * 255).astype(np.uint8)
    base = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    heat = heatmap_image(error_map, scale) if heat is None else heat
    return cv2.addWeighted(heat, alpha, base, 1.0 - alpha, 0.0)


def frame_overlay_image(preview: np.ndarray, matrix: np.ndarray, error_map: np.ndarray, scale: float,
                        alpha: float = 0.45) -> np.ndarray:
    """The heatmap drawn back onto the photo (BGR uint8, the size of `preview`, a shrunk grey
    copy of it): the error map goes through the inverse of the pose transform (`matrix`: preview
    pixels -> crop pixels), so the heat sits where it is on the real part; the region the model
    looked at is outlined."""
    height, width = preview.shape[:2]
    heat = heatmap_image(on_frame(error_map, matrix, (height, width)), scale)
    outline = crop_corners(matrix, error_map.shape[::-1])
    inside = np.zeros((height, width), np.uint8)  # the crop's outline filled: cheaper than warping a map of ones
    cv2.fillConvexPoly(inside, np.round(outline * 16).astype(np.int32), 1, cv2.LINE_8, 4)  # 1/16 px
    picture = cv2.cvtColor(preview, cv2.COLOR_GRAY2BGR)
    blended = cv2.addWeighted(heat, alpha, picture, 1.0 - alpha, 0.0)
    cv2.copyTo(blended, inside, picture)  # the blend inside the crop only
    cv2.polylines(picture, [outline.astype(np.int32)], True, (255, 255, 255), 1, cv2.LINE_AA)
    return picture


def on_frame(crop_map: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map over the crop drawn back onto a frame of `shape` (height, width) through the
    inverse of `matrix` (frame -> crop); 0 outside the crop."""
    return cv2.warpAffine(np.asarray(crop_map, np.float32), matrix, (shape[1], shape[0]),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)


def write_heatmaps(model_input: np.ndarray, error_map: np.ndarray, scale: float, heatmap: Path, overlay: Path,
                   frame: tuple[np.ndarray, np.ndarray] | None = None, crop_overlay: Path | None = None) -> None:
    """Write the heatmap and overlay PNGs, each through a temporary name and a rename, so a
    reader never sees half a picture.

    With `frame` (a shrunk copy of the photo, `Prepared.preview`, and its matrix) the overlay is drawn on the photo and the
    upright crop's overlay goes to `crop_overlay`; without it the overlay is the crop's.
    """
    heatmap.parent.mkdir(parents=True, exist_ok=True)
    heat = heatmap_image(error_map, scale)
    _write_picture(heatmap, heat)
    crop = overlay_image(model_input, error_map, scale, heat=heat)
    if frame is None:
        _write_picture(overlay, crop)
        return
    _write_picture(overlay, frame_overlay_image(*frame, error_map, scale))
    if crop_overlay is not None:
        _write_picture(crop_overlay, crop)


# Heatmaps are pictures for people, not archives: fast PNG compression with every row filtered
# by Sub (libpng otherwise tries each filter on each row: twice the time here, for files 3%
# larger); a picture of the photo (many grey levels, large) as JPEG, about a tenth of its PNG.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1] + (
    [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB] if hasattr(cv2, "IMWRITE_PNG_FILTER") else [])  # OpenCV >= 4.12
JPEG_QUALITY = 90


def _write_picture(path: Path, image: np.ndarray) -> None:
    """PNG, or JPEG for a .jpg name; encoded in memory, written by Python: a full disk is an
    OSError with its errno (ENOSPC), and no half-written temporary file is left."""
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    ok, data = cv2.imencode(path.suffix, image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if jpeg else PNG_PARAMS)
    if not ok:
        raise ValueError(f"cannot encode {path.name}")
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        tmp.write_bytes(data.tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# What follows a part's stem in the names of its pictures: the heatmap, the overlay on the photo
# (a JPEG: many grey levels), the overlay on the upright crop.
PICTURE_ENDINGS = ("_heatmap.png", "_overlay.jpg", "_crop.png")


class PicturePaths(NamedTuple):
    """Where one part's pictures go."""

    heatmap: Path
    overlay: Path
    crop: Path


def picture_paths(folder: Path, stem: str) -> PicturePaths:
    """The pictures of the part called `stem` (`picture_stems`) in `folder`."""
    return PicturePaths(*(folder / f"{stem}{ending}" for ending in PICTURE_ENDINGS))


def picture_paths_bounded(folder: Path, prefix: str, name: str) -> PicturePaths:
    """The pictures of the inbox file `name` in `folder`: `prefix` (the inspection's id) and the
    printable name, cut so each file name stays within `names.NAME_BYTES` (`names.output_name`)."""
    return PicturePaths(*(folder / output_name(prefix, name, ending) for ending in PICTURE_ENDINGS))


def picture_stems(paths: list[Path]) -> dict[Path, str]:
    """A distinct name for each image's pictures (heatmap, overlay): its file name without the
    suffix, with as many of its folders' names in front as it takes to tell it apart from other
    images of the same name (good/000.png, defect/000.png -> good_000, defect_000)."""
    paths = list(dict.fromkeys(paths))
    full = {p: Path(os.path.abspath(p)) for p in paths}
    depth = dict.fromkeys(paths, 0)

    def stem(p: Path) -> str:
        folders = full[p].parent.parts[1:]  # without the root
        return "_".join([*folders[len(folders) - depth[p]:], full[p].stem]) if depth[p] else full[p].stem

    while True:
        stems = {p: stem(p) for p in paths}
        owners: dict[str, set[Path]] = {}
        for p, name in stems.items():
            owners.setdefault(name, set()).add(full[p])
        clashing = [p for p in paths if len(owners[stems[p]]) > 1]
        deeper = [p for p in clashing if depth[p] < len(full[p].parent.parts) - 1]
        if not deeper:  # unique, or names that only differ by "_" vs "/": number the rest
            for p in clashing:
                stems[p] = f"{stems[p]}_{sorted(owners[stems[p]]).index(full[p]) + 1}"
            return stems
        for p in deeper:
            depth[p] += 1
