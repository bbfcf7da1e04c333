"""The `general` pipeline under a line's nuisances: uneven light is evened out against the good
images' own light and a camera a little nearer or farther is registered back, while a defect
stays in the model's input."""

import dataclasses

import numpy as np
import pytest

from inspector import nuisance, registration
from inspector.cv_setup import cv2
from inspector.inference import Inferencer
from inspector.models.pipeline_files import pipeline_from_dict
from inspector.preprocess import prepare_frame, read_frame
from inspector.usecases.training import fit_registration, load_images, train_bundle
from inspector.bundle import load_bundle

from test_general import HEIGHT, WIDTH, board, draw_part, moving_part, part_on_board, plain, PART_PLACE, tiny, working, write

INSIDE = (slice(4, -4), slice(4, -4))  # the input's edge: what a zoom brings in from outside


def with_preprocess(**changes):
    data = tiny().to_dict()
    data["preprocess"].update(changes)
    return pipeline_from_dict(data, source="tiny general, changed")


@pytest.fixture(scope="module")
def boards(tmp_path_factory):
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("boards")
    paths = write(root / "good", [part_on_board(rng) for _ in range(24)])
    return {flat: load_images(paths, with_preprocess(flatten_light=flat, zoom_tolerance=0.1)) for flat in (True, False)}


def prepared(images, frame):
    pipeline = images.pipeline
    return prepare_frame(frame, pipeline.preprocess, "frame.png", registration=images.registration).array


def falloff(frame: np.ndarray) -> np.ndarray:
    """Light falling off towards the corners, to 60% there."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    r2 = ((xs / (WIDTH - 1) - 0.5) ** 2 + (ys / (HEIGHT - 1) - 0.5) ** 2) / 0.5
    return frame * (1 - 0.4 * r2)


def test_the_shipped_general_pipeline_evens_light_and_searches_zoom():
    from inspector.models.pipeline_files import resolve_pipeline

    config = resolve_pipeline("general").preprocess
    assert config.flatten_light and config.zoom_tolerance == pytest.approx(0.1)


def test_light_falling_off_is_evened_out_and_a_defect_stays(boards):
    flat, as_is = boards[True], boards[False]
    assert flat.registration.light is not None and as_is.registration.light is None
    rng = np.random.default_rng(12)
    clean = part_on_board(rng)
    dim = falloff(clean)
    off_flat = np.abs(prepared(flat, dim) - prepared(flat, clean)).mean()
    off_as_is = np.abs(prepared(as_is, dim) - prepared(as_is, clean)).mean()
    assert off_flat < 0.01 and off_flat < off_as_is / 4, (off_flat, off_as_is)
    # A blotch on the board, under the same light: still there after the light is evened out.
    blotched = clean.copy()
    cv2.circle(blotched, (20, 80), 5, 0.05, -1)
    change = np.abs(prepared(flat, falloff(blotched)) - prepared(flat, clean))
    height, width = change.shape
    spot = change[int(80 / HEIGHT * height) - 1:int(80 / HEIGHT * height) + 2,
                  int(20 / WIDTH * width) - 1:int(20 / WIDTH * width) + 2]
    assert spot.mean() > 0.15 and spot.mean() > 10 * np.median(change)


def test_a_line_nuisance_of_light_is_evened_out_too(boards):
    flat, as_is = boards[True], boards[False]
    clean = part_on_board(np.random.default_rng(13))
    # A spot a fifth of the frame wide is more than a second-degree surface can follow: in part.
    for name, share in (("light-radial", 0.25), ("light-gradient", 0.25), ("light-spot", 0.8)):
        changed = nuisance.apply(name, clean, 0, "frame.png")
        off_flat = np.abs(prepared(flat, changed) - prepared(flat, clean)).mean()
        off_as_is = np.abs(prepared(as_is, changed) - prepared(as_is, clean)).mean()
        assert off_flat < share * off_as_is, (name, off_flat, off_as_is)


def test_light_is_evened_to_the_good_images_own_not_to_a_flat_one(tmp_path):
    """Good boards all photographed under the same falloff: a board under it is left as it is,
    and one in flat light is brought to it."""
    rng = np.random.default_rng(17)
    paths = write(tmp_path / "good", [falloff(part_on_board(rng)) for _ in range(16)])
    flat = load_images(paths, with_preprocess(flatten_light=True))
    as_is = load_images(paths, with_preprocess(flatten_light=False))
    clean = part_on_board(rng)
    assert np.abs(prepared(flat, falloff(clean)) - prepared(as_is, falloff(clean))).mean() < 0.015
    assert np.abs(prepared(flat, clean) - prepared(as_is, falloff(clean))).mean() < 0.02


def test_a_large_defect_is_left_out_of_the_fitted_light():
    """A dark patch over an eighth of the frame under a falloff: the light is fitted on the cells
    that fit best, so the patch keeps its contrast and the ground comes out even."""
    light = np.full((72, 96), 0.6, np.float32)
    ys, xs = np.mgrid[0:48, 0:64].astype(np.float32)
    scene = np.full((48, 64), 0.6, np.float32)
    scene[4:20, 36:60] *= 0.5
    out = registration.even_light(scene * (1 - 0.4 * ((xs / 63 - 0.5) ** 2 + (ys / 47 - 0.5) ** 2) / 0.5), light)
    ground = np.r_[out[25:, :].ravel(), out[:, :30].ravel()]
    assert out[6:18, 38:58].mean() / np.median(ground) == pytest.approx(0.5, abs=0.03)
    assert ground.std() < 0.02 * ground.mean()


def hot_spot(shape, centre, sigma: float, gain: float) -> np.ndarray:
    """A lamp's hot spot: 1 + `gain` at `centre` (shares of width, height), falling off as a
    Gaussian `sigma` of the width across."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    r2 = (xs / shape[1] - centre[0]) ** 2 + (ys / shape[1] - centre[1] * shape[0] / shape[1]) ** 2
    return 1 + gain * np.exp(-r2 / (2 * sigma**2))


