"""The drawn validation defects (benchmarks/validation_defects.py) are sized on the part: a crop
of the same screw at another size meets a defect of the same size on the screw."""

import sys
from pathlib import Path

import numpy as np
import pytest

from inspector.cv_setup import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from validation_defects import KINDS, REFERENCE_WIDTH, draw  # noqa: E402


def screw_crop(width: int) -> np.ndarray:
    """A dark part lying along a light crop (head left, wider), `width` pixels wide, 3:1."""
    height = width // 3
    crop = np.full((height, width), 0.8, np.float32)
    s = width / REFERENCE_WIDTH
    cv2.rectangle(crop, (int(20 * s), int(14 * s)), (int(50 * s), int(50 * s)), 0.25, -1)  # head
    cv2.rectangle(crop, (int(50 * s), int(24 * s)), (int(172 * s), int(40 * s)), 0.3, -1)  # shank
    return crop


@pytest.mark.parametrize("kind", [KINDS.index(k) for k in ("pit", "chip", "stain", "broken tip")])
def test_a_defect_drawn_on_a_crop_twice_as_wide_covers_the_same_share_of_it(kind):
    changed = {}
    for width in (REFERENCE_WIDTH, 2 * REFERENCE_WIDTH):
        crop = screw_crop(width)
        shares = [(np.abs(draw(np.random.default_rng(seed), crop, kind) - crop) > 0.02).mean()
                  for seed in range(12)]
        changed[width] = float(np.median(shares))
    assert changed[REFERENCE_WIDTH] > 0
    # Sizes scale with the crop, so the share of the crop changed stays about the same (the
    # drawing in crop pixels would change a quarter of the share at twice the width).
    assert 0.6 < changed[2 * REFERENCE_WIDTH] / changed[REFERENCE_WIDTH] < 1.6


def test_at_the_reference_width_sizes_are_crop_pixels():
    crop = screw_crop(REFERENCE_WIDTH)
    pit = draw(np.random.default_rng(3), crop, KINDS.index("pit"))
    changed = np.abs(pit - crop) > 0.02
    ys, xs = np.nonzero(changed)
    # A pit's half-axes are 2-4 and 1-3 pixels: it fits a 9x9 box at the reference width.
    assert 0 < changed.sum() and np.ptp(xs) <= 9 and np.ptp(ys) <= 9
