"""Robustness: parts that cannot be judged from a photo are errors with a reason, the line's
nuisances leave the part findable, and the heat is drawn back onto the photo where it is."""

import numpy as np
import pytest

from inspector import nuisance
from inspector.config import PreprocessConfig, resolve_pipeline
from inspector.cv_setup import cv2
from inspector.errors import ImageError
from inspector.inference import Inferencer
from inspector.preprocess import locate_part, prepare, prepare_frame, read_frame, relative_length
from inspector.scoring import on_frame
from conftest import SAMPLE

CHECKED = PreprocessConfig(pose="axis", normalize="standardize", flatten_light=True, check_view=True,
                           size_tolerance=0.25)
SCREW = SAMPLE / "train" / "good" / "000.png"


@pytest.fixture(scope="module")
def frame():
    return read_frame(SCREW)


def background_like(frame: np.ndarray, shape) -> np.ndarray:
    return np.full(shape, float(np.median(frame)), np.float32)


def test_a_screw_half_out_of_the_frame_is_not_in_view(frame):
    h, w = frame.shape
    shifted = background_like(frame, frame.shape)
    shifted[:, w // 2:] = frame[:, : w - w // 2]  # the right half of the frame holds the left half of the photo
    with pytest.raises(ImageError, match="part not in view: it touches the frame's edge"):
        prepare(shifted, CHECKED)


def test_two_screws_in_one_frame_are_not_in_view(frame):
    h, w = frame.shape
    pair = background_like(frame, (h, 2 * w))
    pair[:, :w], pair[:, w:] = frame, read_frame(sorted((SAMPLE / "train" / "good").glob("*.png"))[1])
    pair = cv2.copyMakeBorder(pair, h // 2, h // 2, 0, 0, cv2.BORDER_CONSTANT, value=float(np.median(frame)))
    with pytest.raises(ImageError, match="part not in view: 2 parts in the frame"):
        prepare(pair, CHECKED)


def test_a_screw_at_half_size_is_refused_as_another_zoom(frame):
    length = relative_length(locate_part(frame, CHECKED).pose, frame.shape)
    h, w = frame.shape
    small = background_like(frame, frame.shape)
    small[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2] = cv2.resize(frame, (w // 2, h // 2),
                                                                        interpolation=cv2.INTER_AREA)
    with pytest.raises(ImageError, match=r"part not in view: it is 0\.\d\d times the size of the parts trained on"):
        prepare(small, CHECKED, expected_length=length)
    prepare(frame, CHECKED, expected_length=length)  # the same screw at its own size passes
    prepare(small, CHECKED)  # without a trained size there is nothing to compare with


def test_no_part_at_all_is_still_no_part(frame):
    with pytest.raises(ImageError, match="no part found"):
        prepare(background_like(frame, frame.shape), CHECKED)


@pytest.mark.parametrize("name", list(nuisance.NUISANCES))
def test_each_nuisance_is_repeatable_and_leaves_the_part_in_view(frame, name):
    line_frame = cv2.resize(frame, (1024, 1024), interpolation=cv2.INTER_CUBIC)  # the line camera's size
    changed = nuisance.apply(name, line_frame, 0, "000.png")
    assert changed.dtype == np.float32 and 0 <= changed.min() and changed.max() <= 1
    assert not np.array_equal(changed, line_frame)
    np.testing.assert_array_equal(changed, nuisance.apply(name, line_frame, 0, "000.png"))
    if name != "resolution":  # the one nuisance without a random strength
        assert not np.array_equal(changed, nuisance.apply(name, line_frame, 1, "000.png"))
    crop = prepare(changed, CHECKED)  # found, in view, one part
    assert np.corrcoef(crop.ravel(), prepare(line_frame, CHECKED).ravel())[0, 1] > 0.7  # still head left


def test_uneven_light_does_not_move_the_crop_once_flattened(frame):
    plain = prepare(frame, CHECKED)
    for name in ("light-radial", "light-gradient", "light-spot"):
        lit = prepare(nuisance.apply(name, frame, 0, "000.png"), CHECKED)
        # Measured: mean change 0.022, 0.004, 0.035 of the grey range (a hot spot on the part itself
        # is only partly evened out).
        assert np.abs(lit - plain).mean() < 0.05 and np.corrcoef(lit.ravel(), plain.ravel())[0, 1] > 0.95, name


def test_the_heat_is_drawn_back_onto_the_photo_where_the_defect_is(frame, tmp_path):
    pose = locate_part(frame, CHECKED).pose
    direction = np.array([np.cos(np.radians(pose.angle)), np.sin(np.radians(pose.angle))])
    x, y = (np.array(pose.centre) - 0.1 * pose.length * direction).astype(int)  # the shank, near the middle
    marked = frame.copy()
    cv2.circle(marked, (int(x), int(y)), 4, float(frame.max()), -1)
    prepared = prepare_frame(marked, CHECKED)
    # A crop error map that is hot where the pit is in the crop...
    crop_xy = prepared.matrix @ np.array([x, y, 1.0])
    crop_map = np.zeros(prepared.array.shape, np.float32)
    cv2.circle(crop_map, (int(round(crop_xy[0])), int(round(crop_xy[1]))), 2, 1.0, -1)
    # ...comes back on the photo where the pit was painted.
    preview, matrix = prepared.preview, prepared.preview_matrix
    heat = on_frame(crop_map, matrix, preview.shape)
    factor = preview.shape[0] / frame.shape[0]
    hot_y, hot_x = np.unravel_index(np.argmax(heat), heat.shape)
    assert abs(hot_x - x * factor) <= 3 and abs(hot_y - y * factor) <= 3


def test_the_overlay_on_the_photo_has_the_photo_shape_and_the_crop_view_is_kept(tmp_path):
    from inspector.bundle import load_bundle
    from inspector.training import load_folder, train_bundle

    pipeline = resolve_pipeline("screw-memory")
    train_bundle(load_folder(SAMPLE / "train" / "good", pipeline), tmp_path / "m", pipeline)
    defect = sorted((SAMPLE / "test" / "defect").glob("*.png"))[0]
    with Inferencer(load_bundle(tmp_path / "m")) as inferencer:
        result = next(inferencer.judge([defect], keep_maps=True))
        inferencer.write_pictures(result, tmp_path / "h.png", tmp_path / "o.png", tmp_path / "c.png")
    photo = cv2.imread(str(defect))
    assert cv2.imread(str(tmp_path / "o.png")).shape == photo.shape  # 256x256 sample frames: not shrunk
    assert cv2.imread(str(tmp_path / "c.png")).shape[:2] == (64, 192)  # the upright crop
    # The hottest place of the photo overlay is the hottest place of the crop map, drawn back.
    heat = on_frame(result.error_map, result.frame[1], photo.shape[:2])
    hot = np.unravel_index(np.argmax(heat), heat.shape)
    crop_hot = np.unravel_index(np.argmax(result.error_map), result.error_map.shape)
    back = cv2.invertAffineTransform(result.frame[1]) @ np.array([crop_hot[1], crop_hot[0], 1.0])
    assert abs(hot[1] - back[0]) <= 3 and abs(hot[0] - back[1]) <= 3
