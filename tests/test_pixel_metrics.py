"""Pixel AUROC and AUPRO on maps whose figures are known, and against a second, plain
implementation of the MVTec AD definition (a threshold sweep, scikit-image's region labelling)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label

from inspector.calibration import roc_auc
from inspector.pixel_metrics import FPR_LIMIT, area, pixel_quality


def two_regions() -> np.ndarray:
    mask = np.zeros((40, 60), np.uint8)
    mask[5:15, 5:25] = 255  # region A, 200 pixels
    mask[25:35, 40:50] = 255  # region B, 100 pixels
    return mask


def test_a_perfect_map_scores_one_and_an_inverted_one_zero():
    mask = two_regions()
    good = np.zeros_like(mask)
    perfect = pixel_quality([mask / 255.0, good.astype(float)], [mask, good])
    assert perfect.pixel_auroc == 1.0 and perfect.aupro == pytest.approx(1.0) and perfect.regions == 2
    inverted = pixel_quality([1 - mask / 255.0, np.ones(mask.shape)], [mask, good])
    assert inverted.pixel_auroc == 0.0 and inverted.aupro == 0.0


def test_a_map_hot_on_half_a_region():
    mask = two_regions()
    anomaly = np.zeros(mask.shape)
    anomaly[5:15, 5:25] = 1.0  # region A wholly hot
    anomaly[25:35, 40:45] = 1.0  # half of region B
    # At threshold 1: no false positive, overlap (1 + 0.5) / 2 = 0.75; below it everything.
    # The curve (0, 0) (0, 0.75) (1, 1): up to 0.3 the area is 0.3 * (0.75 + 0.825) / 2.
    q = pixel_quality([anomaly], [mask])
    assert q.aupro == pytest.approx(0.3 * (0.75 + 0.825) / 2 / 0.3)
    # Pixel AUROC: 250 of the 300 defect pixels above every good pixel, 50 tied with all of them.
    assert q.pixel_auroc == pytest.approx((250 + 0.5 * 50) / 300)


def reference(maps, masks, fpr_limit=FPR_LIMIT):
    """The definition, step by step: every distinct score a threshold; regions by scikit-image."""
    regions, ok = [], []
    for anomaly, mask in zip(maps, masks):
        labels = label(mask > 0, connectivity=2)
        regions += [(anomaly, labels == k) for k in range(1, labels.max() + 1)]
        ok.append(anomaly[mask == 0])
    ok = np.concatenate(ok)
    curve = [(0.0, 0.0)]
    for t in np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]:
        curve.append(((ok >= t).mean(), np.mean([(a[r] >= t).mean() for a, r in regions])))
    fpr, pro = np.array(curve).T
    defect = np.concatenate([a[m > 0] for a, m in zip(maps, masks)])
    return roc_auc(ok, defect), area(fpr, pro, fpr_limit) / fpr_limit


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_a_plain_threshold_sweep(seed):
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for i in range(4):
        mask = np.zeros((24, 32), np.uint8)
        if i:  # one good image, three with one to three blobs
            for _ in range(i):
                y, x = rng.integers(2, 20), rng.integers(2, 28)
                mask[y:y + rng.integers(2, 5), x:x + rng.integers(2, 5)] = 1
        masks.append(mask)
        # Coarse levels: many ties, as real maps have outside the crop.
        maps.append(np.round(rng.random(mask.shape) * 0.7 + mask * rng.random() * 0.6, 1))
    q = pixel_quality(maps, masks)
    auroc, aupro = reference(maps, masks)
    assert q.pixel_auroc == pytest.approx(auroc, abs=1e-9)
    assert q.aupro == pytest.approx(aupro, abs=1e-6)  # each region's steps are float32
    assert 0.0 < q.aupro < 1.0


def test_maps_and_masks_must_match():
    with pytest.raises(ValueError, match="shape"):
        pixel_quality([np.zeros((4, 4))], [np.zeros((4, 5))])
    with pytest.raises(ValueError, match="defect region"):
        pixel_quality([np.zeros((4, 4))], [np.zeros((4, 4))])


def test_the_score_map_is_drawn_back_into_the_photos_pixels():
    """A crop pixel's heat lands where the pose matrix says it came from, at the mask's size;
    pixels outside the crop are below every pixel inside."""
    from inspector.inference import Result
    from inspector.settings import ScoringConfig
    from inspector.usecases.pixel_evaluation import OUTSIDE, frame_map

    # Preview 100x100 of a 400x400 photo; the crop (40x20) is the preview's pixels 30-70 x 40-60.
    preview_matrix = np.array([[1.0, 0, -30], [0, 1.0, -40]])
    error = np.zeros((20, 40), np.float32)
    error[10, 25] = 1.0  # preview (55, 50) -> photo (220, 200)
    result = Result(path=None, verdict="defect", score=1.0, error_map=error,
                    frame=(np.zeros((100, 100), np.uint8), preview_matrix), width=400, height=400)
    mapped = frame_map(result, ScoringConfig(reduce="max"), (400, 400))
    y, x = np.unravel_index(np.argmax(mapped), mapped.shape)
    assert abs(x - 221) <= 3 and abs(y - 201) <= 3
    assert mapped[0, 0] == OUTSIDE and mapped[200, 150] > OUTSIDE  # outside the crop / inside it


def test_evaluate_with_masks_and_kinds(tiny_bundle, tmp_path):
    import json

    from click.testing import CliRunner

    from conftest import SAMPLE
    from inspector.cli import cli
    from inspector.cv_setup import cv2

    masks, defects = tmp_path / "masks", sorted((SAMPLE / "test" / "defect").glob("*.png"))
    masks.mkdir()
    for i, image in enumerate(defects):  # masks at twice the photos' size: read at their own
        mask = np.zeros((512, 512), np.uint8)
        cv2.circle(mask, (200 + 10 * i, 260), 20, 255, -1)
        cv2.imwrite(str(masks / image.name), mask)
    (tmp_path / "kinds.csv").write_text("file,kind\n" + "".join(
        f"{p.name},{'head' if i % 2 else 'thread'}\n" for i, p in enumerate(defects)))
    args = ["evaluate", str(tiny_bundle), "--good", str(SAMPLE / "test" / "good"), "--defect",
            str(SAMPLE / "test" / "defect"), "--masks", str(masks), "--kinds", str(tmp_path / "kinds.csv")]
    result = CliRunner().invoke(cli, [*args, "--json", "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert 0.0 <= data["pixel_auroc"] <= 1.0 and 0.0 <= data["aupro"] <= 1.0
    assert data["regions"] == len(defects) and data["masks_missing"] == []
    assert set(data["kinds"]) == {"head", "thread"}
    assert sum(k["defects"] for k in data["kinds"].values()) == data["defect"]
    assert sum(k["found"] for k in data["kinds"].values()) == data["confusion"]["true_positive"]
    assert all(0.0 <= k["aupro"] <= 1.0 for k in data["kinds"].values())
    assert len(list((tmp_path / "report" / "pictures").glob("*.jpg"))) == data["good"] + data["defect"]
    text = CliRunner().invoke(cli, args)
    assert "Pixel AUROC" in text.output and "head: found" in text.output
    moved = CliRunner().invoke(cli, [*args, "--nuisance", "position"])
    assert moved.exit_code != 0 and "moves the part, not its mask" in moved.output
    # A kind whose masks are empty has no pixel figures (and says so); an unreadable mask is one line.
    for i, image in enumerate(defects):
        if i % 2:
            cv2.imwrite(str(masks / image.name), np.zeros((512, 512), np.uint8))
    empty = json.loads(CliRunner().invoke(cli, [*args, "--json"]).stdout)
    assert empty["kinds"]["head"]["aupro"] is None and empty["kinds"]["thread"]["aupro"] is not None
    (masks / defects[0].name).write_bytes(b"not a png")
    broken = CliRunner().invoke(cli, args)
    assert broken.exit_code == 1 and f"cannot read the mask {masks / defects[0].name}" in broken.output


def test_false_positives_can_be_counted_in_part_of_the_photo():
    """Good pixels outside `counted` drop out; defect pixels always count."""
    mask = two_regions()
    anomaly = np.zeros(mask.shape)
    anomaly[mask > 0] = 0.5
    anomaly[:, 55:] = 1.0  # a hot stripe on good pixels
    everywhere = pixel_quality([anomaly], [mask])
    counted = np.ones(mask.shape, bool)
    counted[:, 55:] = False
    elsewhere = pixel_quality([anomaly], [mask], counted=[counted])
    assert everywhere.pixel_auroc < 1.0 and elsewhere.pixel_auroc == 1.0
    assert elsewhere.aupro == pytest.approx(1.0)


def test_a_ring_of_heat_is_one_region_measured_by_its_hot_pixels():
    from inspector.regions import hot_regions
    from inspector.scoring import hot_contours
    from inspector.settings import ScoringConfig

    config = ScoringConfig(reduce="max")
    heat = np.zeros((64, 192), np.float32)
    ring = np.zeros((64, 192), np.uint8)
    from inspector.cv_setup import cv2

    cv2.circle(ring, (96, 32), 20, 1, 3)
    heat[ring > 0] = 1.0
    outlines = hot_contours(heat, 0.5, config, defect=True)
    [region] = hot_regions(heat, config, np.array([[0.5, 0, 0], [0, 0.5, 0]]), outlines, 0.5, True)
    # Photo pixels are half a crop pixel: each hot crop pixel is 4 photo pixels.
    assert region["area_px"] == pytest.approx(4 * int(ring.sum()))
    assert region["mean"] == region["peak"] == 1.0
    assert region["box"][0] <= 2 * (96 - 22) and region["box"][0] + region["box"][2] >= 2 * (96 + 22)
