"""Several autoencoders side by side (`members`) and training compiled by XLA
(`compile_training`): the restoration is the members' mean, each member learns as if alone, the
bundle loads safely and scores as trained, and a compiled training repeats itself."""

import dataclasses

import numpy as np
import pytest

from inspector.bundle import load_bundle
from inspector.errors import ConfigError
from inspector.models.components.autoencoder_fit import seeded, split_holdout
from inspector.models.components.patch_memory_fit import pixel_statistics
from inspector.models.denoising.fit import autoencoder, build as build_model, members, train_autoencoder
from inspector.models.pipeline_files import pipeline_from_dict, resolve_pipeline
from inspector.usecases.training import load_folder, train_bundle
from conftest import SAMPLE
from test_denoising import images, small  # noqa: F401  (the module's fixture of sample screws)


def settings(**changes):
    return dataclasses.replace(small().model.settings, **changes)


def frames(count: int = 24, side: int = 32) -> np.ndarray:
    """Grey frames with a bright bar at a slightly different place in each."""
    rng = np.random.default_rng(3)
    out = np.full((count, side, side), 0.3, np.float32) + 0.02 * rng.standard_normal((count, side, side)).astype(np.float32)
    for k, image in enumerate(out):
        image[10 + k % 4:16 + k % 4, 4:28] = 0.8
    return np.clip(out, 0, 1)


def weights(model) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]


def test_two_members_restore_as_their_mean():
    ae = build_model(settings(members=2), (64, 192)).get_layer("autoencoder")
    first, second = members(ae)
    assert [first.name, second.name] == ["member_0", "member_1"]
    x = np.random.default_rng(0).random((3, 64, 192, 1)).astype(np.float32)
    a, b = first(x).numpy(), second(x).numpy()
    assert not np.allclose(a, b)  # started from different weights
    np.testing.assert_allclose(ae(x).numpy(), (a + b) / 2, atol=1e-6)
    single = build_model(settings(), (64, 192)).get_layer("autoencoder")
    assert members(single) == [single] and single.count_params() * 2 == ae.count_params()


def test_each_member_learns_as_if_trained_alone():
    arrays = frames()
    seeded(5)  # as training starts: the pair's starting weights
    start = weights(members(autoencoder(settings(members=2), arrays.shape[1:]))[1])
    alone, alone_losses = train_autoencoder(arrays, None, settings(), seed=5, epochs=2, whole_frame=True)
    pair, pair_losses = train_autoencoder(arrays, None, settings(members=2), seed=5, epochs=2, whole_frame=True)
    first, second = members(pair)
    assert all(not np.allclose(now, then) for now, then in zip(weights(second)[::2], start[::2]))  # it learnt too
    # The first member starts where the lone autoencoder starts and sees the same batches: the
    # sum of the losses gives each member's weights its own loss's gradient alone.
    for mine, its in zip(weights(first), weights(alone)):
        np.testing.assert_allclose(mine, its, rtol=1e-4, atol=1e-6)
    assert any(not np.allclose(a, b) for a, b in zip(weights(first), weights(second)))
    assert len(pair_losses) == 2 and pair_losses[0] == pytest.approx(alone_losses[0], rel=0.05)  # a member's mean loss


def test_a_compiled_training_repeats_itself_and_follows_the_plain_one():
    arrays = frames()
    compiled = settings(compile_training=True)
    once, losses_once = train_autoencoder(arrays, None, compiled, seed=2, epochs=2, whole_frame=True)
    again, losses_again = train_autoencoder(arrays, None, compiled, seed=2, epochs=2, whole_frame=True)
    assert losses_once == losses_again
    for a, b in zip(weights(once), weights(again)):
        np.testing.assert_array_equal(a, b)
    plain, losses_plain = train_autoencoder(arrays, None, settings(), seed=2, epochs=2, whole_frame=True)
    np.testing.assert_allclose(losses_once, losses_plain, rtol=1e-3)  # close to the plain training's
    assert losses_once != losses_plain  # but compiled: operations fused and reordered


def test_a_bundle_of_two_members_loads_safely_and_scores_as_trained(images, tmp_path):  # noqa: F811
    data = small(epochs=2).to_dict()
    data["model"].update(members=2, compile_training=True)
    pipeline = pipeline_from_dict(data, source="two members")
    bundle, _ = train_bundle(images, tmp_path / "m", pipeline, seed=0)
    loaded = load_bundle(tmp_path / "m")  # Keras safe_mode
    assert [m.name for m in members(loaded.model.get_layer("autoencoder"))] == ["member_0", "member_1"]
    x = images.arrays[:4, ..., None]
    np.testing.assert_allclose(loaded.model(x).numpy(), bundle.model(x).numpy(), atol=1e-5)
    assert loaded.pipeline.model.settings.members == 2


def test_a_pair_is_calibrated_on_its_mean_restoration(tmp_path):
    data = small(epochs=2, copies=0).to_dict()
    data["model"].update(members=2)
    pipeline = pipeline_from_dict(data, source="two members")
    loaded = load_folder(SAMPLE / "train" / "good", pipeline, seed=0)
    bundle, _ = train_bundle(loaded, tmp_path / "m", pipeline, seed=0)
    _, held = split_holdout(len(loaded.arrays), pipeline.model.holdout_fraction, 0)
    x = loaded.arrays[held][..., None].astype(np.float32)
    ae, error = bundle.model.get_layer("autoencoder"), bundle.model.get_layer("reconstruction_error")
    # The per-pixel statistics come from the held-out images' error against the members' mean.
    mean_of_pair = pixel_statistics(error.raw(x, ae(x)).numpy()[..., 0])[0]
    np.testing.assert_allclose(error.position_mean.numpy(), mean_of_pair, rtol=1e-4, atol=1e-7)
    first_alone = pixel_statistics(error.raw(x, members(ae)[0](x)).numpy()[..., 0])[0]
    assert not np.allclose(error.position_mean.numpy(), first_alone, rtol=1e-2)


@pytest.mark.parametrize("members_value", [0, 9])
def test_members_out_of_range_is_a_clear_error(members_value):
    data = resolve_pipeline("general").to_dict()
    data["model"]["members"] = members_value
    with pytest.raises(ConfigError, match="members"):
        pipeline_from_dict(data, source="bad members")
