"""Robustness: parts that cannot be judged from a photo are errors with a reason, the line's
nuisances leave the part findable, and the heat is drawn back onto the photo where it is."""

import numpy as np
import pytest

from inspector import nuisance
from inspector.cv_setup import cv2
from inspector.errors import ImageError
from inspector.inference import Inferencer
from inspector.models.pipeline_files import resolve_pipeline
from inspector.pictures import on_frame
from inspector.preprocess import locate_part, prepare, prepare_frame, read_frame, relative_length
from inspector.settings import PreprocessConfig
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


def falling_off(shape, corner: float, kind: str = "square", centre=(0.5, 0.5)) -> np.ndarray:
    """Light falling off from `centre` (x, y, shares of the frame) to `corner` of its level in
    the corners: with the squared distance (`square`, as the line nuisance draws it), as a
    Gaussian, or as a lens's cos^4 law."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xs / (w - 1) - centre[0]) ** 2 + (ys / (h - 1) - centre[1]) ** 2) / 0.5
    if kind == "gaussian":
        return np.exp(np.log(corner) * r2)
    if kind == "cos4":
        return (1 + (corner ** -0.5 - 1) * r2) ** -2
    return 1 - (1 - corner) * r2


def near_the_bottom(frame: np.ndarray) -> np.ndarray:
    """The sample screw in a frame twice its size, its end an eighth of the frame from the bottom edge."""
    h, w = frame.shape
    return cv2.copyMakeBorder(frame, h, 0, w // 2, w // 2, cv2.BORDER_REPLICATE)


def lit(frame: np.ndarray, light: np.ndarray) -> np.ndarray:
    return np.clip(frame * light, 0, 1).astype(np.float32)


def test_a_screw_near_a_dark_corner_is_found_where_it_lies(frame):
    from inspector.lighting import background_light, evened
    from inspector.preprocess import POSE_WORKING_SIZE, _part_blob, shrink

    plain = near_the_bottom(frame)
    vignetted = lit(plain, falling_off(plain.shape, 0.35))  # steeper than the line nuisance's 0.55-0.75
    # Under the light the part's intensities are measured against, the dark corners join the screw:
    small = shrink(vignetted, POSE_WORKING_SIZE / max(vignetted.shape))
    with pytest.raises(ImageError, match="touches the frame's edge"):
        _part_blob(evened(small, background_light(small)), True, None)
    # the second look, under the light followed into the corners, finds it where it lies.
    expected, found = locate_part(plain, CHECKED).pose, locate_part(vignetted, CHECKED).pose
    assert np.hypot(*np.subtract(found.centre, expected.centre)) < 3  # of a screw 230 pixels long
    assert abs(found.angle - expected.angle) < 1 and abs(found.length / expected.length - 1) < 0.03


@pytest.mark.parametrize("kind, corner, centre", [("square", 0.35, (0.5, 0.5)), ("gaussian", 0.35, (0.6, 0.4)),
                                                  ("cos4", 0.35, (0.6, 0.4))])
def test_a_screw_cut_by_the_edge_under_steep_light_is_still_not_in_view(frame, kind, corner, centre):
    # A light the second look's surface does not fit (a Gaussian fall-off) once lit the cut end
    # away, and the rest of the screw was judged.
    h, w = frame.shape
    big = cv2.copyMakeBorder(frame, h // 2, h // 2, w // 2, w // 2, cv2.BORDER_REPLICATE)
    cut = np.roll(np.roll(big, 170, 0), -160, 1)  # the screw's end past the bottom edge (the roll's wrap is background)
    with pytest.raises(ImageError, match="part not in view: it touches the frame's edge"):
        prepare(cut, CHECKED)
    with pytest.raises(ImageError, match="part not in view: it touches the frame's edge"):
        prepare(lit(cut, falling_off(cut.shape, corner, kind, centre)), CHECKED)


@pytest.mark.parametrize("kind", ["square", "gaussian", "cos4"])
def test_a_frame_with_no_part_under_steep_light_is_not_taken_for_a_part(frame, kind):
    blank = (0.75 + np.random.default_rng(2).normal(0, 0.01, (1024, 1024))).astype(np.float32)
    with pytest.raises(ImageError, match="no part found|part not in view"):
        prepare(lit(blank, falling_off(blank.shape, 0.55, kind)), CHECKED)


def painted_line_frame(frame: np.ndarray):
    """The sample screw at the line camera's 1024 px, with a bright pit painted on its shank:
    the frame and the pit's place (x, y)."""
    big = cv2.resize(frame, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    pose = locate_part(big, CHECKED).pose
    direction = np.array([np.cos(np.radians(pose.angle)), np.sin(np.radians(pose.angle))])
    x, y = (np.array(pose.centre) - 0.1 * pose.length * direction).astype(int)  # the shank, near the middle
    cv2.circle(big, (int(x), int(y)), 14, float(big.max()), -1)
    return big, (int(x), int(y))


def test_the_crop_matrix_says_where_a_point_of_the_photo_is_in_the_crop(frame):
    marked, (x, y) = painted_line_frame(frame)
    prepared = prepare_frame(marked, CHECKED)
    # Where the pit really is in the crop: the brightest blob of the crop...
    plain = prepare_frame(cv2.resize(frame, (1024, 1024), interpolation=cv2.INTER_CUBIC), CHECKED).array
    found = np.unravel_index(np.argmax(cv2.GaussianBlur(prepared.array - plain, (0, 0), 1.5)), plain.shape)
    # ...is where the matrix maps the painted point, and the preview's matrix agrees.
    mapped = prepared.matrix @ np.array([x, y, 1.0])
    assert abs(mapped[0] - found[1]) <= 2 and abs(mapped[1] - found[0]) <= 2
    factor = prepared.preview.shape[0] / marked.shape[0]
    assert prepared.preview.shape == (512, 512)  # the photo's picture: the frame shrunk to PREVIEW_SIZE
    np.testing.assert_allclose(prepared.preview_matrix @ np.array([x * factor, y * factor, 1.0]), mapped, atol=1e-6)


def test_the_heat_on_the_photo_lies_on_a_defect_painted_on_the_photo(frame, tmp_path):
    from inspector.bundle import load_bundle
    from inspector.usecases.training import load_folder, train_bundle

    pipeline = resolve_pipeline("screw-memory")
    train_bundle(load_folder(SAMPLE / "train" / "good", pipeline), tmp_path / "m", pipeline)
    marked, (x, y) = painted_line_frame(frame)
    cv2.imwrite(str(tmp_path / "pit.png"), (marked * 255).astype(np.uint8))
    with Inferencer(load_bundle(tmp_path / "m")) as inferencer:
        result = next(inferencer.judge([tmp_path / "pit.png"], keep_maps=True))
        inferencer.write_pictures(result, tmp_path / "h.png", tmp_path / "o.jpg", tmp_path / "c.png")
    assert result.verdict == "defect"
    preview, matrix = result.frame
    overlay = cv2.imread(str(tmp_path / "o.jpg"))
    assert overlay.shape[:2] == preview.shape == (512, 512)  # the photo, shrunk to 512 px
    assert cv2.imread(str(tmp_path / "c.png")).shape[:2] == (64, 192)  # the upright crop
    heat = on_frame(result.error_map, matrix, preview.shape)
    hot_y, hot_x = np.unravel_index(np.argmax(heat), heat.shape)
    assert abs(hot_x - x / 2) <= 8 and abs(hot_y - y / 2) <= 8  # 1024 px -> 512 px
    # The hot region is outlined on the photo, around the painted pit (radius 14 px, 7 px shrunk):
    # the outline's magenta pixels, and nowhere far from the pit.
    outline = np.argwhere((overlay[..., 1] < 90) & (overlay[..., 0] > 170) & (overlay[..., 2] > 170))
    assert len(outline) > 10
    (top, left), (bottom, right) = outline.min(axis=0), outline.max(axis=0)
    assert left <= x / 2 - 5 and right >= x / 2 + 5 and top <= y / 2 - 5 and bottom >= y / 2 + 5
    assert right - left < 120 and bottom - top < 120  # the pit, not the whole screw
    # One hot region, stored in the photo's own pixels (1024 px): its box holds the pit.
    with Inferencer(load_bundle(tmp_path / "m")) as inferencer:
        [region] = inferencer.regions(result)
    bx, by, bw, bh = region["box"]
    assert bx <= x <= bx + bw and by <= y <= by + bh
    assert bw < 200 and bh < 200 and 0 < region["area_px"] < bw * bh
    assert region["peak"] > inferencer.bundle.threshold and region["area_mm2"] is None


def test_heat_drawn_only_where_it_shows_is_the_picture_drawn_under_the_whole_crop(frame):
    from inspector.pictures import GOOD_SHARE, blend, frame_overlay_image, heat_layer
    from inspector.preprocess import crop_corners

    prepared = prepare_frame(frame, CHECKED)
    preview, matrix = prepared.preview, prepared.preview_matrix
    rng = np.random.default_rng(3)
    quiet = rng.uniform(0, GOOD_SHARE * 0.9, (64, 192)).astype(np.float32)  # a good part: no heat shows
    hot = quiet.copy()
    hot[20:26, 40:50] = 1.5  # one hot spot
    for error_map in (quiet, hot):
        picture = frame_overlay_image(preview, matrix, error_map, 1.0)
        if picture.ndim == 2:  # nothing in colour: drawn in grey
            picture = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR)
        # The reference: the heat warped onto the whole photo and blended everywhere, the crop outlined.
        whole = blend(cv2.cvtColor(preview, cv2.COLOR_GRAY2BGR),
                      *heat_layer(on_frame(error_map, matrix, preview.shape), 1.0))
        corners = crop_corners(matrix, (192, 64))
        cv2.polylines(whole, [np.round(corners * 16).astype(np.int32)], True, (160, 160, 160), 1, cv2.LINE_AA, 4)
        assert np.abs(picture.astype(int) - whole.astype(int)).max() <= 3  # interpolation's rounding
    assert frame_overlay_image(preview, matrix, quiet, 1.0).ndim == 2  # grey: no heat at all
    spot = frame_overlay_image(preview, matrix, hot, 1.0)
    assert (spot[..., 2].astype(int) - spot[..., 0] > 30).sum() > 20  # the spot's heat, in red


