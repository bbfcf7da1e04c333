"""Options of the denoising autoencoder, at their defaults in every shipped pipeline: synthetic
removals taken to a structure's end (`removal_to_end`: a lead cut short; `removal_to_end_long`: a
long structure from part way along it), the weakest synthetic blob or scratch
(`defect_min_strength`), and per-pixel statistics from the median and median absolute deviation
of good maps (`robust_spread`). At their defaults they draw no new random number and change
nothing; set, they reach the training and the calibration."""

import numpy as np
import pytest

from inspector.errors import ConfigError
from inspector.models.components.patch_memory_fit import pixel_statistics
from inspector.models.denoising import defects as drawing
from inspector.models.denoising import fit as denoising_fit
from inspector.models.denoising.defects import (LARGE_SHARE, TO_END_LARGEST, _long_to_end_mask, _structure_removed,
                                               _to_end_mask, add_defect)
from inspector.models.pipeline_files import pipeline_from_dict, resolve_pipeline
from inspector.usecases.training import load_folder, train_bundle
from conftest import SAMPLE


class Recorded:
    """A random generator that records which of its methods were called, in order, and with
    which positional arguments."""

    def __init__(self, seed: int):
        self.rng, self.calls, self.arguments = np.random.default_rng(seed), [], []

    def __getattr__(self, name):
        method = getattr(self.rng, name)

        def recorded(*args, **kwargs):
            self.calls.append(name)
            self.arguments.append((name, args))
            return method(*args, **kwargs)

        return recorded


def lead_frame() -> np.ndarray:
    frame = np.full((128, 128), 0.4, np.float32)
    frame[20:110, 62:65] = 0.9  # a lead three pixels wide on a plain board
    return frame


def test_off_the_removal_draws_what_a_stretch_always_drew():
    whole = np.ones((128, 128), bool)
    for seed in range(6):
        off, share_off = Recorded(seed), Recorded(seed)
        _structure_removed(off, lead_frame(), whole)
        _structure_removed(share_off, lead_frame(), whole, to_end_share=0.0)
        if len(off.calls) == 2:
            continue  # a closing: nothing to remove, no point drawn
        # The disc's size, opening or closing, the point, the ellipse's two axes and its angle.
        assert off.calls == share_off.calls == ["uniform", "random", "integers", "uniform", "uniform", "uniform"]
        on = Recorded(seed)
        _structure_removed(on, lead_frame(), whole, to_end_share=0.5)
        assert on.calls[:4] == ["uniform", "random", "integers", "random"]  # one more: to the end or not


def test_a_removal_to_the_end_leaves_the_lead_cut_short():
    frame = lead_frame()
    whole = np.ones(frame.shape, bool)
    cuts = {"top kept": 0, "bottom kept": 0}
    for seed in range(20):
        out = _structure_removed(np.random.default_rng(seed), frame, whole, to_end_share=1.0)
        if out is None:
            continue  # a closing: nothing bright to take away
        bright = out[20:110, 62:65].mean(axis=1) > 0.85
        gone = out[20:110, 62:65].mean(axis=1) < 0.5
        assert gone.sum() >= 3, seed
        # What is left of the lead is one stretch from one of its ends; the other end is gone.
        kept = np.flatnonzero(bright)
        assert len(kept) and kept[-1] - kept[0] + 1 == len(kept), seed
        assert (kept[0] == 0 and gone[-1]) or (kept[-1] == 89 and gone[0]), seed
        cuts["top kept" if kept[0] == 0 else "bottom kept"] += 1
        assert np.abs(out[:, :55] - 0.4).max() < 0.01 and np.abs(out[:, 72:] - 0.4).max() < 0.01, seed
    assert cuts["top kept"] >= 2 and cuts["bottom kept"] >= 2, cuts


