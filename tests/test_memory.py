"""Patch memory (the `screw-memory` pipeline, and the default's second opinion): remembers good screws, flags what matches none."""

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import evaluate_on_sample
from inspector.bundle import load_bundle
from inspector.cli import cli
from inspector.cv_setup import cv2
from inspector.models.components.running import forward, score_arrays
from inspector.models.patch_memory.fit import memory_of
from inspector.models.pipeline_files import resolve_pipeline
from inspector.usecases.training import load_folder, train_bundle
from conftest import SAMPLE


@pytest.fixture(scope="module")
def screw():
    return resolve_pipeline("screw-memory")


@pytest.fixture(scope="module")
def good(screw):
    return load_folder(SAMPLE / "train" / "good", screw).arrays


def with_blob(image: np.ndarray, x: int, y: int) -> np.ndarray:
    marked = image.copy()
    cv2.circle(marked, (x, y), 3, float(image.max()), -1)  # a bright pit on the shank
    return marked


def test_a_remembered_image_matches_itself_exactly(screw, good):
    model = memory_of(good[:20], screw.model.settings)
    distances = forward(model, good[:3])
    assert distances.shape == (3, 64, 192)
    assert float(np.abs(distances).max()) < 1e-6


def test_a_blob_on_the_part_scores_higher_and_is_where_the_heat_is(screw, good):
    model = memory_of(good[:-1], screw.model.settings)
    part = good[-1]
    x, y = 80, 32  # the shank, middle of the crop
    scores, maps = score_arrays(model, np.stack([part, with_blob(part, x, y)]), screw.scoring)
    assert scores[1] > 3 * scores[0]
    hot_y, hot_x = np.unravel_index(np.argmax(maps[1]), maps[1].shape)
    assert abs(hot_x - x) <= 6 and abs(hot_y - y) <= 6


def test_bundle_round_trip_gives_the_same_scores(tmp_path, screw):
    loaded = load_folder(SAMPLE / "train" / "good", screw)
    bundle, summary = train_bundle(loaded, tmp_path / "m", screw, seed=0)
    assert summary["architecture"] == "patch_memory" and summary["epochs"] == 0
    assert "5-fold cross-validated" in summary["calibrated_on"]
    assert len(bundle.calibration["good_scores"]) == len(loaded.arrays)  # every image, out of fold
    tests = load_folder(SAMPLE / "test" / "defect", screw).arrays
    before, _ = score_arrays(bundle.model, tests, screw.scoring)
    reloaded = load_bundle(tmp_path / "m")  # safe_mode=True: the layer is registered, no code is run
    after, _ = score_arrays(reloaded.model, tests, screw.scoring)
    np.testing.assert_allclose(after, before, rtol=1e-5)


def test_the_patch_memory_pipeline_flags_the_sample_defects_and_passes_the_good(tmp_path):
    runner = CliRunner()
    trained = runner.invoke(cli, ["train", str(SAMPLE / "train" / "good"), "--out", str(tmp_path / "m"),
                                  "--pipeline", "screw-memory"])
    assert trained.exit_code == 0, trained.output
    assert "training time" in trained.output and "patch_memory" in trained.output
    report = evaluate_on_sample(tmp_path / "m")
    confusion = report["confusion"]
    # Measured: 11 of 12 defects flagged, 0 of 8 good rejected, AUROC 0.96 (40 training images).
    assert confusion["true_positive"] >= 9 and confusion["false_positive"] <= 1
    assert report["auroc"] >= 0.85