def _outline_gap(picture: np.ndarray, shrunk: np.ndarray, corners: np.ndarray) -> float:
    """How far from the crop's outline (`corners`, in `picture`'s pixels) the farthest pixel
    that differs from `shrunk` lies."""
    changed = np.argwhere(picture != shrunk)
    assert len(changed) > 100
    outline = corners.astype(np.float32).reshape(-1, 1, 2)
    return max(min(abs(cv2.pointPolygonTest(outline, (float(x), float(y)), True)), 99) for y, x in changed)


def test_a_part_with_no_hot_region_gets_a_small_overlay_grey_when_no_heat_shows(frame, tmp_path):
    """The overlay of a part with no hot region is the photo at PLAIN_SIDE pixels with the crop
    outlined where it lies: grey when no heat shows, with its heat in colour where it does; a
    part with a hot region keeps the preview's size."""
    from inspector.pictures import GOOD_SHARE, PLAIN_SIDE, frame_overlay_image, heatmap_image, to_frame, write_heatmaps
    from inspector.preprocess import crop_corners

    big = cv2.resize(frame, (1024, 1024), interpolation=cv2.INTER_CUBIC)  # a line camera's photo
    prepared = prepare_frame(big, CHECKED, original=(np.clip(big, 0, 1) * 255).astype(np.uint8))
    preview, matrix = prepared.preview, prepared.preview_matrix
    assert preview.shape == (512, 512)
    quiet = np.full((64, 192), GOOD_SHARE * 0.5, np.float32)
    hot = quiet.copy()
    hot[20:26, 40:50] = 1.5

    plain = frame_overlay_image(preview, matrix, quiet, 1.0, plain_side=PLAIN_SIDE)
    assert plain.shape == (PLAIN_SIDE, PLAIN_SIDE) and plain.dtype == np.uint8
    shrunk = cv2.resize(preview, (PLAIN_SIDE, PLAIN_SIDE), interpolation=cv2.INTER_AREA)
    # The crop's outline only, where the crop lies at this size.
    assert _outline_gap(plain, shrunk, crop_corners(matrix, (192, 64)) * PLAIN_SIDE / 512) <= 2.0
    assert frame_overlay_image(preview, matrix, quiet, 1.0).shape == (512, 512)  # no side asked: the preview's

    # Heat and no hot region: PLAIN_SIDE pixels in colour, the heat where the hot spot lies.
    spot = frame_overlay_image(preview, matrix, hot, 1.0, plain_side=PLAIN_SIDE)
    assert spot.shape == (PLAIN_SIDE, PLAIN_SIDE, 3)
    coloured = np.argwhere((spot[..., 0] != spot[..., 1]) | (spot[..., 1] != spot[..., 2]))
    where = to_frame(np.array([[40, 20], [50, 20], [50, 26], [40, 26]], np.float64), matrix).reshape(-1, 2)
    low, high = where.min(axis=0) * PLAIN_SIDE / 512, where.max(axis=0) * PLAIN_SIDE / 512
    assert len(coloured) > 4
    assert (coloured[:, ::-1] >= low - 2).all() and (coloured[:, ::-1] <= high + 2).all()

    model_input = np.zeros((64, 192, 1), np.float32)
    write_heatmaps(model_input, quiet, 1.0, tmp_path / "h.png", tmp_path / "o.jpg", (preview, matrix))
    assert cv2.imread(str(tmp_path / "o.jpg"), cv2.IMREAD_UNCHANGED).shape == (PLAIN_SIDE, PLAIN_SIDE)
    write_heatmaps(model_input, hot, 1.0, tmp_path / "h2.png", tmp_path / "o2.jpg", (preview, matrix))
    assert cv2.imread(str(tmp_path / "o2.jpg"), cv2.IMREAD_UNCHANGED).shape == (PLAIN_SIDE, PLAIN_SIDE, 3)
    # The heatmap PNG: indexed colour (a palette), lossless, the very picture `heatmap_image` draws.
    for name, error_map in (("h.png", quiet), ("h2.png", hot)):
        data = (tmp_path / name).read_bytes()
        assert data[24:26] == bytes([8, 3])  # IHDR: 8 bits, palette
        assert np.array_equal(cv2.imread(str(tmp_path / name)), heatmap_image(error_map, 1.0))

    # A hot region (a part flagged) is drawn in colour at the preview's size, heat or not.
    region = [np.array([[[40, 20]], [[50, 20]], [[50, 26]], [[40, 26]]], np.int32)]
    assert frame_overlay_image(preview, matrix, quiet, 1.0, region, plain_side=PLAIN_SIDE).shape == (512, 512, 3)
    write_heatmaps(model_input, hot, 1.0, tmp_path / "h3.png", tmp_path / "o3.jpg", (preview, matrix),
                   tmp_path / "c3.png", region)
    assert cv2.imread(str(tmp_path / "o3.jpg"), cv2.IMREAD_UNCHANGED).shape == (512, 512, 3)
    assert cv2.imread(str(tmp_path / "c3.png"), cv2.IMREAD_UNCHANGED).shape == (64, 192, 3)
    # A preview that is not square is shrunk to its own aspect (341 rows: 170 at half size, a
    # factor a little under the columns'), the matrix and the outline scaled per axis.
    from inspector.pictures import _shrunk_preview

    wide = cv2.resize(preview, (512, 341), interpolation=cv2.INTER_AREA)
    on_wide = np.asarray(matrix, np.float64).copy()
    on_wide[:, 1] *= 512 / 341
    small_wide = frame_overlay_image(wide, on_wide, quiet, 1.0, plain_side=PLAIN_SIDE)
    assert small_wide.shape == (170, PLAIN_SIDE)
    corners = crop_corners(on_wide, (192, 64)) * [PLAIN_SIDE / 512, 170 / 341]
    assert np.allclose(crop_corners(_shrunk_preview(wide, on_wide, 0.5)[1], (192, 64)), corners, atol=1e-9)
    assert _outline_gap(small_wide, cv2.resize(wide, (PLAIN_SIDE, 170), interpolation=cv2.INTER_AREA), corners) <= 1.5
    # A preview no larger than PLAIN_SIDE is drawn at its own size.
    small = cv2.resize(preview, (200, 150), interpolation=cv2.INTER_AREA)
    scaled = np.asarray(matrix, np.float64).copy()
    scaled[:, 0] *= 512 / 200
    scaled[:, 1] *= 512 / 150
    assert frame_overlay_image(small, scaled, quiet, 1.0, plain_side=PLAIN_SIDE).shape == (150, 200)