def test_a_long_removal_cuts_the_lead_part_way_and_leaves_short_structure():
    frame = lead_frame()
    for y, x in ((30, 20), (90, 100), (60, 30)):
        frame[y:y + 3, x:x + 3] = 0.9  # bright dots: thin, not long
    whole = np.ones(frame.shape, bool)
    kept_lengths, removed = [], 0
    for seed in range(20):
        out = _structure_removed(np.random.default_rng(seed), frame, whole, 1.0, long_only=True)
        if out is None:
            continue  # a closing: nothing dark to take away
        removed += 1
        bright = out[20:110, 62:65].mean(axis=1) > 0.85
        kept = np.flatnonzero(bright)
        # One stretch from one end of the lead, cut 30-70% along it (less the mask's two pixels).
        assert len(kept) and kept[-1] - kept[0] + 1 == len(kept) and (kept[0] == 0 or kept[-1] == 89), seed
        kept_lengths.append(len(kept))
        for y, x in ((30, 20), (90, 100), (60, 30)):
            assert out[y + 1, x + 1] > 0.85, (seed, y, x)
    assert removed >= 5 and min(kept_lengths) >= 0.3 * 90 - 3 and max(kept_lengths) <= 0.7 * 90 + 1, kept_lengths


def test_a_short_lone_lead_with_a_gap_is_found_whole_and_cut_towards_either_end():
    change = np.zeros((128, 128), np.float32)
    change[40:80, 62:65] = 0.5  # 40 pixels long: under 1% of the frame
    change[60, 62:65] = 0.0  # a one-pixel gap between two highlights
    ends = set()
    for seed in range(12):
        mask = _long_to_end_mask(np.random.default_rng(seed), change)
        rows = np.flatnonzero(mask[:, 63])
        # From 30-70% along the whole lead (across the gap) to one end, two pixels wider.
        assert rows[0] <= 40 or rows[-1] >= 79, seed
        assert not (rows[0] <= 40 and rows[-1] >= 79), seed
        assert 40 * 0.3 - 3 <= len(rows) - 2 <= 40 * 0.7 + 3, (seed, len(rows))
        ends.add("top" if rows[0] <= 40 else "bottom")
    assert ends == {"top", "bottom"}


def test_without_a_long_structure_the_long_removal_gives_way():
    change = np.zeros((128, 128), np.float32)
    for y, x in ((30, 20), (90, 100), (60, 30)):
        change[y:y + 3, x:x + 3] = 0.5
    assert _long_to_end_mask(np.random.default_rng(0), change) is None
    change[20:110, 62:65] = 0.5
    mask = _long_to_end_mask(np.random.default_rng(0), change)
    assert mask is not None and mask[:, 63].any() and not mask[30:33, 20:23].any()
    change[:] = 0.5 * (np.arange(128) % 2)[None, :]  # lines everywhere: one structure, not thin
    assert _long_to_end_mask(np.random.default_rng(0), change) is None


def test_a_structure_too_large_to_be_thin_is_not_taken_to_its_end():
    change = np.zeros((100, 100), np.float32)
    side = int(np.ceil(np.sqrt(TO_END_LARGEST * change.size))) + 2
    change[10:10 + side, 10:10 + side] = 1.0
    assert _to_end_mask(np.random.default_rng(0), change, (20, 20)) is None
    change[:] = 0
    change[10:90, 50] = 1.0
    mask = _to_end_mask(np.random.default_rng(0), change, (50, 50))
    rows = np.flatnonzero(mask[:, 50])
    assert rows[0] <= 50 <= rows[-1] and (rows[0] < 12 or rows[-1] > 87)  # from the point to one end
    assert not (rows[0] < 12 and rows[-1] > 87)  # not both


