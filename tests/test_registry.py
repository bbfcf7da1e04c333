"""The model registry: every architecture declares its keys and output, builds, and fits."""

import dataclasses

import numpy as np
import pytest

from inspector import models
from inspector.errors import ConfigError
from inspector.models.components.running import forward, post_process
from inspector.models.pipeline_files import pipeline_from_dict, resolve_pipeline
from inspector.settings import ERROR_KINDS, Pipeline
from inspector.usecases.training import load_folder
from conftest import SAMPLE

NAMES = models.names()
# A preprocessing each architecture can take: autoencoders need square frames, the patch memory
# pose-normalised crops.
AXIS = {"pose": "axis", "normalize": "standardize"}
PREPROCESS = {name: {"size": 64} for name in NAMES} | {name: AXIS for name in ("patch_memory", "denoising_autoencoder", "vae")}
# Small enough to fit in seconds.
SMALL = {"denoising_autoencoder": {"filters": [8, 16], "nuisance_copies": 0, "neighbours": 4},
         "vae": {"filters": [8, 16], "latent_dim": 8}}


def pipeline_for(name: str, **model) -> Pipeline:
    spec = models.get(name)
    return pipeline_from_dict({"preprocess": PREPROCESS[name], "model": {"architecture": name, **model},
                               "scoring": {"error": spec.errors[0]}}, source=f"{name} test")


def test_the_registry_lists_the_shipped_architectures():
    assert NAMES == ("compact", "seed003", "patch_memory", "denoising_autoencoder", "vae")
    for pipeline in ("screw", "screw-ae-memory", "screw-memory", "screw-vae", "seed003"):
        config = resolve_pipeline(pipeline).model
        assert type(config.settings) is models.get(config.architecture).settings


def test_an_unknown_architecture_is_a_config_error_listing_the_known_ones():
    with pytest.raises(ConfigError, match="unknown model architecture 'gan'; known: compact, seed003, patch_memory, "
                                         "denoising_autoencoder, vae"):
        models.get("gan")


@pytest.mark.parametrize("name", NAMES)
def test_a_key_the_architecture_does_not_take_is_refused_by_name(name):
    spec = models.get(name)
    with pytest.raises(ConfigError) as info:
        pipeline_for(name, colour="red")
    message = str(info.value)
    assert f"unknown key 'model.colour' (architecture '{name}' takes: architecture, holdout_fraction" in message
    assert all(key in message for key in spec.keys)


@pytest.mark.parametrize("name", NAMES)
def test_the_declared_output_decides_the_scoring_errors(name):
    spec = models.get(name)
    assert spec.output in (models.RECONSTRUCTION, models.ERROR_MAP) and spec.errors
    assert set(spec.errors) <= set(ERROR_KINDS)
    for error in ERROR_KINDS:
        data = {"preprocess": PREPROCESS[name], "model": {"architecture": name}, "scoring": {"error": error}}
        if error in spec.errors:
            assert pipeline_from_dict(data).scoring.error == error
        else:
            with pytest.raises(ConfigError, match=f"'scoring.error' = '{error}' does not fit 'model.architecture'"):
                pipeline_from_dict(data)


@pytest.mark.parametrize("name", NAMES)
def test_each_architecture_builds_a_model_of_its_declared_output(name):
    pipeline = pipeline_for(name, **SMALL.get(name, {}))
    spec = models.get(name)
    shape = pipeline.preprocess.shape
    model = spec.build(pipeline.model.settings, shape)
    assert tuple(model.input_shape[1:]) == (*shape, 1) and tuple(model.output_shape[1:]) == (*shape, 1)
    inputs = np.random.default_rng(0).uniform(0.3, 0.7, (2, *shape)).astype(np.float32)
    outputs = forward(model, inputs)
    assert outputs.shape == inputs.shape and np.isfinite(outputs).all()
    scores, maps = post_process(inputs, outputs, pipeline.scoring)
    assert scores.shape == (2,) and maps.shape == inputs.shape
    if spec.output == models.RECONSTRUCTION:  # an image like the input: same value range
        assert 0.0 <= outputs.min() and outputs.max() <= 1.0
    else:  # the error map itself is what is scored
        np.testing.assert_array_equal(maps, outputs)


@pytest.mark.parametrize("name", NAMES)
def test_each_architecture_fits_and_reports_what_it_calibrated_on(name):
    spec = models.get(name)
    epochs = {"epochs": 1} if "epochs" in spec.keys else {}
    pipeline = pipeline_for(name, **epochs, **SMALL.get(name, {}))
    # 10 images (20 for the denoising autoencoder: its cross-fitted calibration needs 4 held out).
    arrays = load_folder(SAMPLE / "train" / "good", pipeline).arrays[:20 if name == "denoising_autoencoder" else 10]
    seen = []
    fitted = spec.fit(arrays, pipeline, seed=0, on_epoch=lambda epoch, loss: seen.append((epoch, loss)))
    assert len(fitted.scores) == fitted.held_out and fitted.maps.shape == (fitted.held_out, *arrays.shape[1:])
    assert 0 < fitted.trained_on <= len(arrays) and fitted.calibrated_on
    assert fitted.epochs == len(fitted.losses) == len(seen) == (spec.planned_epochs(pipeline.model.settings) or 0)
    # The scores are the inferencer's post-processing of the saved model's (or its folds') output.
    assert np.isfinite(fitted.scores).all() and tuple(fitted.model.input_shape[1:]) == (*arrays.shape[1:], 1)


def test_settings_defaults_are_valid_and_typed():
    for spec in models.ARCHITECTURES.values():
        defaults = spec.settings()
        defaults.validate("model")
        assert all(f.default is not dataclasses.MISSING for f in dataclasses.fields(spec.settings))
