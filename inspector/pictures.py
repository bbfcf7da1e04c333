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
from .formats.png import encode_indexed
from .names import output_name
from .preprocess import crop_corners
from .scoring import squeeze


def heat_levels(error_map: np.ndarray, scale: float) -> np.ndarray:
    """An error map as levels 0-255 (uint8) of the heat scale; `scale` is the error drawn at full
    red. The scale comes from the bundle (calibration images), so colours compare across parts."""
    return (np.clip(error_map / max(scale, 1e-12), 0.0, 1.0) * 255).astype(np.uint8)


def heatmap_image(error_map: np.ndarray, scale: float) -> np.ndarray:
    """A BGR uint8 colour picture of an error map (`heat_levels` in the heat scale's colours)."""
    return cv2.LUT(cv2.cvtColor(heat_levels(error_map, scale), cv2.COLOR_GRAY2BGR), _JET)


def heatmap_png(error_map: np.ndarray, scale: float) -> bytes:
    """`heatmap_image` as a PNG file's bytes: the levels and the colours as an indexed PNG, a
    third of the bytes to deflate of the colour picture, read back as the very same picture."""
    return encode_indexed(heat_levels(error_map, scale), _JET_RGB)


# OpenCV's JET colours as a lookup table: the same picture as `applyColorMap`, which builds its
# table again on every call (half its time); in RGB order, a heatmap PNG's palette.
_JET = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_JET).reshape(256, 1, 3)
_JET_RGB = np.ascontiguousarray(_JET[:, 0, ::-1])


# The overlay of a part with no hot region (under a max reducer, every part judged ok) is for a
# glance: at 256 pixels it costs a quarter of the 512-pixel preview to encode; the photo itself
# is kept. A flagged part's overlay, which QA looks at closely, keeps the preview's size.
PLAIN_SIDE = 256

# Heat is drawn only above what good parts show: the heat scale is twice the 99.9th percentile
# of the calibration images' error (`scoring.heat_scale`), so half of it is where good parts end.
GOOD_SHARE = 0.5
HEAT_ALPHA = 0.6  # the blend of the hottest heat over the photo
OUTLINE = (255, 0, 255)  # hot regions in magenta: no colour of the heat scale, none of a grey part
RING_SHARE = 0.025  # a hot region smaller than this share of the photo is ringed as well


def any_heat(error_map: np.ndarray, scale: float) -> bool:
    """Whether an overlay of this error map has any colour: some of it above a good part's level."""
    return bool((error_map > scale * GOOD_SHARE).any())


