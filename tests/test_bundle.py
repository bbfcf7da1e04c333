import json
import re
import shutil

import numpy as np
import pytest

from inspector.bundle import BundleError, load_bundle, read_metadata, save_bundle
from inspector.models.components.running import forward
from inspector.tf_setup import keras
from conftest import SAMPLE


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


def _edit_meta(path, change, seal=True):
    """Change bundle.json; `seal`: as inspector would have written it (with its checksum)."""
    from inspector.bundle import metadata_checksum

    meta_path = path / "bundle.json"
    meta = json.loads(meta_path.read_text())
    change(meta)
    if seal:
        meta["checksum"] = metadata_checksum(meta)
    meta_path.write_text(json.dumps(meta))


def test_round_trip_keeps_model_threshold_and_pipeline(bundle_copy, tmp_path):
    from inspector.formats import list_images
    from inspector.preprocess import preprocess

    bundle = load_bundle(bundle_copy)
    assert bundle.pipeline.name == "tiny"
    assert bundle.threshold_info["policy"] == "mean_std"
    assert bundle.calibration["good"]["count"] == len(bundle.calibration["good_scores"])
    assert len(bundle.training["fingerprint"]) == 64
    assert bundle.versions["keras"] == keras.__version__
    images = np.stack([preprocess(p, bundle.pipeline.preprocess) for p in list_images(SAMPLE / "test" / "good")])
    before = forward(bundle.model, images)

    bundle.path = tmp_path / "resaved"
    save_bundle(bundle, bundle.model)
    again = load_bundle(tmp_path / "resaved")
    assert again.threshold == bundle.threshold
    assert again.pipeline == bundle.pipeline
    np.testing.assert_allclose(forward(again.model, images), before, atol=1e-6)


def test_missing_metadata_is_refused_as_incomplete(bundle_copy):
    (bundle_copy / "bundle.json").unlink()
    with pytest.raises(BundleError, match="incomplete bundle, bundle.json is missing"):
        load_bundle(bundle_copy)


def test_missing_model_is_refused(bundle_copy):
    (bundle_copy / "model.keras").unlink()
    with pytest.raises(BundleError, match="model.keras is missing"):
        load_bundle(bundle_copy)


def test_corrupt_model_file_is_refused(bundle_copy):
    (bundle_copy / "model.keras").write_bytes(b"not a zip archive")
    with pytest.raises(BundleError, match="does not match its checksum"):
        load_bundle(bundle_copy)


def test_newer_bundle_format_is_refused(bundle_copy):
    _edit_meta(bundle_copy, lambda m: m.update(format=99))
    with pytest.raises(BundleError, match="bundle format 99 is not supported"):
        load_bundle(bundle_copy)


def test_other_keras_major_version_is_refused(bundle_copy):
    _edit_meta(bundle_copy, lambda m: m["versions"].update(keras="2.15.0"))
    with pytest.raises(BundleError, match="made with Keras 2.15.0"):
        load_bundle(bundle_copy)


def test_garbled_metadata_is_refused(bundle_copy):
    (bundle_copy / "bundle.json").write_text("{ half a json")
    with pytest.raises(BundleError, match="unreadable bundle metadata"):
        read_metadata(bundle_copy)


def test_metadata_with_invalid_pipeline_is_refused(bundle_copy):
    _edit_meta(bundle_copy, lambda m: m["pipeline"]["scoring"].update(reduce="median"))
    with pytest.raises(BundleError, match="scoring.reduce"):
        read_metadata(bundle_copy)


def test_lambda_layer_model_is_refused_by_safe_mode(bundle_copy):
    """A model carrying Python code (a Lambda layer) must not be loaded."""
    inputs = keras.Input(shape=(64, 64, 1))
    outputs = keras.layers.Lambda(lambda x: x * 0.5)(inputs)
    from inspector.digest import file_sha256

    keras.Model(inputs, outputs).save(bundle_copy / "model.keras")
    _edit_meta(bundle_copy, lambda m: m["training"].update(model_sha256=file_sha256(bundle_copy / "model.keras")))
    with pytest.raises(BundleError, match="cannot load model"):
        load_bundle(bundle_copy)


def test_bundle_from_before_the_model_registry_still_loads(bundle_copy):
    """Older bundles stored every architecture's [model] keys, whatever the architecture."""
    expected = read_metadata(bundle_copy).pipeline
    legacy = {"neighbours": 10, "search_radius": 2, "patch_size": 4}
    _edit_meta(bundle_copy, lambda m: m["pipeline"]["model"].update(legacy))
    assert load_bundle(bundle_copy).pipeline == expected
    _edit_meta(bundle_copy, lambda m: m["pipeline"]["model"].update(layers=3))  # never a key: refused
    with pytest.raises(BundleError, match="unknown key 'model.layers'"):
        read_metadata(bundle_copy)


