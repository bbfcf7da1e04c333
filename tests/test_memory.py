"""Patch memory, the default screw model: remembers good screws, flags what matches none."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from inspector.bundle import load_bundle
from inspector.cli import cli
from inspector.config import resolve_pipeline
from inspector.inference import forward, score_arrays
from inspector.models.patch_memory.fit import memory_of
from inspector.cv_setup import cv2
from inspector.training import load_folder, train_bundle
from conftest import SAMPLE


@pytest.fixture(scope="module")
def screw():
    return resolve_pipeline("screw")


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


def test_default_pipeline_flags_the_sample_defects_and_passes_the_good(tmp_path):
    runner = CliRunner()
    trained = runner.invoke(cli, ["train", str(SAMPLE / "train" / "good"), "--out", str(tmp_path / "m")])
    assert trained.exit_code == 0, trained.output
    assert "training time" in trained.output and "patch_memory" in trained.output
    result = runner.invoke(cli, ["evaluate", str(tmp_path / "m"), "--good", str(SAMPLE / "test" / "good"),
                                 "--defect", str(SAMPLE / "test" / "defect"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    confusion = report["confusion"]
    # Measured: 11 of 12 defects flagged, 0 of 8 good rejected, AUROC 0.96 (40 training images).
    assert confusion["true_positive"] >= 9 and confusion["false_positive"] <= 1
    assert report["auroc"] >= 0.85


def test_daemon_judges_screws_with_the_default_pipeline(tmp_path, screw):
    import shutil
    import threading

    from helpers import rows, wait_for
    from inspector.store import Store
    from inspector.watcher import WatchOptions, Watcher

    train_bundle(load_folder(SAMPLE / "train" / "good", screw), tmp_path / "m", screw, seed=0)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    store = Store(str(tmp_path / "db.sqlite"))
    watcher = Watcher(inbox, load_bundle(tmp_path / "m"), store,
                      WatchOptions(out=tmp_path / "out", batch=8, settle=0.2, rescan_every=1.0))
    thread = threading.Thread(target=watcher.run, kwargs={"install_signals": False}, name="watcher-under-test")
    thread.start()
    try:
        defects = sorted((SAMPLE / "test" / "defect").glob("*.png"))[:4]
        goods = sorted((SAMPLE / "test" / "good").glob("*.png"))[:2]
        for path in defects + goods:
            shutil.copy(path, inbox / f"{path.parent.name}_{path.name}")
        cv2.imwrite(str(inbox / "blank.png"), np.full((256, 256), 190, np.uint8))
        db = tmp_path / "db.sqlite"
        wait_for(lambda: len(rows(db, "status in ('done', 'error')")) == 7, 60, "7 outcomes")
        by_name = {row["source_name"]: row for row in rows(db, "1=1")}
        assert by_name["blank.png"]["verdict"] == "error" and "no part found" in by_name["blank.png"]["error_reason"]
        assert [by_name[f"defect_{p.name}"]["verdict"] for p in defects] == ["defect"] * 4
        assert [by_name[f"good_{p.name}"]["verdict"] for p in goods] == ["ok"] * 2
        heatmap = cv2.imread(by_name[f"defect_{defects[0].name}"]["heatmap_path"])
        assert heatmap.shape[:2] == (64, 192)  # drawn on the upright crop
    finally:
        watcher.stop()
        thread.join(timeout=30)
        store.close()
    assert not thread.is_alive()