def test_a_hot_spot_is_evened_out_locally_and_a_dark_patch_beside_it_kept():
    """A surface cannot follow a spot a sixth of the frame wide; the local light does, while a
    dark patch (a part missing) stays as dark as it is."""
    light = np.full((72, 96), 0.6, np.float32)
    scene = np.full((48, 64), 0.6, np.float32)
    scene[18:32, 40:56] *= 0.3
    ground = np.ones(scene.shape, bool)
    ground[16:34, 38:58] = False
    spotted = scene * hot_spot(scene.shape, (0.3, 0.35), 0.15, 0.35)

    def unevenness(out):
        return float(np.abs(out[ground] / np.median(out[ground]) - 1).mean())

    surface, local = registration.even_light(spotted, light), registration.even_light(spotted, light, local=True)
    assert unevenness(local) < 0.5 * unevenness(surface) and unevenness(local) < 0.02
    for out in (surface, local):
        assert out[20:30, 42:54].mean() / np.median(out[ground]) == pytest.approx(0.3, abs=0.02)
    # Plain light: the local light changes nothing worth the name.
    assert np.abs(registration.even_light(scene, light, local=True) - scene)[ground].max() < 0.01


@pytest.mark.parametrize("rows, cols", [((21, 27), (28, 36)), ((42, 48), (28, 36))],
                         ids=["amid the frame", "at its edge, away from a corner"])
def test_a_faint_defect_is_not_taken_for_light(rows, cols):
    """A patch 1.4 times as bright (under the factor the local light leaves out) over 2x2 of the
    16x16 cells: the median over the 5x5 cells around each cell leaves it as bright as it is (a
    mean, or 3x3 cells, would take part of it for light). In the frame's corner, where the edge
    cells fill the window several times over, it is not kept (see the registration module)."""
    light = np.full((72, 96), 0.6, np.float32)
    scene = np.full((48, 64), 0.5, np.float32)
    scene[rows[0]:rows[1], cols[0]:cols[1]] *= 1.4
    out = registration.even_light(scene, light, local=True)
    ground = np.ones(scene.shape, bool)
    ground[max(rows[0] - 2, 0):rows[1] + 2, max(cols[0] - 2, 0):cols[1] + 2] = False
    inner = out[rows[0] + 1:rows[1] - 1, cols[0] + 1:cols[1] - 1]
    assert inner.mean() / np.median(out[ground]) == pytest.approx(1.4, abs=0.005)


def test_a_board_under_a_hot_spot_is_prepared_nearly_as_in_plain_light(boards):
    """The local light (which training keeps for a part that moves, below) against the surface only."""
    surface = boards[True]
    images = dataclasses.replace(surface, registration=dataclasses.replace(surface.registration, local_light=True))
    clean = part_on_board(np.random.default_rng(26))
    spotted = np.clip(clean * hot_spot(clean.shape, (0.6, 0.45), 0.15, 0.35), 0, 1)
    off = {name: float(np.abs(prepared(kept, spotted) - prepared(kept, clean))[INSIDE].mean())
           for name, kept in (("local", images), ("surface", surface))}
    assert off["local"] < 0.5 * off["surface"], off


