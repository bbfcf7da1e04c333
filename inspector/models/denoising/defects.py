"""Synthetic defects for training: what a denoising autoencoder learns to leave out.

Blobs of thresholded low-frequency noise (the shapes of pits, chips and stains) or thin
scratches, on the part or its outline, filled with a piece of another good part or of the
same part shifted (a thread where none belongs), a smooth random texture, or a flat bright or
dark level, blended in at a random strength; if the pipeline asks, some take thin structure
away instead (a lead or wire cut or missing). Training code only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...cv_setup import cv2
from ...lighting import dark_region

if TYPE_CHECKING:
    from . import DenoisingSettings


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


def _large_mask(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """An ellipse a fifth to a half of the frame across, anywhere: a part missing or out of place."""
    h, w = shape
    mask = np.zeros(shape, np.uint8)
    axes = (int(w * rng.uniform(0.1, 0.25)), int(h * rng.uniform(0.1, 0.25)))
    centre = (int(rng.integers(w)), int(rng.integers(h)))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask > 0


def _far_shift(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """The frame moved by a fifth to a half of its size: what lies elsewhere where the part belongs."""
    h, w = image.shape
    dy, dx = (int(rng.choice([-1, 1]) * rng.uniform(0.2, 0.5) * side) for side in (h, w))
    return np.roll(image, (dy, dx), axis=(0, 1))


# A structure taken away to its end is at most this share of the frame: a larger one is no thin structure.
TO_END_LARGEST = 0.06


def _to_end_mask(rng: np.random.Generator, change: np.ndarray, point: tuple[int, int]) -> np.ndarray | None:
    """The thin structure through `point` (its pixels changed by at least a quarter as much as
    `point`, connected to it) from `point` to one of its ends along its main axis (drawn at
    random), two pixels wider all round; None when it is larger than TO_END_LARGEST of the frame."""
    structure = (change >= 0.25 * change[point]).astype(np.uint8)
    _, labels = cv2.connectedComponents(structure, connectivity=8)
    ys, xs = np.nonzero(labels == labels[point])
    side = rng.choice([-1.0, 1.0])
    if len(ys) > TO_END_LARGEST * change.size:
        return None
    coords = np.stack([ys, xs], 1).astype(np.float64)
    axis = np.linalg.eigh(np.cov(coords.T) + 1e-9 * np.eye(2))[1][:, -1] if len(ys) > 2 else np.array([1.0, 0.0])
    along = (coords - np.array(point, np.float64)) @ axis
    mask = np.zeros(change.shape, np.uint8)
    mask[ys[side * along >= 0], xs[side * along >= 0]] = 1
    return cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0


# A long structure spans at least this share of the frame's shorter side (and 8 pixels) ...
LONG_STRUCTURE = 0.15
LONG_PIXELS = 8
# ... counting the pixels changed by at least half of the higher of the change at the frame's top
# hundredth and at the changed pixels' top tenth (which decides when under a tenth of the frame
# changed).
STRONG_QUANTILE = 0.9


def _long_to_end_mask(rng: np.random.Generator, change: np.ndarray) -> np.ndarray | None:
    """A long thin structure taken away from a point 30-70% along its main axis to one of its
    ends (drawn at random), two pixels wider all round: a lead cut short, wherever the frame has a
    long structure. The structures: the pixels the opening or closing changed strongly (see
    STRONG_QUANTILE), joined over one-pixel gaps (highlights along a lead), spanning at least
    LONG_STRUCTURE of the shorter side across their bounding box, at most TO_END_LARGEST of the
    frame. The axis is a straight line: a bent structure is cut across it. None when there is
    no such structure."""
    changed = change[change > 0.02]
    if not changed.size:
        return None
    level = max(float(np.quantile(change, 0.99)), float(np.quantile(changed, STRONG_QUANTILE)))
    strong = (change >= 0.5 * level).astype(np.uint8)
    structure = cv2.morphologyEx(strong, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(structure, connectivity=8)
    extent = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])
    small = stats[1:, cv2.CC_STAT_AREA] <= TO_END_LARGEST * change.size
    candidates = np.flatnonzero((extent >= max(LONG_STRUCTURE * min(change.shape), LONG_PIXELS)) & small) + 1
    if not len(candidates):
        return None
    ys, xs = np.nonzero(labels == int(rng.choice(candidates)))
    coords = np.stack([ys, xs], 1).astype(np.float64)
    along = (coords - coords.mean(0)) @ np.linalg.eigh(np.cov(coords.T))[1][:, -1]
    if rng.random() < 0.5:
        along = -along
    gone = along >= along.min() + rng.uniform(0.3, 0.7) * (along.max() - along.min())
    mask = np.zeros(change.shape, np.uint8)
    mask[ys[gone], xs[gone]] = 1
    return cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0


def _structure_removed(rng: np.random.Generator, image: np.ndarray, region: np.ndarray,
                       to_end_share: float = 0.0, long_only: bool = False) -> np.ndarray | None:
    """The image with a stretch of thin structure taken away, or None when it has none in
    `region`: a grey opening (bright structure) or closing (dark) by a disc a twentieth to a
    tenth of the frame across takes it all away; an ellipse of that (a seventeenth to a fifth of
    the frame across, cut to `region`), centred where it changed the image most, replaces the
    image there. What a lead or a wire cut or missing leaves. `to_end_share` of them take the
    structure away from that point to one of its ends instead (`_to_end_mask`): a lead cut short;
    with `long_only`, a long structure anywhere in `region` from part way along it to its end
    (`_long_to_end_mask`), or the ellipse when the frame has none."""
    side = max(3, int(min(image.shape) * rng.uniform(0.05, 0.1))) | 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    operation = cv2.MORPH_OPEN if rng.random() < 0.5 else cv2.MORPH_CLOSE
    removed = cv2.morphologyEx(image, operation, disc, borderType=cv2.BORDER_REPLICATE)
    change = np.where(region, np.abs(image - removed), 0.0)
    # The centre is drawn among the pixels changed most (above the top fiftieth): a structure
    # changed evenly over more than a fiftieth of the frame has none above it, and gives None.
    ys, xs = np.nonzero(change > max(0.05, float(np.quantile(change, 0.98))))
    if not len(ys):
        return None
    i = int(rng.integers(len(ys)))
    # Drawn only when the share is set: without it the stretches' random numbers are the same.
    to_end = None
    if to_end_share and rng.random() < to_end_share:
        to_end = (_long_to_end_mask(rng, change) if long_only
                  else _to_end_mask(rng, change, (int(ys[i]), int(xs[i]))))
    if to_end is not None:
        mask = to_end.astype(np.uint8)
    else:
        h, w = image.shape
        mask = np.zeros(image.shape, np.uint8)
        axes = (max(2, int(w * rng.uniform(0.03, 0.1))), max(2, int(h * rng.uniform(0.03, 0.1))))
        cv2.ellipse(mask, (int(xs[i]), int(ys[i])), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    mask[~region] = 0  # like every other drawn defect: a part cut out is changed on the part only
    mask = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7)
    return (image * (1 - mask) + removed * mask).astype(np.float32)


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


# Whole frames: this share of the defects are large (a part missing or out of place).
LARGE_SHARE = 0.2


def add_defect(rng: np.random.Generator, image: np.ndarray, others: np.ndarray,
               whole_frame: bool = False, removal_share: float = 0.0, to_end_share: float = 0.0,
               to_end_long: bool = False, min_strength: float = 0.4) -> np.ndarray:
    """`image` (H, W) in [0, 1] with one synthetic defect; `others`: good images to borrow from.
    `whole_frame`: no part was segmented (a registered frame), so a defect may go anywhere, and
    some are large: a region filled with what lies elsewhere in the frame. `removal_share`: the
    share of defects that take a stretch of thin structure away (`_structure_removed`), and
    `to_end_share` of those the structure from a point to its end (`to_end_long`: a long
    structure from part way along it). A blob or scratch is blended in at a strength drawn from
    `min_strength` to 1."""
    if whole_frame and rng.random() < LARGE_SHARE:
        mask = cv2.GaussianBlur(_large_mask(rng, image.shape).astype(np.float32), (0, 0), 1.5)
        return (image * (1 - mask) + _far_shift(rng, image) * mask).astype(np.float32)
    region = np.ones(image.shape, bool) if whole_frame else part_outline(image)
    if not region.any():
        return image
    # Drawn only when the share is set: without removals the other defects' random numbers are the same.
    if removal_share and rng.random() < removal_share:
        removed = _structure_removed(rng, image, region, to_end_share, to_end_long)
        if removed is not None:
            return removed
    mask = _scratch_mask(rng, region) if rng.random() < 0.25 else _blob_mask(rng, region)
    mask = mask.astype(np.float32)
    if rng.random() < 0.5:
        mask = cv2.GaussianBlur(mask, (0, 0), 0.7)  # a soft edge
    strength = rng.uniform(min_strength, 1.0) * mask
    return (image * (1 - strength) + _filling(rng, image, others) * strength).astype(np.float32)


def training_copy(rng: np.random.Generator, index: int, arrays: np.ndarray, variants: np.ndarray | None,
                  settings: "DenoisingSettings", whole_frame: bool) -> tuple[np.ndarray, np.ndarray]:
    """One training image as the denoising autoencoder's training shows it: `arrays[index]`, or
    at `settings.nuisance_share` one of its nuisance copies `variants[index]`; a
    `settings.defect_share` of the time with a synthetic defect. Returns (shown, the image
    without the defect)."""
    image = arrays[index]
    if variants is not None and variants.shape[1] and rng.random() < settings.nuisance_share:
        image = variants[index, int(rng.integers(variants.shape[1]))]
    if rng.random() < settings.defect_share:
        return add_defect(rng, image, arrays, whole_frame, settings.removal_share, settings.removal_to_end,
                          settings.removal_to_end_long, settings.defect_min_strength), image
    return image, image
