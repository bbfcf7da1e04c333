"""The convolutional VAE (as in the reference notebooks): trains, saves, loads, scores by reconstruction."""

import zipfile

import numpy as np

from inspector.bundle import load_bundle
from inspector.models.components.running import forward, score_arrays
from inspector.models.pipeline_files import pipeline_from_dict, resolve_pipeline
from inspector.usecases.training import load_folder, train_bundle
from conftest import SAMPLE


def test_the_vae_trains_round_trips_and_serves_deterministically(tmp_path):
    data = resolve_pipeline("screw-vae").to_dict()
    data["model"].update(filters=[8, 16, 32], latent_dim=16, epochs=3)
    pipeline = pipeline_from_dict(data, source="small vae")
    images = load_folder(SAMPLE / "train" / "good", pipeline)
    assert images.variants is None  # the VAE asks for no nuisance copies
    bundle, summary = train_bundle(images, tmp_path / "vae", pipeline, seed=0)
    assert summary["epochs"] == 3 and len(bundle.training["loss"]) == 3
    assert bundle.training["loss"][-1] < bundle.training["loss"][0]
    with zipfile.ZipFile(tmp_path / "vae" / "model.keras") as archive:
        assert "Lambda" not in archive.read("config.json").decode()
    loaded = load_bundle(tmp_path / "vae")  # safe_mode=True
    x = images.arrays[:4]
    reconstruction = forward(loaded.model, x)
    assert reconstruction.shape == x.shape and 0 <= reconstruction.min() and reconstruction.max() <= 1
    np.testing.assert_array_equal(reconstruction, forward(loaded.model, x))  # the mean, not a sample
    np.testing.assert_allclose(score_arrays(loaded.model, x, pipeline.scoring)[0],
                               score_arrays(bundle.model, x, pipeline.scoring)[0], rtol=1e-5)
