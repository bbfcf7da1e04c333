"""The default model: a denoising convolutional autoencoder scored by its squared error and
1 - SSIM (the patch memory may be added as a second opinion). It trains on sample screws, saves
and loads safely, and flags a painted defect where it is."""

import dataclasses
import json
import zipfile

import numpy as np
import pytest

from inspector import models
from inspector.bundle import load_bundle
from inspector.cv_setup import cv2
from inspector.models.components.autoencoder_fit import split_holdout
from inspector.models.components.running import forward, score_arrays
from inspector.models.denoising.defects import LARGE_SHARE, _structure_removed, add_defect, part_outline
from inspector.models.denoising.fit import build as build_model, learning_rate, training_loss, worst_local_error
from inspector.models.denoising.layers import StructureError, blur_matrix, gaussian_line
from inspector.models.pipeline_files import pipeline_from_dict, resolve_pipeline
from inspector.tf_setup import keras
from inspector.usecases.training import load_folder, train_bundle
from conftest import SAMPLE


def small(second_opinion: str = "none", epochs: int = 60, copies: int = 1):
    """The default pipeline with a narrow autoencoder, so it trains in seconds on the 40 sample
    screws (a faster learning rate and more defects per epoch make up for so few images)."""
    data = resolve_pipeline("screw").to_dict()
    data["model"].update(filters=[16, 32, 64, 64], epochs=epochs, nuisance_copies=copies, second_opinion=second_opinion,
                         neighbours=5, batch_size=8, learning_rate=0.002, defect_share=0.9, ssim_weight=0.0,
                         min_steps=0)
    return pipeline_from_dict(data, source="small screw")


@pytest.fixture(scope="module")
def images():
    return load_folder(SAMPLE / "train" / "good", small(), seed=0)


@pytest.fixture(scope="module")
def autoencoder_alone(images, tmp_path_factory):
    """The autoencoder alone (no second opinion), trained once: what it finds is its own."""
    out = tmp_path_factory.mktemp("denoising") / "ae"
    bundle, summary = train_bundle(images, out, small(), seed=0)
    return out, bundle, summary


def painted(image: np.ndarray, x: int, y: int) -> np.ndarray:
    marked = image.copy()
    cv2.circle(marked, (x, y), 3, float(image.max()), -1)  # a bright pit on the shank
    return marked


def test_the_default_pipeline_scores_with_the_denoising_autoencoder():
    pipeline = resolve_pipeline("screw")
    assert pipeline.model.architecture == "denoising_autoencoder"
    assert pipeline.model.settings.second_opinion == "none"  # the autoencoder alone scores
    assert pipeline.preprocess.flatten_light and pipeline.preprocess.check_view
    model = build_model(pipeline.model.settings, pipeline.preprocess.shape)
    assert pipeline.model.settings.structure_error  # squared error and 1 - SSIM, added
    assert {type(layer).__name__ for layer in model.layers} == {"InputLayer", "Functional", "ReconstructionError",
                                                                "StructureError", "Add"}
    ae = model.get_layer("autoencoder")
    kinds = [type(layer).__name__ for layer in ae.layers]
    # Four strided convolutions down, four transposed ones up, 3x3 refinements on the two coarse stages.
    assert kinds.count("Conv2D") == 4 + 2 + 1 and kinds.count("Conv2DTranspose") == 4
    assert [layer.strides for layer in ae.layers if type(layer).__name__ == "Conv2D"][:4] == [(2, 2)] * 4
    assert ae.output_shape == (None, 64, 192, 1)


def test_the_default_learning_rate_falls_along_a_cosine_to_five_percent():
    settings = resolve_pipeline("screw").model.settings
    schedule = learning_rate(settings, 1000)
    assert float(schedule(0)) == pytest.approx(settings.learning_rate)
    assert float(schedule(500)) == pytest.approx(settings.learning_rate * (0.05 + 0.95 * 0.5))
    assert float(schedule(1000)) == pytest.approx(settings.learning_rate * 0.05)
    constant = pipeline_from_dict({**resolve_pipeline("screw").to_dict(), "model": {
        **resolve_pipeline("screw").to_dict()["model"], "learning_rate_decay": "constant"}}).model.settings
    assert learning_rate(constant, 1000) == settings.learning_rate


