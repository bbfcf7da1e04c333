"""The discriminator (`discriminator_steps`, off in every shipped pipeline): after the autoencoder,
a small segmentation network learns from the input beside its reconstruction where synthetic
defects are; its chance map is one more map of the served model, and the bundle loads safely."""

import numpy as np
import pytest

from inspector.bundle import load_bundle
from inspector.calibration import roc_auc
from inspector.errors import ConfigError
from inspector.models.components.autoencoder_fit import split_holdout
from inspector.models.components.patch_memory_fit import pixel_statistics
from inspector.models.denoising import discriminator as judging
from inspector.models.denoising.discriminator import (CHANGED, discriminator, drawn_batch, focal_loss,
                                                       starting_discriminator)
from inspector.models.denoising.fit import autoencoder, build as build_model
from inspector.models.pipeline_files import pipeline_from_dict, resolve_pipeline
from inspector.usecases.training import load_images, train_bundle
from test_general import board, part_on_board, tiny, write


def with_discriminator(steps: int, weight: float = 1.0):
    data = tiny(epochs=6).to_dict()
    data["model"].update(discriminator_steps=steps, discriminator_weight=weight)
    return pipeline_from_dict(data, source=f"tiny general, discriminator {steps}")


def test_the_focal_loss_is_the_formula_and_small_when_right():
    import tensorflow as tf

    target = tf.constant([[[[1.0]], [[0.0]]]])  # (1, 2, 1, 1): a defect pixel and a good one
    chance = tf.constant([[[[0.8]], [[0.3]]]])
    expected = -(0.2 ** 2 * np.log(0.8) + 0.3 ** 2 * np.log(0.7)) / 2
    assert float(focal_loss(chance, target)) == pytest.approx(expected, rel=1e-5)
    assert float(focal_loss(target, target)) < 1e-9 < float(focal_loss(1.0 - target, target))


def test_the_target_is_the_pixels_a_drawn_defect_changed():
    rng = np.random.default_rng(0)
    frames = np.stack([part_on_board(rng) for _ in range(6)])
    settings = with_discriminator(10).model.settings
    shown, target = drawn_batch(np.random.default_rng(1), frames, None, settings, 16, whole_frame=True)
    assert shown.shape == target.shape == (16, *frames.shape[1:])
    assert target.any(axis=(1, 2)).sum() >= 4  # a defect_share of 0.6 draws defects on most
    for image, marked in zip(shown, target):
        # Each shown image is one of the frames, changed where (and only where) its target says.
        distance = [np.abs(image - frame)[~marked.astype(bool)].max() for frame in frames]
        source = frames[int(np.argmin(distance))]
        assert np.abs(image - source)[~marked.astype(bool)].max() <= CHANGED
        assert (np.abs(image - source)[marked.astype(bool)] > CHANGED).all()