def test_a_hand_edit_of_bundle_json_is_refused_until_accepted(bundle_copy):
    """A threshold edited by hand (to 1000, passing every defect) is refused until accepted on purpose."""
    from inspector.bundle import accept_edits

    _edit_meta(bundle_copy, lambda m: m["threshold"].update(value=1000), seal=False)
    with pytest.raises(BundleError, match="bundle.json changed since inspector wrote it.*--accept-edits"):
        read_metadata(bundle_copy)
    accept_edits(bundle_copy)  # the explicit override: fields checked, checksum recorded
    assert load_bundle(bundle_copy).threshold == 1000


def test_bundle_json_without_a_checksum_is_refused(bundle_copy):
    _edit_meta(bundle_copy, lambda m: m.pop("checksum"), seal=False)
    with pytest.raises(BundleError, match="no checksum"):
        read_metadata(bundle_copy)


@pytest.mark.parametrize("text, says", [
    ('"value": NaN', "holds NaN, which is not a finite number"),
    ('"value": Infinity', "holds Infinity, which is not a finite number"),
    ('"value": 1e999', "holds 1e999, which is not a finite number"),
    ('"value": "0.5"', "threshold.value must be a finite number"),
    ('"value": true', "threshold.value must be a finite number"),
    ('"heat_scale": "x"', "calibration.heat_scale must be a finite number"),
    ('"heat_scale": -1', "calibration.heat_scale must be greater than 0"),
    ('"good_scores": [0.1, "x"]', "calibration.good_scores must be a list of finite numbers"),
    ('"model_sha256": 12', "training.model_sha256 must be"),
    ('"created": 5', "created must be text"),
    ('"folder": 5', "training.folder must be text"),
])
def test_every_field_is_validated_even_when_edits_are_accepted(bundle_copy, text, says):
    """NaN or Infinity thresholds, a heat_scale of "x": refused with a clear message, accepted or not."""
    import re

    from inspector.bundle import accept_edits

    meta_path = bundle_copy / "bundle.json"
    key = text.split(":")[0]
    edited, count = re.subn(key + r': [^,\n}]+(\]|)', text, meta_path.read_text(), count=1)
    if "good_scores" in key:
        edited, count = re.subn(r'"good_scores": \[[^\]]*\]', text, meta_path.read_text(), count=1)
    assert count == 1, key
    meta_path.write_text(edited)
    for check in (read_metadata, accept_edits):
        with pytest.raises(BundleError, match=re.escape(says)):
            check(bundle_copy)


@pytest.mark.parametrize("field, value, says", [
    ("parent", "not a fingerprint", "training.parent must be text matching [0-9a-f]{16}"),
    ("added", [{"inspection": "7", "path": "/a.png"}], "training.added must be a list of objects"),
    ("added", "/a.png", "training.added must be a list of objects"),
])
def test_what_an_update_records_is_validated(bundle_copy, field, value, says):
    """What `update` records (its parent, the images it added) is checked as any field."""
    from inspector.bundle import accept_edits

    _edit_meta(bundle_copy, lambda m: m["training"].update({field: value}))
    with pytest.raises(BundleError, match=re.escape(says)):
        accept_edits(bundle_copy)


def test_calibrate_rewrites_the_checksum(bundle_copy):
    from click.testing import CliRunner

    from inspector.cli import cli

    result = CliRunner().invoke(cli, ["calibrate", str(bundle_copy), "--good", str(SAMPLE / "test" / "good"),
                                      "--policy", "mean_multiple", "--factor", "3"])
    assert result.exit_code == 0, result.output
    assert load_bundle(bundle_copy).threshold_info["policy"] == "mean_multiple"


def test_bundle_verify_command_checks_and_accepts_edits(bundle_copy):
    from click.testing import CliRunner

    from inspector.cli import cli

    run = lambda *args: CliRunner().invoke(cli, ["bundle", "verify", str(bundle_copy), *args])
    ok = run()
    assert ok.exit_code == 0 and "bundle ok" in ok.output, ok.output
    _edit_meta(bundle_copy, lambda m: m["threshold"].update(value=2.5), seal=False)
    refused = run()
    assert refused.exit_code == 1 and "--accept-edits" in refused.output and "Traceback" not in refused.output
    accepted = run("--accept-edits")
    assert accepted.exit_code == 0 and "edits accepted" in accepted.output and "threshold 2.5" in accepted.output
    assert run().exit_code == 0


def test_watch_refuses_a_nan_threshold_with_one_line(bundle_copy, tmp_path):
    """A NaN threshold stops `watch` at start with one line, not a traceback."""
    from click.testing import CliRunner

    from inspector.cli import cli

    meta_path = bundle_copy / "bundle.json"
    meta_path.write_text(meta_path.read_text().replace('"value": ', '"value": NaN, "was": ', 1))
    (tmp_path / "inbox").mkdir()
    result = CliRunner().invoke(cli, ["watch", str(tmp_path / "inbox"), "--model", str(bundle_copy),
                                      "--db", str(tmp_path / "db.sqlite"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "holds NaN, which is not a finite number" in result.output and result.exception.__class__ is SystemExit