def test_a_small_training_set_runs_more_epochs_to_reach_the_minimum_steps():
    pipeline = resolve_pipeline("screw")
    settings, fraction = pipeline.model.settings, pipeline.model.holdout_fraction
    assert settings.min_steps == 1800 and settings.batch_size == 16
    assert settings.epochs_for(320, fraction) == 150  # 256 trained: 16 batches an epoch, 2,400 steps
    assert settings.epochs_for(256, fraction) == 150  # 205 trained: 12 batches, exactly 1,800
    assert settings.epochs_for(40, fraction) == 900  # 32 trained: 2 batches an epoch
    spec = models.get("denoising_autoencoder")
    assert spec.planned_epochs(settings, None, 40, fraction) == 900  # what the progress bar counts
    assert spec.planned_epochs(settings, 3, 40, fraction) == 3  # --epochs is taken as it is


def test_the_worst_error_term_is_the_mean_of_each_images_worst_local_errors():
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 1, (2, 64, 192, 1)).astype(np.float32)
    restored = target + rng.normal(0, 0.01, target.shape).astype(np.float32)
    restored[1, 30:34, 90:94] += 0.5  # one badly restored spot in the second image
    worst = worst_local_error(restored, target, 0.01).numpy()
    for i in range(2):  # 5x5 means of the squared error (zeros past the border do not count)
        local = cv2.blur(np.square(restored[i, ..., 0] - target[i, ..., 0]), (5, 5), borderType=cv2.BORDER_CONSTANT)
        counts = cv2.blur(np.ones((64, 192), np.float32), (5, 5), borderType=cv2.BORDER_CONSTANT)
        assert worst[i] == pytest.approx(np.sort((local / counts).ravel())[-123:].mean(), rel=1e-4)
    assert worst[1] > 50 * worst[0]  # the spot is what the term sees; the plain mean barely moves
    settings = resolve_pipeline("screw").model.settings
    assert settings.worst_error_weight > 0 and settings.worst_error_share == 0.01
    plain = dataclasses.replace(settings, worst_error_weight=0.0)
    added = float(training_loss(restored, target, settings)) - float(training_loss(restored, target, plain))
    assert added == pytest.approx(settings.worst_error_weight * worst.mean(), rel=1e-4)


def test_without_structure_error_the_model_is_the_squared_error_alone():
    data = resolve_pipeline("screw").to_dict()
    data["model"]["structure_error"] = False  # as bundles trained before the setting was there
    pipeline = pipeline_from_dict(data, source="squared error only")
    model = build_model(pipeline.model.settings, pipeline.preprocess.shape)
    assert {type(layer).__name__ for layer in model.layers} == {"InputLayer", "Functional", "ReconstructionError"}


def test_the_structure_map_is_one_minus_ssim_as_opencv_computes_it():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.random((64, 192)).astype(np.float32), (0, 0), 2.0)
    restored = np.clip(image + 0.05 * rng.standard_normal(image.shape).astype(np.float32), 0, 1)
    layer = StructureError(64, 192, part_level=0.5)
    got = layer.raw(tf.constant(image[None, ..., None]), tf.constant(restored[None, ..., None])).numpy()[0, ..., 0]

    def blur(m, sigma, size):
        return cv2.GaussianBlur(m, (size, size), sigma)  # OpenCV mirrors the border, as the layer does

    mx, mr = blur(image, 1.5, 11), blur(restored, 1.5, 11)
    vx, vr = blur(image * image, 1.5, 11) - mx ** 2, blur(restored * restored, 1.5, 11) - mr ** 2
    cov = blur(image * restored, 1.5, 11) - mx * mr
    ssim = (2 * mx * mr + 1e-4) * (2 * cov + 9e-4) / ((mx ** 2 + mr ** 2 + 1e-4) * (vx + vr + 9e-4))
    np.testing.assert_allclose(got, blur(1 - ssim, 1.0, 7), atol=1e-4)
    same = layer.raw(tf.constant(image[None, ..., None]), tf.constant(image[None, ..., None])).numpy()
    assert np.abs(same).max() < 1e-4  # a perfect reconstruction has no structure error


