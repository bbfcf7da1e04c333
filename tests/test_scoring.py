"""Error maps and image scores against values computed by hand."""

import numpy as np
import pytest

from inspector.scoring import error_maps, image_scores
from inspector.settings import ScoringConfig

INPUT = np.full((1, 4, 4), 0.5, np.float32)
OUTPUT = INPUT.copy()
OUTPUT[0, 0, :] = [0.1, 0.3, 0.9, 0.5]  # differences -0.4, -0.2, +0.4, 0 on the first row


@pytest.mark.parametrize("error, first_row", [
    ("squared", [0.16, 0.04, 0.16, 0.0]),
    ("absolute", [0.4, 0.2, 0.4, 0.0]),
])
def test_pixel_errors(error, first_row):
    maps = error_maps(INPUT, OUTPUT, ScoringConfig(error=error))
    assert maps.shape == (1, 4, 4) and maps.dtype == np.float32
    np.testing.assert_allclose(maps[0, 0], first_row, atol=1e-6)
    assert not maps[0, 1:].any()


def test_distance_is_the_model_output_itself():
    maps = error_maps(INPUT, OUTPUT[..., None], ScoringConfig(error="distance"))  # (N, H, W, 1) is squeezed
    np.testing.assert_array_equal(maps, OUTPUT)


def test_ssim_of_two_flat_images():
    # Flat images have no contrast or structure: SSIM is the luminance term
    # (2ab + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * data range)^2; the map is (1 - SSIM) / 2.
    a, b, c1 = 0.2, 0.6, 1e-4
    expected = (1 - (2 * a * b + c1) / (a * a + b * b + c1)) / 2  # 0.19995
    maps = error_maps(np.full((1, 16, 16), a), np.full((1, 16, 16), b), ScoringConfig(error="ssim"))
    np.testing.assert_allclose(maps, expected, rtol=1e-6)
    same = error_maps(np.full((1, 16, 16), a), np.full((1, 16, 16), a), ScoringConfig(error="ssim"))
    np.testing.assert_allclose(same, 0.0, atol=1e-9)


MAPS = np.array([np.arange(16, dtype=np.float32).reshape(4, 4), np.full((4, 4), 2.0, np.float32)])


@pytest.mark.parametrize("config, expected", [
    (ScoringConfig(reduce="mean"), [7.5, 2.0]),
    (ScoringConfig(reduce="max"), [15.0, 2.0]),
    # The top quarter of 16 pixels: 12, 13, 14, 15.
    (ScoringConfig(reduce="topk_mean", topk_fraction=0.25), [13.5, 2.0]),
    # Fewer than one pixel rounds up to the single highest.
    (ScoringConfig(reduce="topk_mean", topk_fraction=0.01), [15.0, 2.0]),
])
def test_reducers(config, expected):
    scores = image_scores(MAPS, config)
    assert scores.dtype == np.float64 and scores.shape == (2,)
    np.testing.assert_allclose(scores, expected)


def test_smoothed_max_spreads_a_single_hot_pixel():
    # Blurred with sigma 1, one pixel of 1 keeps the centre weight of a 2-D Gaussian, about
    # 1 / (2 pi); a flat map stays flat.
    spot = np.zeros((1, 15, 15), np.float32)
    spot[0, 7, 7] = 1.0
    config = ScoringConfig(reduce="smoothed_max", smooth_sigma=1.0)
    assert image_scores(spot, config)[0] == pytest.approx(1 / (2 * np.pi), rel=1e-3)
    assert image_scores(MAPS[1:], config)[0] == pytest.approx(2.0)
