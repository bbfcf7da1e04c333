"""Validation defects: geometric faults drawn on pose-normalised crops of held-out good screws.

Unlike the training generator (`inspector.models.denoising.defects`: noise blobs, scratches,
pasted pieces), these imitate the faults a screw line sees, one kind each: a pit, a thin
scratch on the head or neck, a stretch of thread worn smooth, a broken tip, a chip on the
outline, a faint stain. Used to choose settings and to show what each part of a model adds
without looking at the test images.
"""

from __future__ import annotations

import numpy as np

from inspector.cv_setup import cv2
from inspector.lighting import dark_region

KINDS = ("pit", "scratch", "worn thread", "broken tip", "chip", "stain")


# The crop width the screw defects' sizes are given for: on a finer or coarser crop of the same
# screw they are scaled with it, so crops of different size meet defects of the same size on the
# part (at 192 the drawing is exactly as it was sized).
REFERENCE_WIDTH = 192


def draw(rng: np.random.Generator, image: np.ndarray, kind: int) -> np.ndarray:
    """`image` (H, W) in [0, 1], a pose-normalised part (head left), with a defect of `KINDS[kind]`.

    Sizes are in pixels of a REFERENCE_WIDTH-wide crop, scaled by W / REFERENCE_WIDTH."""
    h, w = image.shape
    scale = w / REFERENCE_WIDTH

    def px(value: float) -> int:  # a size drawn for the reference crop, in this crop's pixels
        return max(1, int(round(value * scale)))

    part = dark_region(image, 2.0 * scale)
    out = image.copy()
    ys, xs = np.nonzero(part)
    x_min, x_max = xs.min(), xs.max()
    near = px(9) | 1
    background = float(np.median(image[~cv2.dilate(part.astype(np.uint8), np.ones((near, near), np.uint8)).astype(bool)]))
    if kind == 0:  # pit: a small bright or dark ellipse
        i = rng.integers(len(ys))
        cv2.ellipse(out, (int(xs[i]), int(ys[i])), (px(rng.integers(2, 5)), px(rng.integers(1, 4))),
                    rng.uniform(0, 180), 0, 360, float(rng.choice([0.05, 0.95])), -1)
    elif kind == 1:  # scratch on the head or neck: a thin bright line
        x0 = int(rng.uniform(x_min, x_min + 0.45 * (x_max - x_min)))
        rows = np.nonzero(part[:, x0])[0]
        y0 = int(rng.uniform(rows.min(), rows.max())) if len(rows) else h // 2
        angle = rng.uniform(-0.6, 0.6) + rng.choice([0, np.pi / 2])
        length = rng.uniform(8, 20) * scale
        cv2.line(out, (x0, y0), (int(x0 + length * np.cos(angle)), int(y0 + length * np.sin(angle))),
                 float(rng.uniform(0.85, 1.0)), px(1))
        out = np.where(part, out, image)
    elif kind == 2:  # worn thread: a stretch of one thread edge blurred smooth
        x0 = int(rng.uniform(x_min + 0.55 * (x_max - x_min), x_max - px(12)))
        width = px(rng.integers(6, 14))
        rows = slice(0, h // 2) if rng.random() < 0.5 else slice(h // 2, h)
        out[rows, x0:x0 + width] = cv2.GaussianBlur(image, (0, 0), 3 * scale)[rows, x0:x0 + width]
    elif kind == 3:  # broken tip: background over the last few pixels, cut at an angle
        x1 = x_max - px(rng.integers(4, 10))
        slant = int(np.tan(rng.uniform(-0.5, 0.5)) * h)
        cut = np.zeros((h, w), np.uint8)
        cv2.fillPoly(cut, [np.array([[x1, 0], [w, 0], [w, h], [x1 + slant, h]], np.int32)], 1)
        out = np.where(cut > 0, background, out)
    elif kind == 4:  # chip: background showing through the outline
        rim = px(5) | 1
        edge = part & ~cv2.erode(part.astype(np.uint8), np.ones((rim, rim), np.uint8)).astype(bool)
        ey, ex = np.nonzero(edge)
        j = rng.integers(len(ey))
        cv2.circle(out, (int(ex[j]), int(ey[j])), px(rng.integers(2, 5)), background, -1)
    else:  # stain: a faint smooth blotch
        i = rng.integers(len(ys))
        blotch = np.zeros((h, w), np.float32)
        cv2.circle(blotch, (int(xs[i]), int(ys[i])), px(rng.integers(3, 7)), 1.0, -1)
        out = out + cv2.GaussianBlur(blotch, (0, 0), 1.5 * scale) * rng.choice([-1, 1]) * rng.uniform(0.15, 0.3) * part
    return np.clip(out, 0, 1).astype(np.float32)


# Generic defects, for a part of any shape: drawn on whole frames (any size) before they are
# prepared, each with its own mask. Sizes are shares of the frame's shorter side, so they mean
# the same at any resolution. None of them needs to know what the part is.
GENERIC_KINDS = ("thin structure cut", "piece shifted", "spot", "region moved", "thin structure shortened")

# A thin structure is at most this wide (share of the shorter side: 26 pixels of 512) ...
THIN_WIDTH = 0.05
# ... and stands out from its surroundings by at least this (the top 3% of the top-hat).
THIN_QUANTILE = 0.97
# A structure shortened is at least this long (share of the shorter side: 77 pixels of 512) ...
LONG_STRUCTURE = 0.15
# ... and taken away beyond its end by this share of its length too, where a lead's tip goes on
# darker than the top-hat sees.
BEYOND_END = 0.3


def thin_structures(frame: np.ndarray) -> np.ndarray:
    """Where a frame has thin bright structures (wires, leads, edges of light) standing out of
    their surroundings: a white top-hat narrower than THIN_WIDTH, thresholded at its top 3%,
    closed over small gaps (highlights along a wire)."""
    side = max(3, int(round(THIN_WIDTH * min(frame.shape))) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    tophat = cv2.morphologyEx(frame.astype(np.float32), cv2.MORPH_TOPHAT, kernel)
    thin = (tophat > np.quantile(tophat, THIN_QUANTILE)).astype(np.uint8)
    gap = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side // 3 | 1, side // 3 | 1))
    return cv2.morphologyEx(thin, cv2.MORPH_CLOSE, gap) > 0


def _structured_point(rng: np.random.Generator, frame: np.ndarray, margin: int) -> tuple[int, int]:
    """A place (x, y) where the frame has structure (drawn in proportion to the local gradient
    energy, so defects land on the part, whatever it is, more often than on a plain ground)."""
    gx, gy = cv2.Sobel(frame, cv2.CV_32F, 1, 0), cv2.Sobel(frame, cv2.CV_32F, 0, 1)
    energy = cv2.GaussianBlur(gx * gx + gy * gy, (0, 0), 3)
    energy[:margin], energy[-margin:], energy[:, :margin], energy[:, -margin:] = 0, 0, 0, 0
    weights = energy.ravel() / energy.sum()
    i = int(rng.choice(weights.size, p=weights))
    return i % frame.shape[1], i // frame.shape[1]


def _painted_over(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`frame` with `mask` painted over by its surroundings (cv2.inpaint, Telea, radius 5)."""
    return cv2.inpaint((frame * 255).astype(np.uint8), mask, 5, cv2.INPAINT_TELEA).astype(np.float32) / 255


def _shortened(rng: np.random.Generator, thin: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Where a long thin structure is taken away from a point along it to one of its ends (drawn
    at random) and a little beyond: a lead cut short, the rest of it gone. Masks (H, W) uint8 of
    what goes, and of the whole structure with the part beyond its end (both widened alike)."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(thin.astype(np.uint8))
    extent = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])
    if not len(extent) or extent.max() < 3:
        raise ValueError("no thin structure three pixels long or more to shorten in this frame")
    long = np.flatnonzero(extent >= LONG_STRUCTURE * side) + 1
    # Without a long structure, the longest there is.
    label = int(rng.choice(long)) if len(long) else int(np.argmax(extent)) + 1
    ys, xs = np.nonzero(labels == label)
    points = np.stack([xs, ys], 1).astype(np.float32)
    centre = points.mean(0)
    _, vectors = np.linalg.eigh(np.cov((points - centre).T))
    along = (points - centre) @ vectors[:, -1]  # the position along the structure's main axis
    if rng.random() < 0.5:
        along = -along
    low, high = along.min(), along.max()
    cut = low + rng.uniform(0.3, 0.7) * (high - low)
    gone = along >= cut
    mask = np.zeros(thin.shape, np.uint8)
    mask[ys[gone], xs[gone]] = 1
    whole = (labels == label).astype(np.uint8)
    # On past the end, as wide as the structure: from the removed stretch's middle through the
    # middle of its last tenth (both on its centre line, so a bent lead goes on as its tip points).
    middle = points[gone].mean(0)
    end = points[along >= high - 0.1 * (high - cut)].mean(0)
    direction = (end - middle) / max(float(np.linalg.norm(end - middle)), 1.0)
    beyond = end + direction * BEYOND_END * (high - low)
    # The top-hat sees a lead's bright middle: the mask is widened by the structure's own width.
    width = max(3, int(round(len(along) / max(high - low, 1.0))))
    for drawn in (mask, whole):
        cv2.line(drawn, tuple(int(round(v)) for v in end), tuple(int(round(v)) for v in beyond), 1, width)
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width | 1, width | 1))
    return cv2.dilate(mask, grow), cv2.dilate(whole, grow)


def draw_generic(rng: np.random.Generator, frame: np.ndarray, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """A frame (H, W) in [0, 1] with one defect of `GENERIC_KINDS[kind]`, and its mask (H, W) bool:
    - thin structure cut: a stretch of a thin bright structure painted over by its surroundings
      (cv2.inpaint), as a wire or lead cut or missing;
    - piece shifted: a small piece of the frame on structure moved a little, as a part bent;
    - spot: a small blotch darker or brighter than what it lies on, as a dent, burn or chip;
    - region moved: a larger piece (a tenth to a fifth of the frame) moved a little, as a
      component out of its place;
    - thin structure shortened: a long thin structure taken away from a point along it to its
      end and a little beyond, painted over by its surroundings, as a lead cut short."""
    frame = frame.astype(np.float32)
    h, w = frame.shape
    side = min(h, w)
    mask = np.zeros((h, w), np.uint8)
    out = frame.copy()
    if kind == 4:
        mask, whole = _shortened(rng, thin_structures(frame), side)
        # The whole structure is painted over and what goes is taken from that: painted over
        # alone, what is kept of the structure would run on into it, a lead fading, not cut.
        out = np.where(mask > 0, _painted_over(frame, whole), frame)
    elif kind == 0:
        thin = thin_structures(frame)
        ys, xs = np.nonzero(thin)
        if not len(ys):
            raise ValueError("no thin structure to cut in this frame")
        # Pieces of a thin structure, each a connected stretch of it within a window.
        for _ in range(20):
            i = int(rng.integers(len(ys)))
            half = int(rng.uniform(0.03, 0.07) * side)  # a stretch 6-14% of the frame long
            window = np.zeros((h, w), np.uint8)
            window[max(0, ys[i] - half):ys[i] + half, max(0, xs[i] - half):xs[i] + half] = 1
            count, labels = cv2.connectedComponents((thin & (window > 0)).astype(np.uint8))
            piece = labels == labels[ys[i], xs[i]]
            py, px = np.nonzero(piece)
            if max(np.ptp(py), np.ptp(px)) >= 1.5 * half:  # a stretch across the window, not a speck
                break
        mask = cv2.dilate(piece.astype(np.uint8), np.ones((5, 5), np.uint8))
        out = _painted_over(frame, mask)
    elif kind in (1, 3):
        radius = rng.uniform(0.03, 0.06) if kind == 1 else rng.uniform(0.1, 0.2)
        reach = rng.uniform(0.015, 0.04) if kind == 1 else rng.uniform(0.03, 0.06)
        x, y = _structured_point(rng, frame, int(0.05 * side))
        axes = (int(radius * side), int(radius * side * rng.uniform(0.5, 1.0)))
        cv2.ellipse(mask, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        angle = rng.uniform(0, 2 * np.pi)
        moved = np.roll(frame, (int(round(reach * side * np.sin(angle))), int(round(reach * side * np.cos(angle)))),
                        axis=(0, 1))
        out = np.where(mask > 0, moved, frame)
    else:
        x, y = _structured_point(rng, frame, int(0.05 * side))
        axes = (max(2, int(rng.uniform(0.01, 0.03) * side)), max(2, int(rng.uniform(0.01, 0.03) * side)))
        cv2.ellipse(mask, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        local = float(np.median(frame[mask > 0]))
        level = np.clip(local + rng.choice([-1, 1]) * rng.uniform(0.15, 0.35), 0, 1)
        soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)
        out = frame * (1 - soft) + level * soft
        mask = soft > 0.25
    changed = np.abs(out - frame) > 0.02  # only what the drawing changed counts as the defect
    return np.clip(out, 0, 1).astype(np.float32), (mask > 0) & changed