def test_blur_matrices_blur_as_opencv_does_even_on_sides_shorter_than_the_kernel():
    rng = np.random.default_rng(4)
    for n in (1, 2, 3, 5, 64, 192):
        line = rng.random(n).astype(np.float32)
        mirrored = blur_matrix(n, 1.5, mirror=True)
        np.testing.assert_allclose(mirrored.sum(axis=1), 1.0, atol=1e-5)  # reflected, nothing lost
        if n > 1:
            want = cv2.GaussianBlur(np.tile(line, (3, 1)), (11, 1), 1.5, borderType=cv2.BORDER_REFLECT_101)[1]
            np.testing.assert_allclose(mirrored @ line, want, atol=1e-5)
        zeros = cv2.filter2D(line[None], -1, gaussian_line(1.5)[None], borderType=cv2.BORDER_CONSTANT)[0]
        np.testing.assert_allclose(blur_matrix(n, 1.5) @ line, zeros, atol=1e-5)


def test_the_paired_layout_still_builds_the_earlier_autoencoder():
    data = resolve_pipeline("screw").to_dict()
    data["model"].update(layout="paired", filters=[32, 64, 128])
    pipeline = pipeline_from_dict(data, source="paired")
    ae = build_model(pipeline.model.settings, pipeline.preprocess.shape).get_layer("autoencoder")
    kinds = [type(layer).__name__ for layer in ae.layers]
    assert kinds.count("Conv2D") == 2 * 3 + 1 + 3 + 1 and kinds.count("Conv2DTranspose") == 3


def test_training_copies_under_nuisances_and_records_the_part_length(images):
    assert images.variants.shape == (len(images.arrays), 1, *images.arrays.shape[1:])
    assert not np.allclose(images.variants[:, 0], images.arrays)  # the copies differ from the originals
    assert 0.8 < images.part_length < 1.0  # the sample screws fill ~90% of the frame's side


@pytest.mark.parametrize("removal_share", [0.0, 1.0])
def test_a_synthetic_defect_changes_the_part_only(removal_share):
    image = load_folder(SAMPLE / "train" / "good", small(copies=0)).arrays[0]
    rng = np.random.default_rng(3)
    # The part and its outline, plus the 3 pixels a soft-edged defect may blur into.
    allowed = cv2.dilate(part_outline(image).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    for _ in range(20):
        changed = np.abs(add_defect(rng, image, image[None], removal_share=removal_share) - image) > 0.01
        assert changed.any()
        assert not (changed & ~allowed).any()


def test_a_removal_takes_a_stretch_of_a_thin_lead_away():
    frame = np.full((128, 128), 0.4, np.float32)
    frame[20:110, 62:65] = 0.9  # a lead three pixels wide on a plain board
    whole = np.ones(frame.shape, bool)
    cuts = 0
    for seed in range(10):
        out = _structure_removed(np.random.default_rng(seed), frame, whole)
        if out is None:
            continue  # a closing: it takes nothing bright away, so there is nothing to remove
        lead = out[20:110, 62:65].mean(axis=1)
        assert (lead < 0.5).sum() >= 3, seed  # rows of the lead turned to board: the lead cut there
        assert (lead > 0.85).sum() >= 30, seed  # and only a stretch of it
        assert np.abs(out[:, :50] - 0.4).max() < 0.01 and np.abs(out[:, 80:] - 0.4).max() < 0.01, seed
        cuts += 1
    assert cuts >= 3
    # Through add_defect, with the share at 1: a whole-frame defect that is not a large one is
    # that removal (its draws: large or not, removal or not, then the removal's own).
    through = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        large, _ = rng.random() < LARGE_SHARE, rng.random()
        expected = _structure_removed(rng, frame, whole)
        if large or expected is None:
            continue
        out = add_defect(np.random.default_rng(seed), frame, frame[None], True, removal_share=1.0)
        np.testing.assert_array_equal(out, expected)
        through += 1
    assert through >= 3


def test_the_bundle_loads_safely_and_scores_as_trained(autoencoder_alone, images):
    out, bundle, summary = autoencoder_alone
    assert summary["epochs"] == 60 and summary["architecture"] == "denoising_autoencoder"
    assert "nuisance copies" in summary["calibrated_on"] and "cross-fitted" in summary["calibrated_on"]
    with zipfile.ZipFile(out / "model.keras") as archive:
        config = archive.read("config.json").decode()
    assert "Lambda" not in config and '"module": "inspector"' not in config  # registered, not pickled
    assert "inspector>ReconstructionError" in config and "inspector>StructureError" in config
    loaded = load_bundle(out)  # safe_mode=True
    tests = images.arrays[:6]
    before, _ = score_arrays(bundle.model, tests, bundle.pipeline.scoring)
    after, _ = score_arrays(loaded.model, tests, loaded.pipeline.scoring)
    np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-5)
    assert json.loads((out / "bundle.json").read_text())["training"]["part_length"] == pytest.approx(images.part_length)


