import json
import shutil

import pytest
from click.testing import CliRunner

from inspector.bundle import accept_edits, read_metadata
from inspector.cli import cli
from inspector.store import Inspection, ModelRecord, Review, Store
from conftest import SAMPLE


def test_recalibration_from_reviews_moves_the_threshold_as_computed_by_hand(tiny_bundle, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_bundle, model)
    meta = json.loads((model / "bundle.json").read_text())
    meta["calibration"]["good_scores"] = [0.1, 0.2, 0.3, 0.4]  # the bundle's own good parts
    meta["threshold"]["value"] = 0.3
    (model / "bundle.json").write_text(json.dumps(meta))
    accept_edits(model)  # edited on purpose
    fingerprint = read_metadata(model).fingerprint

    db = tmp_path / "db.sqlite"
    store = Store(str(db))
    with store.session() as s, s.begin():
        ours = ModelRecord(fingerprint=fingerprint, name="tiny", path=str(model), threshold=0.3)
        other = ModelRecord(fingerprint="0" * 16, name="older", path="/old", threshold=9)
        s.add_all([ours, other])
        s.flush()
        decisions = [(0.35, "defect"), (0.5, "defect"), (0.6, "defect"), (0.45, "ok"),
                     (0.55, None)]  # not reviewed: ignored
        for i, (score, label) in enumerate(decisions):
            row = Inspection(source_path=f"/in/{i}", source_name=f"{i}.png", content_hash=f"{i:064d}",
                             status="done", verdict="defect" if score > 0.3 else "ok", score=score,
                             threshold=0.3, model_id=ours.id)
            s.add(row)
            s.flush()
            if label:
                s.add(Review(inspection_id=row.id, label=label, reviewer="qa"))
        # A review of a part judged by another model does not count.
        foreign = Inspection(source_path="/in/x", source_name="x.png", content_hash="x" * 64, status="done",
                             verdict="defect", score=0.05, threshold=9, model_id=other.id)
        s.add(foreign)
        s.flush()
        s.add(Review(inspection_id=foreign.id, label="defect"))
    store.close()

    result = CliRunner().invoke(cli, ["calibrate", str(model), "--from-reviews", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # good = 0.1 0.2 0.3 0.4 + dismissed 0.45; defects = 0.35 0.5 0.6. Best F1: between 0.45 and 0.5
    # (catches 0.5, 0.6, no false reject: F1 0.8) beats 0.325 (all three, 2 false rejects: F1 0.75).
    assert data["policy"] == "best_f1"
    assert data["threshold"] == pytest.approx(0.475)
    assert data["good"] == 5 and data["defect"] == 3
    assert data["confusion_before"]["false_positive"] == 2 and data["confusion"]["false_positive"] == 0
    assert data["confusion"]["recall"] == pytest.approx(2 / 3)
    saved = read_metadata(model)
    assert saved.threshold == pytest.approx(0.475)
    assert "reviewed by QA" in saved.threshold_info["source"]
    # Four reviews are a handful; it says so, and how many it takes.
    warning = ("only 4 parts of this model reviewed by QA (1 passed as good, 3 confirmed defects); at least 5 are "
               "needed to trust QA's reviews")
    assert data["warnings"][0].startswith(warning) and f"warning: {warning}" in result.stderr

    text = CliRunner().invoke(cli, ["calibrate", str(model), "--from-reviews", "--db", str(db), "--dry-run"])
    assert "Threshold 0.475 -> 0.475" in text.output and "Expected recall on defects" in text.output


def test_recalibration_without_reviews_is_a_clear_error(tiny_bundle, tmp_path):
    db = tmp_path / "empty.sqlite"
    Store(str(db)).close()
    result = CliRunner().invoke(cli, ["calibrate", str(tiny_bundle), "--from-reviews", "--db", str(db)])
    assert result.exit_code == 1 and "no reviewed parts judged by this model" in result.output


def test_calibrate_needs_good_images_or_reviews(tiny_bundle):
    result = CliRunner().invoke(cli, ["calibrate", str(tiny_bundle)])
    assert result.exit_code == 1 and "give --good DIR, --from-reviews, or both" in result.output


def test_calibrate_refuses_good_and_defect_sets_sharing_an_image(tiny_bundle, tmp_path):
    good = SAMPLE / "train" / "good"
    before = (tiny_bundle / "bundle.json").read_bytes()
    same = CliRunner().invoke(cli, ["calibrate", str(tiny_bundle), "--good", str(good), "--defect", str(good)])
    assert same.exit_code == 1, same.output
    assert "the good and defect images share" in same.output and "a part cannot be both" in same.output
    defect = tmp_path / "defect"
    defect.mkdir()
    for path in sorted((SAMPLE / "test" / "defect").glob("*.png"))[:3]:
        shutil.copy(path, defect)
    shutil.copy(sorted(good.glob("*.png"))[0], defect / "renamed_copy.png")  # one good image among the defects
    one = CliRunner().invoke(cli, ["calibrate", str(tiny_bundle), "--good", str(good), "--defect", str(defect)])
    assert one.exit_code == 1 and "share 1 of 4 images" in one.output and "renamed_copy.png" in one.output
    assert (tiny_bundle / "bundle.json").read_bytes() == before  # nothing saved
