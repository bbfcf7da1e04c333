"""Synthetic defects for training: what a denoising autoencoder learns to leave out.

Blobs of thresholded low-frequency noise (the shapes of pits, chips and stains) or thin
scratches, on the part or its outline, filled with a piece of another good part or of the
same part shifted (a thread where none belongs), a smooth random texture, or a flat bright or
dark level, blended in at a random strength. Training code only.
"""

from __future__ import annotations

import numpy as np

from ...cv_setup import cv2
from ...preprocess import dark_region


def part_outline(image: np.ndarray) -> np.ndarray:
    """Where defects may go: the part (darker than the background) and a 2-pixel margin."""
    part = dark_region(image, 2.0).astype(np.uint8)
    return cv2.dilate(part, np.ones((5, 5), np.uint8)) > 0


def _blob_mask(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    h, w = region.shape
    for _ in range(10):
        grid = (max(2, h // 2 ** int(rng.integers(2, 5))), max(2, w // 2 ** int(rng.integers(2, 6))))
        noise = cv2.resize(rng.standard_normal(grid).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        noise = cv2.GaussianBlur(noise, (0, 0), 1.0)
        mask = (noise > np.quantile(noise, rng.uniform(0.95, 0.995))) & region
        if mask.sum() >= 6:
            return mask
    return mask


def _scratch_mask(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    mask = np.zeros(region.shape, np.uint8)
    ys, xs = np.nonzero(region)
    i = int(rng.integers(len(ys)))
    angle, length = rng.uniform(0, np.pi), rng.uniform(4, 25)
    end = (int(xs[i] + length * np.cos(angle)), int(ys[i] + length * np.sin(angle)))
    cv2.line(mask, (int(xs[i]), int(ys[i])), end, 1, int(rng.integers(1, 3)))
    return (mask > 0) & region


def _filling(rng: np.random.Generator, image: np.ndarray, others: np.ndarray) -> np.ndarray:
    h, w = image.shape
    kind = int(rng.integers(4))
    if kind == 0:  # a piece of another good part, from elsewhere on it
        source = others[int(rng.integers(len(others)))]
        source = np.roll(source, (int(rng.integers(-8, 9)), int(rng.integers(-40, 41))), axis=(0, 1))
        return source[::-1] if rng.random() < 0.5 else source
    if kind == 1:  # the same part, shifted: a thread where the shank is, an edge out of place
        return np.roll(image, (int(rng.integers(-10, 11)), int(rng.integers(-40, 41))), axis=(0, 1))
    if kind == 2:  # a smooth random texture
        texture = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), rng.uniform(0.5, 3))
        level = 0.5 + rng.uniform(-0.3, 0.3)
        return np.clip(level + texture / (texture.std() + 1e-6) * rng.uniform(0.05, 0.3), 0, 1)
    level = rng.uniform(0.0, 0.25) if rng.random() < 0.5 else rng.uniform(0.75, 1.0)  # flat dark or bright
    return np.full((h, w), level, np.float32)


def add_defect(rng: np.random.Generator, image: np.ndarray, others: np.ndarray) -> np.ndarray:
    """`image` (H, W) in [0, 1] with one synthetic defect; `others`: good images to borrow from."""
    region = part_outline(image)
    if not region.any():
        return image
    mask = _scratch_mask(rng, region) if rng.random() < 0.25 else _blob_mask(rng, region)
    mask = mask.astype(np.float32)
    if rng.random() < 0.5:
        mask = cv2.GaussianBlur(mask, (0, 0), 0.7)  # a soft edge
    strength = rng.uniform(0.4, 1.0) * mask
    return (image * (1 - strength) + _filling(rng, image, others) * strength).astype(np.float32)