def test_too_few_held_out_images_is_a_clear_error_not_an_absurd_threshold(images, tmp_path):
    from inspector.errors import TrainingError

    few = load_folder(SAMPLE / "train" / "good", small(copies=0))
    few.arrays, few.paths = few.arrays[:10], few.paths[:10]  # 20% of 10: 2 held out, one per half
    with pytest.raises(TrainingError, match="needs at least 4 held-out good images"):
        train_bundle(few, tmp_path / "few", small(epochs=1, copies=0), seed=0)


def test_same_seed_same_threshold(images, tmp_path):
    first, _ = train_bundle(images, tmp_path / "first", small(epochs=3), seed=5)
    again, _ = train_bundle(images, tmp_path / "again", small(epochs=3), seed=5)
    assert again.threshold == first.threshold
    assert again.training["loss"] == first.training["loss"]


def test_the_autoencoder_alone_flags_a_painted_pit_where_it_is(autoencoder_alone):
    _, bundle, _ = autoencoder_alone
    good = load_folder(SAMPLE / "test" / "good", bundle.pipeline, copies=0).arrays
    x, y = 80, 32  # the shank, middle of the crop
    marked = np.stack([painted(image, x, y) for image in good])
    good_scores, _ = score_arrays(bundle.model, good, bundle.pipeline.scoring)
    marked_scores, maps = score_arrays(bundle.model, marked, bundle.pipeline.scoring)
    assert (marked_scores > good_scores).all()
    # Over training seeds (and so processors) the median ratio is 1.96 to 3.09: the bar leaves room.
    assert np.median(marked_scores) > 1.5 * np.median(good_scores)
    for error_map in maps:
        hot_y, hot_x = np.unravel_index(np.argmax(error_map), error_map.shape)
        assert abs(hot_x - x) <= 6 and abs(hot_y - y) <= 6


@pytest.mark.parametrize("memory_weight", [1.0, 3.0])
def test_with_the_second_opinion_both_maps_count(images, tmp_path, memory_weight):
    pipeline = small(second_opinion="patch_memory", epochs=2)
    pipeline = pipeline.replace("model", settings=dataclasses.replace(pipeline.model.settings,
                                                                      memory_weight=memory_weight))
    bundle, _ = train_bundle(images, tmp_path / "both", pipeline, seed=0)
    names = {layer.name for layer in bundle.model.layers}
    assert {"reconstruction_error", "structure_error", "memory_unit", "both_opinions"} <= names
    # Each branch is divided by its typical score on the held-out good screws (and their nuisance
    # copies), so on them each branch's image maxima average exactly 1: the maps add on one scale;
    # the memory's average its weight.
    _, held = split_holdout(len(images.arrays), pipeline.model.holdout_fraction, 0)
    calibration = np.concatenate([images.arrays[held], images.variants[held, 0]])
    for name in ("reconstruction_error", "structure_error", "memory_unit"):
        layer = bundle.model.get_layer(name)
        assert float(layer.unit.numpy()) != 1.0
        branch = keras.Model(bundle.model.input, layer.output)
        maxima = forward(branch, calibration).reshape(len(calibration), -1).max(axis=1)
        weight = memory_weight if name == "memory_unit" else 1.0
        assert maxima.mean() == pytest.approx(weight, rel=1e-4), name
    # The threshold's scores are cross-fitted: each fold scored with statistics learnt on the other
    # folds, so they are higher than the same images scored by the final model, which learnt from all.
    honest = np.array(bundle.calibration["good_scores"])
    in_sample, _ = score_arrays(bundle.model, calibration, pipeline.scoring)
    assert len(honest) == len(calibration) and honest.mean() > in_sample.mean()
    loaded = load_bundle(tmp_path / "both")
    np.testing.assert_allclose(score_arrays(loaded.model, images.arrays[:4], pipeline.scoring)[0],
                               score_arrays(bundle.model, images.arrays[:4], pipeline.scoring)[0], rtol=1e-5)
