"""Pixel-level quality of anomaly maps against ground-truth masks: pixel AUROC and AUPRO.

AUPRO is the MVTec AD evaluation's (Bergmann et al., "The MVTec Anomaly Detection Dataset",
IJCV 2021): every connected region of every mask (8-connected) is one defect; at each threshold
the per-region overlap (the share of a region's pixels above it) is averaged over all regions of
all images, and drawn against the false-positive rate over every pixel outside the masks (good
images included). The area under that curve up to a false-positive rate of 0.3, divided by 0.3.
Both figures come from one sort of all pixels' scores, as the reference code computes them.
"""

from __future__ import annotations

from bisect import bisect
from dataclasses import dataclass

import numpy as np

from .cv_setup import cv2

FPR_LIMIT = 0.3


@dataclass(frozen=True)
class PixelQuality:
    pixel_auroc: float
    aupro: float  # normalised: area up to FPR_LIMIT divided by FPR_LIMIT
    regions: int  # defect regions in the masks
    pixels: int


def regions_of(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The 8-connected regions of a mask: a label image (0: no defect) and their number."""
    count, labels = cv2.connectedComponents((np.asarray(mask) > 0).astype(np.uint8), connectivity=8)
    return labels, count - 1


def pixel_quality(maps: list[np.ndarray], masks: list[np.ndarray], fpr_limit: float = FPR_LIMIT,
                  counted: list[np.ndarray] | None = None) -> PixelQuality:
    """Pixel AUROC and AUPRO of anomaly maps (larger = more anomalous) against masks of the same
    shapes (non-zero: defect); images may differ in size. With `counted` (a boolean map per
    image) only those good pixels count as possible false positives; every defect pixel counts."""
    if len(maps) != len(masks) or not maps:
        raise ValueError(f"need as many masks as maps, and some: {len(maps)} maps, {len(masks)} masks")
    scores, defect, pro_step = [], [], []
    ok_pixels = region_count = 0
    for i, (anomaly, mask) in enumerate(zip(maps, masks)):
        anomaly = np.asarray(anomaly, np.float32)
        if anomaly.shape != np.shape(mask):
            raise ValueError(f"a map of shape {anomaly.shape} against a mask of shape {np.shape(mask)}")
        labels, count = regions_of(mask)
        sizes = np.bincount(labels.ravel(), minlength=count + 1).astype(np.float64)
        inside = labels > 0
        step = np.zeros(labels.shape, np.float32)
        step[inside] = 1.0 / sizes[labels[inside]]  # each region adds up to 1 when wholly above
        keep = inside | counted[i] if counted is not None else np.ones(labels.shape, bool)
        scores.append(anomaly[keep])
        defect.append(inside[keep])
        pro_step.append(step[keep])
        ok_pixels += int((keep & ~inside).sum())
        region_count += count
    if ok_pixels == 0 or region_count == 0:
        raise ValueError("pixel quality needs pixels outside the masks and at least one defect region")
    score = np.concatenate(scores)
    order = np.argsort(score, kind="stable")[::-1]  # highest first
    score = score[order]
    is_defect = np.concatenate(defect)[order]
    fpr = np.cumsum(~is_defect, dtype=np.float64) / ok_pixels
    tpr = np.cumsum(is_defect, dtype=np.float64) / is_defect.sum()
    pro = np.cumsum(np.concatenate(pro_step)[order], dtype=np.float64) / region_count
    last = np.append(score[1:] != score[:-1], True)  # a threshold takes every pixel of its score
    fpr, tpr, pro = (np.concatenate([[0.0], np.clip(curve[last], 0.0, 1.0)]) for curve in (fpr, tpr, pro))
    return PixelQuality(pixel_auroc=area(fpr, tpr), aupro=area(fpr, pro, fpr_limit) / fpr_limit,
                        regions=region_count, pixels=int(score.size))


def area(x: np.ndarray, y: np.ndarray, x_max: float | None = None) -> float:
    """The trapezoid area under y(x) for increasing x, up to `x_max` (y interpolated there)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    correction = 0.0
    if x_max is not None:
        if x_max not in x:
            at = bisect(list(x), x_max)
            if 0 < at < len(x):
                y_max = y[at - 1] + (y[at] - y[at - 1]) * (x_max - x[at - 1]) / (x[at] - x[at - 1])
                correction = 0.5 * (y_max + y[at - 1]) * (x_max - x[at - 1])
        keep = x <= x_max
        x, y = x[keep], y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)
