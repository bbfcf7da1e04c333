"""Filling a patch memory and learning per-pixel statistics: training code shared by
`patch_memory` and by `denoising_autoencoder` (its second opinion, and its own maps' statistics).
"""

from __future__ import annotations

import numpy as np

from ...cv_setup import cv2
from ...lighting import otsu_split
from .patch_memory_layer import PatchMemory


def part_level(images: np.ndarray) -> float:
    """The grey level between part and background in the remembered images (median over images
    of the Otsu threshold), so serving needs no second segmentation."""
    return float(np.median([otsu_split(image, 2.0)[0] for image in images]))


def memory_layer(images: np.ndarray, settings, level: float | None = None) -> PatchMemory:
    """A patch memory layer remembering `images` (N, H, W); `settings` has neighbours,
    search_radius and patch_size. `level`: the grey level below which its distances count
    (`components.regions.part_region`; `WHOLE_FRAME`: everywhere), by default the part's in `images`."""
    count, height, width = images.shape
    layer = PatchMemory(count, height, width, settings.neighbours, settings.search_radius,
                        settings.patch_size, part_level(images) if level is None else level)
    images = np.asarray(images, np.float32)
    layer.memory.assign(images)
    layer.coarse_memory.assign(np.asarray(layer.coarse(images[..., None])))
    return layer


def pixel_statistics(good_maps: np.ndarray, robust: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and spread of error maps of good images a model did not learn from; the
    spread is smoothed and floored by its average, so a pixel that happened to vary little
    among these few images does not turn every small error there into an alarm. `robust`: the
    median and 1.4826 times the median absolute deviation instead, so a place where a few good
    images are unusual (a lead bent one way) is not forgiven for every image."""
    good_maps = np.asarray(good_maps, np.float32)
    if robust:
        centre = np.median(good_maps, axis=0)
        spread = 1.4826 * np.median(np.abs(good_maps - centre), axis=0)
    else:
        centre, spread = good_maps.mean(axis=0), good_maps.std(axis=0)
    return centre, cv2.GaussianBlur(spread, (0, 0), 2.0) + float(spread.mean()) + 1e-12


def set_statistics(layer, mean: np.ndarray, scale: np.ndarray) -> None:
    """Give a layer with `position_mean` and `position_scale` weights its per-pixel statistics."""
    layer.position_mean.assign(mean)
    layer.position_scale.assign(scale)
