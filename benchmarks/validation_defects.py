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
from inspector.preprocess import dark_region

KINDS = ("pit", "scratch", "worn thread", "broken tip", "chip", "stain")


def draw(rng: np.random.Generator, image: np.ndarray, kind: int) -> np.ndarray:
    """`image` (H, W) in [0, 1], a pose-normalised part (head left), with a defect of `KINDS[kind]`."""
    h, w = image.shape
    part = dark_region(image, 2.0)
    out = image.copy()
    ys, xs = np.nonzero(part)
    x_min, x_max = xs.min(), xs.max()
    background = float(np.median(image[~cv2.dilate(part.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)]))
    if kind == 0:  # pit: a small bright or dark ellipse
        i = rng.integers(len(ys))
        cv2.ellipse(out, (int(xs[i]), int(ys[i])), (int(rng.integers(2, 5)), int(rng.integers(1, 4))),
                    rng.uniform(0, 180), 0, 360, float(rng.choice([0.05, 0.95])), -1)
    elif kind == 1:  # scratch on the head or neck: a thin bright line
        x0 = int(rng.uniform(x_min, x_min + 0.45 * (x_max - x_min)))
        rows = np.nonzero(part[:, x0])[0]
        y0 = int(rng.uniform(rows.min(), rows.max())) if len(rows) else h // 2
        angle = rng.uniform(-0.6, 0.6) + rng.choice([0, np.pi / 2])
        length = rng.uniform(8, 20)
        cv2.line(out, (x0, y0), (int(x0 + length * np.cos(angle)), int(y0 + length * np.sin(angle))),
                 float(rng.uniform(0.85, 1.0)), 1)
        out = np.where(part, out, image)
    elif kind == 2:  # worn thread: a stretch of one thread edge blurred smooth
        x0 = int(rng.uniform(x_min + 0.55 * (x_max - x_min), x_max - 12))
        width = int(rng.integers(6, 14))
        rows = slice(0, h // 2) if rng.random() < 0.5 else slice(h // 2, h)
        out[rows, x0:x0 + width] = cv2.GaussianBlur(image, (0, 0), 3)[rows, x0:x0 + width]
    elif kind == 3:  # broken tip: background over the last few pixels, cut at an angle
        x1 = x_max - int(rng.integers(4, 10))
        slant = int(np.tan(rng.uniform(-0.5, 0.5)) * h)
        cut = np.zeros((h, w), np.uint8)
        cv2.fillPoly(cut, [np.array([[x1, 0], [w, 0], [w, h], [x1 + slant, h]], np.int32)], 1)
        out = np.where(cut > 0, background, out)
    elif kind == 4:  # chip: background showing through the outline
        edge = part & ~cv2.erode(part.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        ey, ex = np.nonzero(edge)
        j = rng.integers(len(ey))
        cv2.circle(out, (int(ex[j]), int(ey[j])), int(rng.integers(2, 5)), background, -1)
    else:  # stain: a faint smooth blotch
        i = rng.integers(len(ys))
        blotch = np.zeros((h, w), np.float32)
        cv2.circle(blotch, (int(xs[i]), int(ys[i])), int(rng.integers(3, 7)), 1.0, -1)
        out = out + cv2.GaussianBlur(blotch, (0, 0), 1.5) * rng.choice([-1, 1]) * rng.uniform(0.15, 0.3) * part
    return np.clip(out, 0, 1).astype(np.float32)
