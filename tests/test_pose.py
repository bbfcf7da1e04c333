"""Pose normalisation: find a screw's axis and head, and cut it out upright."""

import numpy as np
import pytest

from inspector.cv_setup import cv2
from inspector.formats import decode
from inspector.preprocess import Exposure, ImageError, align_part, find_pose, preprocess
from inspector.settings import PreprocessConfig
from conftest import SAMPLE

AXIS = PreprocessConfig(pose="axis", normalize="standardize", crop_width=192, crop_height=64)
SAMPLES = sorted((SAMPLE / "train" / "good").glob("*.png"))[:4] + sorted((SAMPLE / "test" / "defect").glob("*.png"))[:2]


def frame(path) -> np.ndarray:
    gray = decode(path.read_bytes(), path)
    pad = gray.shape[0] // 3  # room to turn the screw without cutting its ends off
    return cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)


def turned(gray: np.ndarray, degrees: float) -> np.ndarray:
    """The frame turned counter-clockwise (as displayed) by `degrees` about its centre."""
    h, w = gray.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(gray, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def angle_difference(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("degrees", [0, 17, 90, 145, 180, 233, 300])
def test_recovers_a_known_rotation_including_head_direction(path, degrees):
    gray = frame(path)
    original = find_pose(gray).angle
    # Turning the frame counter-clockwise on screen lowers the angle in y-down coordinates.
    recovered = find_pose(turned(gray, degrees)).angle
    assert angle_difference(recovered, original - degrees) <= 3.0


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_cut_out_screw_lies_horizontal_with_head_left(path):
    crop = align_part(turned(frame(path), 71), AXIS).array
    assert crop.shape == (64, 192) and crop.dtype == np.float32
    part = crop < 0.5 + AXIS.target_std  # darker than the part's mean plus one std: the screw
    heights = part.sum(axis=0)
    left, right = heights[:64].max(), heights[-64:].max()
    assert left > 1.5 * right, (left, right)  # the head is much taller than the tip
    rows = np.nonzero(part.sum(axis=1) > 20)[0]
    assert abs((rows.min() + rows.max()) / 2 - 32) <= 4  # centred vertically


def test_turned_copies_give_nearly_the_same_crop():
    path = SAMPLES[0]
    gray = frame(path)
    a, b = align_part(gray, AXIS).array, align_part(turned(gray, 123), AXIS).array
    assert np.abs(a - b).mean() < 0.03


def test_exposure_change_cancels_out(tmp_path):
    path = SAMPLES[1]
    plain = preprocess(path, AXIS)
    brighter = preprocess(path, AXIS, Exposure(gain=1.12, offset=12))
    darker = preprocess(path, AXIS, Exposure(gain=0.88, offset=-14))
    assert np.abs(plain - brighter).mean() < 0.01 and np.abs(plain - darker).mean() < 0.01


def test_blank_frame_is_an_image_error_with_a_reason(tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((300, 300), 180, np.uint8))
    with pytest.raises(ImageError, match="no part found"):
        preprocess(blank, AXIS)


@pytest.mark.parametrize("degrees", [0, 30, 90, 121, 180, 250])
def test_blob_pose_matches_a_general_eigen_solver(degrees):
    # A wedge (wide end = head) drawn at a known angle, with another blob's pixels inside its
    # box: the closed-form axis on the box must give what an eigen-solver on every pixel gives.
    from inspector.preprocess import _blob_pose

    labels = np.zeros((200, 260), np.int32)
    theta = np.radians(degrees)
    along, across = np.cos(theta), np.sin(theta)
    for t in np.linspace(-60, 60, 400):
        half = 14 - 10 * (t + 60) / 120  # wide at t = -60 (the head), narrow at t = +60
        for s in np.linspace(-half, half, 40):
            labels[int(round(100 + t * across + s * along)), int(round(130 + t * along - s * across))] = 2
    labels[95:100, 125:130] = 1  # a hole of another label: left out though inside the wedge's box
    count, _, wedge, _ = cv2.connectedComponentsWithStats((labels == 2).astype(np.uint8))
    assert count == 2  # the background and the wedge
    stats = np.array([[0, 0, 1, 1, 1], [125, 95, 5, 5, 25], wedge[1]], np.int32)  # row 2: the wedge
    pose = _blob_pose(labels, stats, 2, 0.5)

    ys, xs = np.nonzero(labels == 2)
    points = np.stack([xs, ys], axis=1) / 0.5
    _, vectors = np.linalg.eigh(np.cov((points - points.mean(axis=0)).T))
    axis = vectors[:, 1] * np.sign(vectors[:, 1] @ [along, across])  # from the head to the tip
    assert angle_difference(pose.angle, np.degrees(np.arctan2(axis[1], axis[0]))) < 1e-6
    assert angle_difference(pose.angle, degrees) < 2.0
    extent = (points - points.mean(axis=0)) @ axis
    assert pose.length == pytest.approx(extent.max() - extent.min(), rel=1e-9)
    centre = points.mean(axis=0) + axis * (extent.max() + extent.min()) / 2  # in the frame's pixels
    assert np.allclose(pose.centre, centre, atol=1e-6)
