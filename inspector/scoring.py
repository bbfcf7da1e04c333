"""Model output -> per-pixel error map -> one image score; the heatmaps' colour scale.

Below the models (their `fit` scores calibration images with it): imports only settings,
OpenCV and numpy. The pictures drawn from error maps are `inspector.pictures`.
"""

from __future__ import annotations

import numpy as np

from .cv_setup import cv2
from .settings import ScoringConfig


def error_maps(inputs: np.ndarray, outputs: np.ndarray, config: ScoringConfig) -> np.ndarray:
    """Per-pixel error, shape (N, H, W), float32, larger = more anomalous.

    `outputs` is the model's output: a reconstruction of `inputs`, or for error = "distance"
    (a model that outputs an error map) already the error map.
    """
    inputs = squeeze(inputs)
    outputs = squeeze(outputs)
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


def heat_scale(maps: np.ndarray) -> float:
    """Display scale for heatmaps: well above the error of good parts, so they stay cool."""
    return float(np.percentile(maps, 99.9) * 2.0) if maps.size else 1.0


def squeeze(batch: np.ndarray) -> np.ndarray:
    """A batch without its channel axis: (N, H, W, 1) -> (N, H, W); (N, H, W) as it is."""
    return batch[..., 0] if batch.ndim == 4 else batch


def score_map(error_map: np.ndarray, config: ScoringConfig) -> np.ndarray:
    """The map whose maximum is the score under a `max` or `smoothed_max` reducer: the error
    map, blurred as the score blurs it. Where it rises above the threshold is what made a part a
    defect (under a `mean` or `topk_mean` reducer it is the error map itself: no single pixel
    made the score, but the hot pixels still say where)."""
    error_map = np.asarray(error_map, np.float32)
    if config.reduce == "smoothed_max":
        return cv2.GaussianBlur(error_map, (0, 0), config.smooth_sigma)
    return error_map


def hot_contours(error_map: np.ndarray, threshold: float, config: ScoringConfig,
                 defect: bool = False) -> list[np.ndarray]:
    """The outlines (OpenCV contours, (x, y) in the map's pixels) of the regions of the score
    map above `threshold`. For a `defect` verdict whose score map stays under the threshold
    (a mean reducer) the region around its peak is outlined instead, so a defect always shows
    one."""
    hot = score_map(error_map, config)
    mask = (hot > hot_level(hot, threshold, defect)).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return list(contours)


def hot_level(hot: np.ndarray, threshold: float, defect: bool) -> float:
    """The level a score map (`score_map`) is hot above: the threshold, or for a defect whose map
    never reaches it, PEAK_SHARE of its peak."""
    if defect and hot.size and hot.max() <= threshold:
        return float(hot.max()) * PEAK_SHARE
    return threshold


# A defect whose map never reaches the threshold is outlined where it is within this share of its peak.
PEAK_SHARE = 0.8
