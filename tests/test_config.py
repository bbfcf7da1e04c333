import pytest

from inspector.errors import ConfigError
from inspector.models.pipeline_files import PIPELINES_DIR, load_pipeline, pipeline_from_dict, resolve_pipeline


def test_shipped_pipelines_load():
    screw = load_pipeline(PIPELINES_DIR / "screw.toml")
    assert screw.preprocess.pose == "axis" and screw.preprocess.shape == (64, 192)
    assert screw.model.architecture == "denoising_autoencoder" and screw.scoring.error == "distance"
    assert screw.model.settings.second_opinion == "none" and screw.model.settings.layout == "strided"
    both = resolve_pipeline("screw-ae-memory")
    assert both.model.architecture == "denoising_autoencoder" and both.preprocess.shape == (64, 192)
    assert both.model.settings.second_opinion == "patch_memory"
    assert both.model.settings.filters == screw.model.settings.filters  # the same autoencoder
    assert resolve_pipeline("screw-memory").model.architecture == "patch_memory"
    assert resolve_pipeline("screw-vae").model.architecture == "vae"
    seed = resolve_pipeline("seed003")
    assert seed.model.architecture == "seed003"
    assert seed.scoring.reduce == "mean" and seed.preprocess.normalize == "unit"


def test_round_trip_through_dict():
    screw = resolve_pipeline("screw")
    assert pipeline_from_dict(screw.to_dict()) == screw


DENOISING = "[model]\narchitecture = 'denoising_autoencoder'\n"
DISTANCE = "[scoring]\nerror = 'distance'\n"


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[model]\nepochz = 3\n", "unknown key 'model.epochz'"),
        ("colour = 'red'\n", "unknown key 'colour'"),
        ("[scoring]\nreduce = 'median'\n", "'scoring.reduce' must be one of"),
        ("[preprocess]\nsize = 8\n", "'preprocess.size' must be between"),
        ("[model]\nepochs = 'ten'\n", "'model.epochs' must be of type int"),
        ("[model]\nfilters = [16, 0]\n", "model.filters must be a non-empty list"),
        ("[model]\nfilters = [8, 16]\ndecoder_filters = [8]\n", "model.decoder_filters must be empty or 2 integers"),
        ("[model]\narchitecture = 'patch_memory'\n", "'scoring.error' = 'squared' does not fit 'model.architecture' = 'patch_memory'"),
        ("[scoring]\nerror = 'distance'\n", "'scoring.error' = 'distance' does not fit 'model.architecture' = 'compact'"),
        ("[preprocess]\npose = 'upright'\n", "'preprocess.pose' must be one of none, axis"),
        ("[preprocess]\ncrop_width = 190\n", "'preprocess.crop_width' must be a multiple of 4"),
        ("[model]\narchitecture = 'patch_memory'\npatch_size = 5\n", "'model.patch_size' must be even"),
        # Each architecture takes its own keys: patch memory's are unknown to an autoencoder.
        ("[model]\npatch_size = 4\n", "unknown key 'model.patch_size' (architecture 'compact' takes: architecture,"),
        ("[model]\narchitecture = 'seed003'\nfilters = [8]\n", "unknown key 'model.filters' (architecture 'seed003'"),
        ("[model]\narchitecture = 'gan'\n", "'model.architecture' must be one of compact, seed003, patch_memory, denoising_autoencoder, vae; got 'gan'"),
        (DENOISING + "layout = 'wide'\n" + DISTANCE, "'model.layout' must be one of strided, paired; got 'wide'"),
        (DENOISING + "learning_rate_decay = 'step'\n" + DISTANCE,
         "'model.learning_rate_decay' must be one of constant, cosine; got 'step'"),
        (DENOISING + "head_filters = 0\n" + DISTANCE, "'model.head_filters' must be between 1 and 512; got 0"),
        ("[threshold]\npolicy = 'guess'\n", "'threshold.policy' must be one of"),
        ("[threshold]\nk = true\n", "'threshold.k' must be of type float"),
        ("model = 3\n", "[model] must be a table"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_bad_pipeline_names_the_key(tmp_path, toml, message):
    path = tmp_path / "line.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_ints_are_accepted_for_floats(tmp_path):
    path = tmp_path / "line.toml"
    path.write_text("[threshold]\nk = 3\n")
    assert load_pipeline(path).threshold.k == 3.0


def test_unknown_pipeline_name_lists_known_ones():
    with pytest.raises(ConfigError) as info:
        resolve_pipeline("bolts")
    assert "no pipeline named 'bolts'" in str(info.value) and "seed003" in str(info.value)


def test_replace_validates():
    screw = resolve_pipeline("screw")
    assert screw.replace("threshold", k=1.0).threshold.k == 1.0
    with pytest.raises(ConfigError):
        screw.replace("threshold", policy="nonsense")
