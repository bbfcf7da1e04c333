"""Hot regions: where on the photo a part is bad, as numbers a line and QA can use.

Each connected region of the score map (`scoring.score_map`) above the bundle's threshold, drawn
back into the photo's own pixels through the inverse pose transform: its box, its outline, its
area (pixels, and mm^2 when the pipeline knows the camera's `mm_per_pixel`), its peak and mean
heat. A defect verdict always has one (`scoring.hot_contours` outlines the peak when no pixel
passes the threshold); an ok verdict may have none.
"""

from __future__ import annotations

import numpy as np

from .cv_setup import cv2
from .scoring import hot_level, score_map
from .settings import ScoringConfig

MAX_REGIONS = 10  # the hottest; a map hot all over is one finding, not a hundred
MAX_POINTS = 64  # of an outline, simplified until it has at most these many
SIMPLIFY_PX = 1.0  # the outline's largest deviation from the region's edge, in photo pixels, at first


def photo_matrix(preview: np.ndarray, preview_matrix: np.ndarray, width: int) -> np.ndarray:
    """The photo -> crop matrix from the preview's (the preview is the photo shrunk)."""
    matrix = np.array(preview_matrix, np.float64)
    matrix[:, :2] *= preview.shape[1] / width
    return matrix


def hot_regions(error_map: np.ndarray, config: ScoringConfig, matrix: np.ndarray, outlines: list[np.ndarray],
                threshold: float, defect: bool, mm_per_pixel: float = 0.0) -> list[dict]:
    """The hot regions of one error map (crop pixels) whose `outlines` `scoring.hot_contours`
    found (with `threshold`, for a `defect` or not), in the photo's pixels (`matrix`: photo ->
    crop), hottest first: {"box": [x, y, width, height], "outline": [[x, y], ...], "area_px",
    "area_mm2" (None without `mm_per_pixel`), "peak", "mean"}; area and heat over the hot
    pixels only (a ring of heat is not its hole)."""
    hot = score_map(error_map, config)
    level = hot_level(hot, threshold, defect)
    inverse = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    photo_px_per_crop_px = abs(float(np.linalg.det(inverse[:, :2])))
    regions = []
    for contour in outlines:
        inside = np.zeros(hot.shape, np.uint8)
        cv2.drawContours(inside, [contour], -1, 1, -1)
        values = hot[(inside > 0) & (hot > level)]
        # The outline around the pixels' edges, not through their centres: one pixel is a square.
        points = cv2.transform(contour.reshape(-1, 1, 2).astype(np.float64), inverse).reshape(-1, 2)
        outline = _simplified(points)
        x0, y0 = np.floor(points.min(axis=0)).astype(int)
        x1, y1 = np.ceil(points.max(axis=0)).astype(int)
        pad = int(np.ceil(np.sqrt(photo_px_per_crop_px) / 2))  # half a crop pixel, in photo pixels
        area_px = float(len(values)) * photo_px_per_crop_px
        regions.append({
            "box": [int(x0 - pad), int(y0 - pad), int(x1 - x0 + 2 * pad), int(y1 - y0 + 2 * pad)],
            "outline": outline,
            "area_px": round(area_px, 1),
            "area_mm2": round(area_px * mm_per_pixel ** 2, 4) if mm_per_pixel else None,
            "peak": float(values.max()) if len(values) else 0.0,
            "mean": float(values.mean()) if len(values) else 0.0,
        })
    regions.sort(key=lambda r: -r["peak"])
    return regions[:MAX_REGIONS]


def _simplified(points: np.ndarray) -> list[list[int]]:
    """An outline (photo pixels) with at most MAX_POINTS points, as whole pixels."""
    curve = np.round(points).astype(np.int32).reshape(-1, 1, 2)
    epsilon = SIMPLIFY_PX
    while len(curve) > MAX_POINTS:
        curve = cv2.approxPolyDP(curve, epsilon, True)
        epsilon *= 2
    return curve.reshape(-1, 2).tolist()
