"""Nuisance copies drawn from the nuisances a pipeline names (`nuisances` in [model]): a pipeline
that judges a part out of its place as a defect trains on light, blur, noise and dust without
ever being shown a part moved or zoomed as good."""

import pytest

from inspector import nuisance
from inspector.errors import ConfigError
from inspector.formats import list_images
from inspector.models.pipeline_files import pipeline_from_dict, resolve_pipeline
from inspector.usecases.training import load_images
from conftest import SAMPLE


def screw_with(**model):
    data = resolve_pipeline("screw").to_dict()
    data["model"].update(model)
    return pipeline_from_dict(data, source="screw, changed")


@pytest.fixture
def drawn(monkeypatch):
    """Every nuisance replaced by one that records its name and darkens the frame a little."""
    calls = []

    def recording(name):
        def apply(frame, rng):
            calls.append(name)
            return frame * 0.9

        return apply

    for name in list(nuisance.NUISANCES):
        monkeypatch.setitem(nuisance.NUISANCES, name, recording(name))
    return calls


def test_copies_are_drawn_only_from_the_named_nuisances(drawn):
    paths = list_images(SAMPLE / "train" / "good")[:6]
    loaded = load_images(paths, screw_with(nuisance_copies=3, nuisances=["dust", "noise"]), seed=0)
    assert loaded.variants.shape[:2] == (6, 3)
    assert len(drawn) >= 18 and set(drawn) == {"dust", "noise"}


def test_with_no_names_a_copy_may_be_under_any_nuisance(drawn):
    paths = list_images(SAMPLE / "train" / "good")[:8]
    load_images(paths, screw_with(nuisance_copies=4, nuisances=[]), seed=0)
    assert {"position", "zoom", "dust"} <= set(drawn)


def test_a_name_that_is_no_nuisance_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"nuisances' must be one of light-radial, .*dust; got 'wobble'"):
        screw_with(nuisances=["dust", "wobble"])


def test_the_nuisances_that_keep_the_part_in_place_exist_and_move_nothing():
    assert set(nuisance.IN_PLACE) <= set(nuisance.NUISANCES)
    assert not {"position", "zoom"} & set(nuisance.IN_PLACE)
