import json
import shutil

import numpy as np
import pytest

from inspector.bundle import BundleError, load_bundle, read_metadata, save_bundle
from inspector.inference import forward
from inspector.tf_setup import keras
from conftest import SAMPLE


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


def _edit_meta(path, change):
    meta_path = path / "bundle.json"
    meta = json.loads(meta_path.read_text())
    change(meta)
    meta_path.write_text(json.dumps(meta))


def test_round_trip_keeps_model_threshold_and_pipeline(bundle_copy, tmp_path):
    from inspector.preprocess import list_images, preprocess

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
    from inspector.bundle import file_sha256

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