def heat_layer(error_map: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The heatmap colours and their opacity (float32, 0 where a good part's error is, up to
    HEAT_ALPHA at the top of the scale): a good part's photo stays as it is."""
    heat = heatmap_image(error_map, scale)
    good = scale * GOOD_SHARE
    alpha = np.asarray(error_map, np.float32) - good
    np.clip(alpha * (HEAT_ALPHA / max(scale - good, 1e-12)), 0.0, HEAT_ALPHA, out=alpha)
    return heat, alpha


def blend(picture: np.ndarray, heat: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`heat` over `picture` (both BGR uint8) with a per-pixel opacity."""
    return cv2.blendLinear(heat, picture, alpha, 1.0 - alpha)


def overlay_image(model_input: np.ndarray, error_map: np.ndarray, scale: float,
                  outlines: list[np.ndarray] = ()) -> np.ndarray:
    """The heat over the (preprocessed) input image where it is above a good part's, BGR uint8,
    with the hot regions (`scoring.hot_contours`) outlined."""
    grey = (np.clip(squeeze(model_input[None])[0], 0, 1) * 255).astype(np.uint8)
    picture = blend(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), *heat_layer(error_map, scale))
    if len(outlines):
        cv2.drawContours(picture, list(outlines), -1, OUTLINE, 1, cv2.LINE_8)
    return picture


def frame_overlay_image(preview: np.ndarray, matrix: np.ndarray, error_map: np.ndarray, scale: float,
                        outlines: list[np.ndarray] = (), plain_side: int | None = None) -> np.ndarray:
    """The heat drawn back onto the photo where it is above a good part's, and the hot regions
    outlined, on `preview` (a shrunk grey copy of the photo), or, with no hot region and
    `plain_side` given, on the preview shrunk further to `plain_side` pixels on its longer side:
    BGR uint8, grey uint8 when no heat shows either. The error map and the outlines
    (`scoring.hot_contours`, in the map's pixels) go through the inverse of the pose transform
    (`matrix`: preview pixels -> crop pixels), so they sit where they are on the real part; the
    region the model looked at is outlined thinly in grey."""
    height, width = preview.shape[:2]
    if plain_side and not len(outlines) and max(height, width) > plain_side:
        preview, matrix = _shrunk_preview(preview, matrix, plain_side / max(height, width))
        height, width = preview.shape[:2]
    crop_outline = [np.round(crop_corners(matrix, error_map.shape[::-1]) * 16).astype(np.int32)]
    box = _heat_box(error_map, scale, matrix, (height, width))
    if box is None and not len(outlines):
        # Nothing in colour (most good parts): a grey picture, a third cheaper to encode as JPEG.
        picture = preview.copy()
        cv2.polylines(picture, crop_outline, True, 160, 1, cv2.LINE_AA, 4)
        return picture
    picture = cv2.cvtColor(preview, cv2.COLOR_GRAY2BGR)
    if box is not None:
        x0, y0, x1, y1 = box
        shifted = np.asarray(matrix, np.float64).copy()
        shifted[:, 2] += shifted[:, :2] @ [x0, y0]  # box pixels -> crop pixels
        area = picture[y0:y1, x0:x1]
        area[:] = blend(area, *heat_layer(on_frame(error_map, shifted, (y1 - y0, x1 - x0)), scale))
    cv2.polylines(picture, crop_outline, True, (160, 160, 160), 1, cv2.LINE_AA, 4)
    if len(outlines):
        ring = max(width, height) * RING_SHARE
        for contour in outlines:
            points = to_frame(contour, matrix)
            cv2.polylines(picture, [np.round(points * 16).astype(np.int32)], True, OUTLINE, 2, cv2.LINE_AA, 4)
            (x, y), radius = cv2.minEnclosingCircle(points.astype(np.float32))
            if radius < ring:  # a region of a few pixels gets a ring QA sees at a glance
                cv2.circle(picture, (round(x * 16), round(y * 16)), round((ring + 3) * 16), OUTLINE, 2, cv2.LINE_AA, 4)
    return picture


def _shrunk_preview(preview: np.ndarray, matrix: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """`preview` shrunk by about `factor` (area averaging), and `matrix` (preview pixels -> crop
    pixels) for the shrunk pixels, each axis by the factor its rounded size really has."""
    height, width = preview.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    shrunk = cv2.resize(preview, size, interpolation=cv2.INTER_AREA)
    scaled = np.array(matrix, np.float64)
    scaled[:, 0] *= width / size[0]
    scaled[:, 1] *= height / size[1]
    return shrunk, scaled


def _heat_box(error_map: np.ndarray, scale: float, matrix: np.ndarray,
              shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The frame's pixels (x0, y0, x1, y1) where any heat shows, or None: the crop's pixels above
    a good part's level, one pixel wider (a frame pixel further away interpolates none of them),
    drawn back onto the frame. Warping and blending only there costs a good part, whose heat is a
    few pixels or none, a fraction of doing it under the whole crop."""
    hot = error_map > scale * GOOD_SHARE
    rows, cols = np.flatnonzero(hot.any(axis=1)), np.flatnonzero(hot.any(axis=0))
    if not len(rows):
        return None
    corners = np.array([[cols[0] - 1, rows[0] - 1], [cols[-1] + 1, rows[0] - 1], [cols[-1] + 1, rows[-1] + 1],
                        [cols[0] - 1, rows[-1] + 1]], np.float64)
    points = to_frame(corners, matrix).reshape(-1, 2)
    height, width = shape
    x0, y0 = np.clip(np.floor(points.min(axis=0)).astype(int), 0, [width, height])
    x1, y1 = np.clip(np.ceil(points.max(axis=0)).astype(int) + 1, 0, [width, height])
    return (int(x0), int(y0), int(x1), int(y1)) if x1 > x0 and y1 > y0 else None


def to_frame(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points (x, y) in the crop's pixels -> the frame's, through the inverse of `matrix`
    (frame -> crop); shape (N, 1, 2) float64, as OpenCV draws them."""
    inverse = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    return cv2.transform(np.asarray(points, np.float64).reshape(-1, 1, 2), inverse)


def on_frame(crop_map: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map over the crop drawn back onto a frame of `shape` (height, width) through the
    inverse of `matrix` (frame -> crop); 0 outside the crop."""
    return cv2.warpAffine(np.asarray(crop_map, np.float32), matrix, (shape[1], shape[0]),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)


def write_heatmaps(model_input: np.ndarray, error_map: np.ndarray, scale: float, heatmap: Path,
                   overlay: Path | None, frame: tuple[np.ndarray, np.ndarray] | None = None,
                   crop_overlay: Path | None = None, outlines: list[np.ndarray] = ()) -> None:
    """Write the heatmap and overlay pictures, each through a temporary name and a rename, so a
    reader never sees half a picture; `outlines`, the hot regions in the map's pixels
    (`scoring.hot_contours`), are drawn on both overlays.

    With `frame` (a shrunk copy of the photo, `Prepared.preview`, and its matrix) the overlay is drawn on the photo
    (at most PLAIN_SIDE pixels when no region is hot) and the upright crop's overlay goes to
    `crop_overlay`; without it the overlay is the crop's. No `overlay`, no overlay on the photo.
    """
    heatmap.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(heatmap, heatmap_png(error_map, scale))
    if overlay is not None:
        save_picture(overlay, overlay_image(model_input, error_map, scale, outlines) if frame is None
                     else frame_overlay_image(*frame, error_map, scale, outlines, plain_side=PLAIN_SIDE))
    if frame is not None and crop_overlay is not None:
        save_picture(crop_overlay, overlay_image(model_input, error_map, scale, outlines))


# Pictures for people, not archives (the upright overlay, evaluation's pictures): fast PNG
# compression with every row filtered by Sub (libpng otherwise tries each filter on each row:
# twice the time on a colour heatmap, for files 3% larger); a picture of the photo (many grey
# levels, large) as JPEG, about a tenth of its PNG.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1] + (
    [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB] if hasattr(cv2, "IMWRITE_PNG_FILTER") else [])  # OpenCV >= 4.12
JPEG_QUALITY = 90


def save_picture(path: Path, image: np.ndarray) -> None:
    """PNG, or JPEG for a .jpg name, encoded in memory and written by `write_atomic`."""
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    ok, data = cv2.imencode(path.suffix, image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if jpeg else PNG_PARAMS)
    if not ok:
        raise ValueError(f"cannot encode {path.name}")
    write_atomic(path, data)


def write_atomic(path: Path, data: bytes | np.ndarray) -> None:
    """`data` (bytes, or an encoded picture as OpenCV returns it: a uint8 array) written by Python
    through a temporary name and a rename: a reader never sees half a picture, a full disk is an
    OSError with its errno (ENOSPC), and no half-written temporary file is left."""
    if isinstance(data, np.ndarray) and data.dtype != np.uint8:
        raise TypeError(f"{path.name}: encoded bytes expected, not an array of {data.dtype}")
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        tmp.write_bytes(memoryview(np.ascontiguousarray(data) if isinstance(data, np.ndarray) else data))
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
    overlay: Path | None  # the daemon writes none for a part judged ok that shows no heat
    crop: Path | None  # the daemon writes it for a defect only


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
