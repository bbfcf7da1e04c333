"""Nuisance copies drawn from the nuisances a pipeline names (`nuisances` in [model]): a pipeline
that judges a part out of its place as a defect trains on light, blur, noise and dust without
ever being shown a part moved or zoomed as good."""

import numpy as np
import pytest

from inspector import nuisance, nuisance_names
from inspector.cv_setup import cv2
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


def test_a_name_given_twice_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"nuisances' names a nuisance twice"):
        screw_with(nuisances=["dust", "dust"])


def test_the_named_nuisances_survive_a_saved_pipeline():
    pipeline = screw_with(nuisance_copies=2, nuisances=list(nuisance_names.IN_PLACE))
    again = pipeline_from_dict(pipeline.to_dict(), source="saved")
    assert again.model.settings.nuisances == nuisance_names.IN_PLACE


def part_place(frame: np.ndarray) -> np.ndarray:
    """The largest dark region's centre and box, as shares of the frame's width and height, and
    the box's width over its height in pixels (its shape)."""
    _, _, stats, centres = cv2.connectedComponentsWithStats((frame < 0.4).astype(np.uint8))
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    h, w = frame.shape
    x, y, bw, bh = stats[k, :4]
    return np.array([centres[k][0] / w, centres[k][1] / h, x / w, y / h, (x + bw) / w, (y + bh) / h, bw / bh / 10])


@pytest.mark.parametrize("name", nuisance_names.IN_PLACE)
def test_the_nuisances_in_place_leave_a_part_where_it_is_on_a_frame_that_is_not_square(name):
    assert not {"position", "zoom"} & set(nuisance_names.IN_PLACE)
    frame = np.full((600, 800), 0.8, np.float32)
    cv2.rectangle(frame, (250, 200), (420, 330), 0.15, -1)  # a dark part off the frame's centre
    for seed in range(3):
        changed = nuisance.apply(name, frame, seed, "part.png")
        assert np.abs(part_place(changed) - part_place(frame)).max() < 0.003, (name, seed)


def test_the_names_a_pipeline_may_give_are_the_nuisances_there_are():
    assert nuisance_names.NAMES == tuple(nuisance.NUISANCES)
    assert set(nuisance_names.MOVING) < set(nuisance_names.NAMES)
    assert set(nuisance_names.IN_PLACE) == set(nuisance_names.NAMES) - set(nuisance_names.MOVING)