def test_training_minimises_the_focal_loss_and_repeats_with_its_seed(monkeypatch):
    rng = np.random.default_rng(3)
    frames = np.stack([part_on_board(rng) for _ in range(8)])[:, :48, :64]
    settings = with_discriminator(40).model.settings
    ae = autoencoder(settings, frames.shape[1:])
    traced = []
    monkeypatch.setattr(judging, "focal_loss", lambda *a: traced.append(1) or focal_loss(*a))
    first, losses = judging.train_discriminator(ae, frames, None, settings, seed=4, rate=0.003, whole_frame=True)
    assert traced and len(losses) == 40
    # It learns: on one batch of drawn defects its loss is well under that of the same network at
    # its starting weights (0.12-0.32 of it over twenty seeds). The losses of single training
    # batches swing too much with the defects each drew to show it.
    import tensorflow as tf

    shown, target = drawn_batch(np.random.default_rng(9), frames, None, settings, 64, whole_frame=True)
    x = tf.constant(shown[..., None])
    pair, truth = tf.concat([x, ae(x)], axis=-1), tf.constant(target[..., None])
    start = starting_discriminator(frames.shape[1:], settings, 4)
    assert float(focal_loss(first(pair), truth)) < 0.6 * float(focal_loss(start(pair), truth))
    again, _ = judging.train_discriminator(ae, frames, None, settings, seed=4, rate=0.003, whole_frame=True)
    for a, b in zip(first.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_sides_the_discriminator_cannot_halve_three_times_are_refused():
    with pytest.raises(ConfigError, match="divisible by 8"):
        discriminator((44, 64), (16, 32, 64, 64))


def test_a_shrunk_discriminator_sees_block_averages_and_answers_at_full_size(tmp_path):
    judge = discriminator((32, 48), (8, 16, 32, 32), shrink=2)
    rng = np.random.default_rng(5)
    x = rng.random((2, 32, 48, 2)).astype(np.float32)
    # Each 2x2 block replaced by its mean: the same chances (not its maximum, not one pixel of it).
    means = x.reshape(2, 16, 2, 24, 2, 2).mean(axis=(2, 4), keepdims=True)
    blocks = np.broadcast_to(means, (2, 16, 2, 24, 2, 2)).reshape(x.shape)
    chance = judge(x).numpy()
    assert chance.shape == (2, 32, 48, 1)
    np.testing.assert_allclose(judge(blocks).numpy(), chance, atol=1e-6)
    # Enlarged back smoothly: within a 2x2 block the chances differ (nearest neighbours would not).
    inside = chance.reshape(2, 16, 2, 24, 2)
    assert (inside.max(axis=(2, 4)) - inside.min(axis=(2, 4)) > 1e-6).mean() > 0.5
    with pytest.raises(ConfigError, match="shrunk 2 times .* divisible by 16"):
        discriminator((40, 48), (8, 16, 32, 32), shrink=2)
    data = tiny().to_dict()
    data["model"].update(discriminator_steps=10, discriminator_shrink=3)
    with pytest.raises(ConfigError, match="discriminator_shrink.*1, 2, 4"):
        pipeline_from_dict(data, source="odd shrink")
    # The served model with it saves and loads with safe_mode (standard layers only).
    import keras

    data["model"].update(discriminator_shrink=2)
    model = build_model(pipeline_from_dict(data, source="shrink 2").model.settings, (48, 64))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    frames = rng.random((2, 48, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded(frames).numpy(), model(frames).numpy(), rtol=1e-5, atol=1e-6)


def test_off_no_discriminator_is_built_and_a_negative_count_is_refused():
    settings = tiny().model.settings
    assert settings.discriminator_steps == 0 and resolve_pipeline("general").model.settings.discriminator_steps == 0
    names = {layer.name for layer in build_model(settings, (48, 64)).layers}
    assert "discriminator" not in names and "defect_probability" not in names
    data = tiny().to_dict()
    data["model"].update(discriminator_steps=-1)
    with pytest.raises(ConfigError, match="discriminator_steps"):
        pipeline_from_dict(data, source="negative")
    data["model"].update(discriminator_steps=10, discriminator_weight=0)
    with pytest.raises(ConfigError, match="discriminator_weight"):
        pipeline_from_dict(data, source="no weight")
    data["model"].update(discriminator_weight=1.0, discriminator_filters=[8, 16, 32])
    with pytest.raises(ConfigError, match="four channel counts"):
        pipeline_from_dict(data, source="three stages")
    data["model"].update(discriminator_filters=[8, 16, 32, 24])
    narrow = pipeline_from_dict(data, source="narrow").model.settings
    judge = build_model(narrow, (48, 64)).get_layer("discriminator")
    assert [layer.filters for layer in judge.layers if hasattr(layer, "filters")][:2] == [8, 16]


def test_a_trained_discriminator_is_served_loads_safely_and_finds_a_missing_part(tmp_path):
    rng = np.random.default_rng(2)
    pipeline = with_discriminator(400, weight=2.0)
    images = load_images(write(tmp_path / "good", [part_on_board(rng) for _ in range(24)]), pipeline)
    train_bundle(images, tmp_path / "model", pipeline, seed=0)
    bundle = load_bundle(tmp_path / "model")  # loads with safe_mode: no Lambda layer
    model = bundle.model
    assert {"discriminator", "defect_probability"} <= {layer.name for layer in model.layers}
    # It learnt where drawn defects are: it ranks their pixels above the others better than the
    # same network at its starting weights. (So short a training leaves the ranking anywhere from
    # 0.59 to 0.88 by seed, about 0.5 untrained, and where a seed falls depends on the processor's
    # rounding: a fixed bar would pass on one host and fail on another.)
    import tensorflow as tf

    judge, ae = model.get_layer("discriminator"), model.get_layer("autoencoder")
    settings = pipeline.model.settings
    shown, target = drawn_batch(np.random.default_rng(9), images.arrays, None, settings, 64, whole_frame=True)
    x = tf.constant(shown[..., None])
    pair = tf.concat([x, ae(x)], axis=-1)
    start = starting_discriminator(images.arrays.shape[1:], settings, 0)

    def ranking(net):
        chance = net(pair).numpy()[..., 0]
        return roc_auc(chance[target == 0][::7], chance[target > 0])

    assert ranking(judge) > ranking(start) + 0.05
    # Its map's per-pixel statistics are those of its smoothed chances on the held-out good images.
    _, held = split_holdout(len(images.arrays), pipeline.model.holdout_fraction, 0)
    good = tf.constant(images.arrays[held][..., None])
    probability = model.get_layer("defect_probability")
    raw = probability.raw(good, judge(tf.concat([good, ae(good)], axis=-1))).numpy()[..., 0]
    mean, scale = pixel_statistics(raw)
    np.testing.assert_allclose(probability.position_mean.numpy(), mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(probability.position_scale.numpy(), scale, rtol=1e-4, atol=1e-6)
    # Its unit is its typical score on those images over its weight: it counts twice as much.
    typical = ((raw - mean) / scale).reshape(len(raw), -1).max(axis=1).mean()
    assert float(probability.unit.numpy()) == pytest.approx(typical / 2.0, rel=1e-3)

    from inspector.inference import Inferencer

    missing, present = write(tmp_path / "test", [board(rng), part_on_board(rng)])
    with Inferencer(bundle) as inferencer:
        gone, there = inferencer.judge([missing, present])
    assert gone.verdict == "defect" and gone.score > 2 * there.score


def test_each_pass_reports_the_mean_loss_of_its_own_batches_the_last_one_partial():
    rng = np.random.default_rng(3)
    frames = np.stack([part_on_board(rng) for _ in range(8)])[:, :48, :64]
    data = tiny(epochs=6).to_dict()
    data["model"].update(batch_size=2, discriminator_steps=7)
    settings = pipeline_from_dict(data, source="batches of 2").model.settings
    assert settings.steps_per_epoch(len(frames)) == 4  # a pass: 4 batches of 2
    reported = []
    _, losses = judging.train_discriminator(autoencoder(settings, frames.shape[1:]), frames, None, settings, seed=1,
                                            rate=0.003, whole_frame=True, on_pass=lambda n, loss: reported.append((n, loss)))
    assert len(losses) == 7  # the settings' steps
    assert [n for n, _ in reported] == [0, 1]
    assert reported[0][1] == pytest.approx(np.mean(losses[:4])) and reported[1][1] == pytest.approx(np.mean(losses[4:]))


def test_a_quick_training_shortens_the_discriminator_and_the_bar_counts_its_passes(tmp_path):
    settings = with_discriminator(60).model.settings  # 6 epochs
    assert [settings.discriminator_steps_for(e) for e in (6, 3, 1, 12)] == [60, 30, 10, 60]
    assert with_discriminator(5).model.settings.discriminator_steps_for(1) == 1  # rounded up, at least one
    assert with_discriminator(7).model.settings.discriminator_steps_for(5) == 6
    assert tiny().model.settings.discriminator_steps_for(6) == 0
    from inspector.usecases.training import train_folder

    bars = []

    class Bar:
        def __init__(self, length, label, **_):
            self.length, self.label, self.items = length, label, []
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n, item=None):
            self.items.append(item)

    rng = np.random.default_rng(6)
    pipeline = with_discriminator(69)
    paths = write(tmp_path / "good", [part_on_board(rng) for _ in range(24)])
    bundle, summary = train_folder(paths, tmp_path / "model", pipeline, seed=0, epochs=2, progress=Bar)
    training = bars[-1]
    # 2 of 6 epochs: 23 discriminator batches (69 * 2 / 6 rounded up), counted in passes of an
    # epoch's batches, the last one partial.
    per_pass = pipeline.model.settings.steps_per_epoch(summary["trained_on"])
    assert 23 % per_pass and training.length == 2 + -(-23 // per_pass) == len(training.items)
    assert all(item.startswith("loss ") for item in training.items[:2])
    assert all(item.startswith("discriminator loss ") for item in training.items[2:])
    assert "discriminator" in {layer.name for layer in load_bundle(tmp_path / "model").model.layers}