def test_robust_statistics_do_not_forgive_a_place_for_a_few_unusual_good_images():
    maps = np.zeros((20, 32, 32), np.float32)
    maps += np.random.default_rng(0).normal(0, 0.1, maps.shape).astype(np.float32)
    maps[:2, 12:20, 12:20] = 10.0  # two good images unusual at one place
    mean, spread = pixel_statistics(maps)
    centre, robust = pixel_statistics(maps, robust=True)
    assert mean[16, 16] > 0.9 and abs(centre[16, 16]) < 0.2
    assert spread[16, 16] > 5 * robust[16, 16]
    # Elsewhere: the good images' own spread (0.1 here) plus the floor, its average.
    assert 0.15 < float(np.median(robust)) < 0.25


@pytest.mark.parametrize("long_only", [False, True])
def test_add_defect_hands_the_share_to_the_removal(long_only):
    frame, whole = lead_frame(), np.ones((128, 128), bool)
    frame[40:43, 20:23] = 0.9  # a bright dot: where a removal to the point changed most may go
    through = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        large, _ = rng.random() < LARGE_SHARE, rng.random()
        expected = _structure_removed(rng, frame, whole, 1.0, long_only)
        if large or expected is None:
            continue
        np.testing.assert_array_equal(
            add_defect(np.random.default_rng(seed), frame, frame[None], True, 1.0, 1.0, long_only), expected)
        through += 1
    assert through >= 3


def test_a_defect_is_blended_in_at_a_strength_from_the_least_to_one():
    frame = np.full((64, 64), 0.4, np.float32)
    for least in (0.4, 0.1):
        drawn = []
        for seed in range(10):
            rng = Recorded(seed)
            add_defect(rng, frame, frame[None], True, min_strength=least)
            drawn += [args for name, args in rng.arguments if name == "uniform"]
        # The blend's strength is drawn over [least, 1), not over the default's [0.4, 1).
        assert (least, 1.0) in drawn and (least == 0.4 or (0.4, 1.0) not in drawn)


def test_to_the_end_without_removals_is_refused():
    data = resolve_pipeline("general").to_dict()
    data["model"].update(removal_share=0.0, removal_to_end=0.5)
    with pytest.raises(ConfigError, match="removal_to_end.*removal_share"):
        pipeline_from_dict(data, source="to the end without removals")
    data["model"].update(removal_share=0.3, removal_to_end=1.5)
    with pytest.raises(ConfigError, match="removal_to_end"):
        pipeline_from_dict(data, source="out of range")
    data["model"].update(removal_to_end=0.0, removal_to_end_long=True)
    with pytest.raises(ConfigError, match="removal_to_end_long.*removal_to_end"):
        pipeline_from_dict(data, source="long without to the end")
    data["model"].update(removal_to_end_long=False, defect_min_strength=0.0)
    with pytest.raises(ConfigError, match="defect_min_strength"):
        pipeline_from_dict(data, source="no strength at all")


def test_both_options_reach_the_training_and_the_calibration(tmp_path, monkeypatch):
    data = resolve_pipeline("screw").to_dict()
    data["model"].update(filters=[8, 8, 8, 8], epochs=1, nuisance_copies=0, batch_size=8, min_steps=0,
                         defect_share=1.0, removal_share=1.0, removal_to_end=0.7, removal_to_end_long=True,
                         robust_spread=True, defect_min_strength=0.2)
    pipeline = pipeline_from_dict(data, source="both options on")
    defects, statistics = [], []
    add_defect, spread = drawing.add_defect, denoising_fit.pixel_statistics

    def recorded_defect(*args):
        defects.append(args[4:])
        return add_defect(*args)

    def recorded_statistics(maps, robust=False):
        statistics.append(robust)
        return spread(maps, robust)

    monkeypatch.setattr(drawing, "add_defect", recorded_defect)  # training_copy draws through it
    monkeypatch.setattr(denoising_fit, "pixel_statistics", recorded_statistics)
    train_bundle(load_folder(SAMPLE / "train" / "good", pipeline, seed=0), tmp_path / "b", pipeline, seed=0)
    assert defects and set(defects) == {(1.0, 0.7, True, 0.2)}
    assert statistics and set(statistics) == {True}