def test_light_over_a_black_ground_is_left_as_it_is():
    """Where the good images are nearly black there is no light to measure."""
    light = np.full((72, 96), 0.005, np.float32)
    frame = np.random.default_rng(21).uniform(0, 0.01, (48, 64)).astype(np.float32)
    assert np.array_equal(registration.even_light(frame, light), frame)


def test_the_local_light_takes_nothing_from_where_the_good_images_are_black():
    """A black band beside a lit ground: its pixels brighter than the good images' there (the
    sensor's noise, within the factor the local light allows) are no light, and stay as they are."""
    light = np.full((72, 96), 0.6, np.float32)
    light[:, :24] = 0.01
    frame = np.full((48, 64), 0.6, np.float32)
    frame[:, :16] = 0.015
    out = registration.even_light(frame, light, local=True)
    assert np.abs(out[:, :12] / 0.015 - 1).max() < 0.02
    assert np.abs(out[:, 20:] / 0.6 - 1).max() < 0.01


def zoomed(frame: np.ndarray, factor: float) -> np.ndarray:
    turn = cv2.getRotationMatrix2D((WIDTH / 2, HEIGHT / 2), 0.0, factor)
    return cv2.warpAffine(frame, turn, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_the_camera_nearer_or_farther_is_registered_back(boards):
    images = boards[True]
    assert images.registration.max_zoom == pytest.approx(0.1)
    unsearched = dataclasses.replace(images, registration=dataclasses.replace(images.registration, max_zoom=0.0))
    clean = part_on_board(np.random.default_rng(14))
    for factor in (0.93, 1.07):
        near = zoomed(clean, factor)
        searched = np.abs(prepared(images, near) - prepared(images, clean))[INSIDE].mean()
        not_searched = np.abs(prepared(unsearched, near) - prepared(unsearched, clean))[INSIDE].mean()
        assert searched < 0.03 and searched < not_searched / 2, (factor, searched, not_searched)


def test_a_part_that_turns_is_registered_back_when_the_camera_is_nearer(tmp_path):
    rng = np.random.default_rng(19)
    moving = registration.measure(working([moving_part(rng) for _ in range(16)]))
    assert moving.max_angle == 180
    searched = dataclasses.replace(moving, max_zoom=0.1)
    frame = draw_part(plain(rng), (60.0, 50.0), 35.0)
    shape = (48, 64)

    def input_of(gray, reg):
        matrix = registration.frame_matrix(gray, reg, shape)
        return cv2.warpAffine(gray, matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    for factor in (0.93, 1.07):
        near = zoomed(frame, factor)
        off = np.abs(input_of(near, searched) - input_of(frame, searched))[INSIDE].mean()
        off_unsearched = np.abs(input_of(near, moving) - input_of(frame, moving))[INSIDE].mean()
        assert off < 0.6 * off_unsearched, (factor, off, off_unsearched)


def test_a_fixed_scene_is_zoomed_but_never_shifted():
    rng = np.random.default_rng(20)
    still = registration.measure(working([draw_part(board(rng), np.array(PART_PLACE), 0.0) for _ in range(8)]))
    assert still.fixed
    searched = dataclasses.replace(still, max_zoom=0.1)
    assert "fixed scene" in searched.motion and "zoom up to 10% searched" in searched.motion
    frame = draw_part(board(rng), np.array(PART_PLACE), 0.0)
    moved = np.roll(frame, 4, axis=1)  # the part and its board 4 px to the right: not registered back
    matrix = registration.frame_matrix(moved, searched, (48, 64))
    centre = matrix @ np.array([(WIDTH - 1) / 2, (HEIGHT - 1) / 2, 1.0])
    assert centre == pytest.approx([(WIDTH - 1) / 2 * 64 / WIDTH, (HEIGHT - 1) / 2 * 48 / HEIGHT], abs=0.3)
    near = registration.frame_matrix(zoomed(frame, 1.05), searched, (48, 64))
    assert near[0, 0] * WIDTH / 64 == pytest.approx(1 / 1.05, abs=0.004)  # between the 2% steps


def test_a_zoom_search_does_not_hide_a_part_out_of_its_place(boards):
    images = boards[True]
    rng = np.random.default_rng(15)
    there = draw_part(board(rng), np.array(PART_PLACE), 0.0)
    moved = draw_part(board(rng), np.array(PART_PLACE) + (20, 4), 0.0)
    change = np.abs(prepared(images, moved) - prepared(images, there))
    assert change.max() > 0.4  # the part drawn where it is not, the board where it was


def test_a_part_lying_anywhere_is_registered_under_uneven_light_where_it_is_in_plain_light():
    """Matched on flattened working copies, light across the frame does not pull the match."""
    rng = np.random.default_rng(24)
    frames = [moving_part(rng) for _ in range(16)]
    shape = registration.working_shape(frames[0].shape)
    frame = draw_part(plain(rng), (60.0, 50.0), 20.0)
    xs = np.mgrid[0:HEIGHT, 0:WIDTH][1].astype(np.float32)
    lit = [frame * (1 - 0.6 * xs / WIDTH), falloff(frame), nuisance.apply("light-gradient", frame, 0, "frame.png")]
    centre = np.array([31.5, 23.5, 1.0])  # the input's centre, in the frame
    moved = {}
    copies = [registration.working_copy(f, shape) for f in frames]
    for flat in (False, True):
        searched = registration.measure(copies, [registration.working_copy(f, shape, True) for f in frames]
                                        if flat else None)
        assert searched.max_angle == 180 and searched.flat == flat

        def where(gray):
            return cv2.invertAffineTransform(registration.frame_matrix(gray, searched, (48, 64))) @ centre

        moved[flat] = [float(np.hypot(*(where(dim) - where(frame)))) for dim in lit]
    assert max(moved[True]) < 0.05 and sum(moved[False]) > 10 * sum(moved[True]), moved


def test_training_matches_a_part_lying_anywhere_on_flattened_copies(tmp_path):
    rng = np.random.default_rng(25)
    paths = write(tmp_path / "good", [moving_part(rng) for _ in range(12)])
    _, found = fit_registration(paths, with_preprocess(flatten_light=True, zoom_tolerance=0.1))
    frames = [read_frame(path) for path in paths]
    shape = found.reference.shape
    expected = registration.measure([registration.working_copy(f, shape) for f in frames],
                                    [registration.working_copy(f, shape, True) for f in frames])
    assert found.flat and expected.flat and np.allclose(found.reference, expected.reference, atol=1e-5)
    assert found.local_light  # a part on a plain ground: its light evened out locally too
    _, plain_light = fit_registration(paths, with_preprocess(flatten_light=False))
    assert not plain_light.flat and not plain_light.fill and not plain_light.local_light


def test_the_input_beyond_the_frame_is_marked_unseen():
    size = (64, 48)  # the input's (width, height)
    whole = np.diag([64 / WIDTH, 48 / HEIGHT])
    assert registration.seen_share(np.c_[whole, [0, 0]], (HEIGHT, WIDTH), size) is None
    # The frame 3 input pixels to the right: the input's first three columns lie beyond its edge.
    seen = registration.seen_share(np.c_[whole, [3, 0]], (HEIGHT, WIDTH), size)
    assert (seen[:, :3] == 0).all() and (seen[:, 3:] == 1).all()
    # The frame shrunk about the input's centre (a nearer camera registered back): a rim unseen.
    nearer = cv2.getRotationMatrix2D((31.5, 23.5), 0.0, 1 / 1.1) @ np.vstack([np.c_[whole, [0, 0]], [0, 0, 1]])
    seen = registration.seen_share(nearer, (HEIGHT, WIDTH), size)
    assert (seen[:2].max() < 1 and seen[-2:].max() < 1 and seen[:, :2].max() < 1 and seen[:, -2:].max() < 1
            and (seen[5:-5, 5:-5] == 1).all())


def test_what_a_nearer_camera_does_not_see_is_the_good_images_light(tmp_path, monkeypatch):
    """Boards with a dark line just inside the top edge, lit brighter at the top left: a nearer
    camera pushes the line to the frame's edge and loses the ground above it. Registered back,
    the input's top rows are the good images' ground there, not the line repeated (nor the light
    of another corner)."""
    rng = np.random.default_rng(23)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)

    def lined(frame):
        cv2.line(frame, (0, 4), (WIDTH - 1, 4), 0.2, 2)
        return frame * (1 - 0.25 * (xs / WIDTH + ys / HEIGHT))

    paths = write(tmp_path / "good", [lined(part_on_board(rng)) for _ in range(16)])
    images = load_images(paths, with_preprocess(flatten_light=True, zoom_tolerance=0.1))
    clean = lined(part_on_board(rng))
    near = zoomed(clean, 1.09)
    plain_top = prepared(images, clean)[0]
    off = np.abs(prepared(images, near)[0] - plain_top).mean()
    light = images.registration.light
    for other in (light[:, ::-1], light[::-1]):  # the light of the other side: the wrong ground
        turned = dataclasses.replace(images, registration=dataclasses.replace(images.registration, light=other.copy()))
        wrong = np.abs(prepared(turned, near)[0] - plain_top).mean()
        assert wrong > 2 * off, (off, wrong)
    # A bundle saved before the fill repeats the frame's edge, as its model learned.
    saved = {k: v for k, v in images.registration.to_dict().items() if k != "fill"}
    assert images.registration.fill and not registration.Registration.from_dict(saved).fill
    repeated = prepared(dataclasses.replace(images, registration=dataclasses.replace(images.registration, fill=False)),
                        near)
    monkeypatch.setattr("inspector.preprocess.fill_unseen", lambda array, light, seen: array)
    assert np.array_equal(repeated, prepared(images, near))
    assert off < 0.1 and off < np.abs(repeated[0] - plain_top).mean() / 4, (off, repeated[0].mean())


def test_the_registration_keeps_its_light_and_zoom_and_older_bundles_load(boards):
    kept = boards[True].registration
    # A scene that stands still is matched on its plain working copies, the light kept or not.
    assert not kept.flat and not boards[False].registration.flat
    assert not kept.local_light  # nor its light evened out locally
    kept = dataclasses.replace(kept, flat=True, local_light=True)
    again = registration.Registration.from_dict(kept.to_dict())
    assert again.max_zoom == kept.max_zoom and again.flat and np.allclose(again.light, kept.light, atol=1e-4)
    assert again.local_light
    older = {k: v for k, v in kept.to_dict().items() if k not in ("light", "max_zoom", "flat", "fill", "local_light")}
    loaded = registration.Registration.from_dict(older)
    assert loaded.light is None and loaded.max_zoom == 0.0 and not loaded.flat and not loaded.local_light
    for key in ("flat", "fill", "local_light"):
        with pytest.raises(ValueError, match=key):
            registration.Registration.from_dict({**kept.to_dict(), key: "yes"})
    for key in ("fill", "local_light"):
        with pytest.raises(ValueError, match=f"{key} needs"):
            registration.Registration.from_dict({**older, key: True})
    shape = kept.reference.shape
    for light in (np.ones((10, 10)), -np.ones(shape), np.zeros(shape), np.full(shape, np.nan)):
        with pytest.raises(ValueError, match="light"):
            registration.Registration.from_dict({**kept.to_dict(), "light": light.tolist()})
    for zoom in (-0.1, 0.5):
        with pytest.raises(ValueError, match="max_zoom"):
            registration.Registration.from_dict({**kept.to_dict(), "max_zoom": zoom})


def test_a_good_board_under_uneven_light_scores_as_it_did_and_zoomed_far_less_than_unsearched(tmp_path, boards):
    images = boards[True]
    train_bundle(images, tmp_path / "model", images.pipeline, seed=0)
    bundle = load_bundle(tmp_path / "model")
    goods = [part_on_board(np.random.default_rng(seed)) for seed in range(16, 24)]
    clean = goods[0]
    blotched = clean.copy()
    cv2.circle(blotched, (20, 80), 5, 0.05, -1)
    paths = write(tmp_path / "test", [clean, falloff(clean), falloff(blotched), zoomed(clean, 1.06)])
    with Inferencer(bundle) as inferencer:
        plain_score, dim, dim_blotched, near = (r.score for r in inferencer.judge(paths))
        good_scores = [r.score for r in inferencer.judge(write(tmp_path / "goods", goods[1:]))]
    # Good boards in plain light score 2 to 12 on one model, by board and by the training's seed
    # (and so by processor): the board under uneven light is held to their range, not to its own
    # plain score.
    highest_good = max(good_scores + [plain_score])
    assert dim <= highest_good, (dim, plain_score, good_scores)
    assert dim_blotched > 2 * max(plain_score, dim)
    # The zoom found, the inside matches and what the nearer camera no longer sees at the
    # input's edge is the good images' light: as in plain light, far less than unsearched.
    unsearched = dataclasses.replace(bundle, training={**bundle.training, "registration": {
        **bundle.training["registration"], "max_zoom": 0.0}})
    with Inferencer(unsearched) as inferencer:
        (near_unsearched,) = (r.score for r in inferencer.judge(paths[3:]))
    assert near <= highest_good and near < 0.5 * near_unsearched, (
        near, plain_score, good_scores, near_unsearched)
