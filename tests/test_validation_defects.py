"""The drawn validation defects (benchmarks/validation_defects.py): the screw's are sized on the
part (a crop of the same screw at another size meets a defect of the same size on the screw); a
structure shortened takes a lead away from a point to its end."""

import sys
from pathlib import Path

import numpy as np
import pytest

from inspector.cv_setup import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from validation_defects import GENERIC_KINDS, KINDS, REFERENCE_WIDTH, draw, draw_generic  # noqa: E402


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


def leads_frame() -> tuple[np.ndarray, list[int]]:
    """A board (grey) with a dark case and three bright leads 8 pixels wide running down from it,
    each ending in a darker tip (where it goes into the board), 256x256, with a little noise as a
    camera gives; the leads' centre columns."""
    frame = np.full((256, 256), 0.45, np.float32)
    cv2.rectangle(frame, (70, 30), (186, 90), 0.1, -1)
    centres = [90, 128, 166]
    for x in centres:
        cv2.rectangle(frame, (x - 4, 90), (x + 4, 220), 0.9, -1)
        cv2.rectangle(frame, (x - 4, 221), (x + 4, 236), 0.2, -1)
    return np.clip(frame + np.random.default_rng(5).normal(0, 0.02, frame.shape), 0, 1).astype(np.float32), centres


@pytest.mark.parametrize("seed", range(6))
def test_a_structure_shortened_loses_a_lead_from_a_point_to_its_end(seed):
    frame, centres = leads_frame()
    drawn, mask = draw_generic(np.random.default_rng(seed), frame, GENERIC_KINDS.index("thin structure shortened"))
    changed = [x for x in centres if (np.abs(drawn[:, x] - frame[:, x]) > 0.2).any()]
    assert len(changed) == 1  # one lead, the others untouched
    column = drawn[90:221, changed[0]]
    kept = np.flatnonzero(column > 0.7)
    # What is left of the lead is one stretch from one of its ends, 30-70% of it (the top-hat may
    # miss a few pixels at the lead's ends).
    assert len(kept) and np.ptp(kept) + 1 == len(kept)
    assert kept[0] <= 3 or kept[-1] >= len(column) - 4
    assert 0.25 * len(column) <= len(kept) <= 0.75 * len(column)
    # The lead ends at the cut: next to it is board, not the lead fading out into it.
    near = column[kept[-1] + 2:kept[-1] + 12] if kept[0] <= 3 else column[kept[0] - 11:kept[0] - 1]
    assert np.abs(near - 0.45).max() < 0.12
    if kept[0] <= 3:  # cut towards the lead's free end: its darker tip goes too
        tip = np.s_[222:235, changed[0] - 3:changed[0] + 4]
        assert mask[tip].mean() > 0.9 and np.abs(drawn[tip] - frame[tip]).mean() > 0.08
        # ... and what goes on past the end follows the lead, not off to one side.
        _, past = np.nonzero(mask[237:])
        assert len(past) and np.abs(past - changed[0]).max() <= 12
    # The mask covers what was taken away, and no other lead.
    gone = (frame > 0.7) & (drawn < 0.7)
    assert mask[gone].mean() > 0.95
    assert not mask[:, [x for x in centres if x != changed[0]]].any()


def test_a_frame_without_thin_structure_is_refused_with_a_reason():
    flat = np.full((128, 128), 0.5, np.float32)
    for kind in ("thin structure cut", "thin structure shortened"):
        with pytest.raises(ValueError, match="no thin structure"):
            draw_generic(np.random.default_rng(0), flat, GENERIC_KINDS.index(kind))
