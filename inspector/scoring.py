"""Model output -> per-pixel error map -> one image score; heatmap and overlay pictures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .config import ScoringConfig
from .cv_setup import cv2
from .preprocess import crop_corners


def error_maps(inputs: np.ndarray, outputs: np.ndarray, config: ScoringConfig) -> np.ndarray:
    """Per-pixel error, shape (N, H, W), float32, larger = more anomalous.

    `outputs` is the model's output: a reconstruction of `inputs`, or for error = "distance"
    (a model that outputs an error map) already the error map.
    """
    inputs = _squeeze(inputs)
    outputs = _squeeze(outputs)
    if config.error == "distance":
        return np.asarray(outputs, dtype=np.float32)
    if config.error == "squared":
        return np.square(inputs - outputs, dtype=np.float32)
    if config.error == "absolute":
        return np.abs(inputs - outputs, dtype=np.float32)
    # ssim: local structural dissimilarity, (1 - SSIM) / 2 in [0, 1]
    from skimage.metrics import structural_similarity

    maps = []
    for image, recon in zip(inputs, outputs):
        _, similarity = structural_similarity(image, recon, data_range=1.0, full=True)
        maps.append((1.0 - similarity) / 2.0)
    return np.asarray(maps, dtype=np.float32)


def image_scores(maps: np.ndarray, config: ScoringConfig) -> np.ndarray:
    """Reduce error maps (N, H, W) to one score per image, shape (N,), float64."""
    flat = maps.reshape(len(maps), -1)
    if config.reduce == "mean":
        return flat.mean(axis=1, dtype=np.float64)
    if config.reduce == "max":
        return flat.max(axis=1).astype(np.float64)
    if config.reduce == "topk_mean":
        k = max(1, int(round(flat.shape[1] * config.topk_fraction)))
        top = np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:]
        return top.mean(axis=1, dtype=np.float64)
    # smoothed_max: a defect is a blob, not one noisy pixel
    return np.array(
        [cv2.GaussianBlur(m, (0, 0), config.smooth_sigma).max() for m in maps], dtype=np.float64
    )


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
    grey = (np.clip(_squeeze(model_input[None])[0], 0, 1) * 255).astype(np.uint8)
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


def heat_scale(maps: np.ndarray) -> float:
    """Display scale for heatmaps: well above the error of good parts, so they stay cool."""
    return float(np.percentile(maps, 99.9) * 2.0) if maps.size else 1.0


def _squeeze(batch: np.ndarray) -> np.ndarray:
    return batch[..., 0] if batch.ndim == 4 else batch
