"""The one inferencer: pre-process, forward, post-process (scores, maps, verdicts), pictures."""

from pathlib import Path

import numpy as np
import pytest

from inspector.bundle import Bundle
from inspector.inference import Inferencer
from inspector.formats import decode
from inspector.preprocess import preprocess
from inspector.settings import Pipeline, PreprocessConfig, ScoringConfig
from inspector.tf_setup import keras
from conftest import SAMPLE

GOOD = sorted((SAMPLE / "test" / "good").glob("*.png"))[:3]


def zero_model(size: int) -> "keras.Model":
    """Outputs zeros: a 'reconstruction' whose squared error is the input squared."""
    inputs = keras.Input(shape=(size, size, 1))
    return keras.Model(inputs, keras.layers.Rescaling(0.0)(inputs))


def bundle(scoring: ScoringConfig, threshold: float, size: int = 64) -> Bundle:
    pipeline = Pipeline(preprocess=PreprocessConfig(size=size, normalize="unit"), scoring=scoring)
    return Bundle(path=Path("unused"), pipeline=pipeline, threshold=threshold, threshold_info={},
                  calibration={"heat_scale": 0.5}, training={}, versions={}, created="", model=zero_model(size))


def test_post_process_scores_maps_and_verdicts_by_hand():
    inputs = np.zeros((3, 4, 4), np.float32)
    outputs = np.zeros((3, 4, 4), np.float32)
    outputs[1, 2, 2] = 0.5  # squared error 0.25: exactly the threshold, not above it
    outputs[2, 0, 1] = 0.6  # 0.36
    with Inferencer(bundle(ScoringConfig(error="squared", reduce="max"), threshold=0.25, size=4)) as inferencer:
        scores, maps, verdicts = inferencer.post_process(inputs, outputs)
    np.testing.assert_allclose(scores, [0.0, 0.25, 0.36])
    assert verdicts == ["ok", "ok", "defect"]  # a defect is strictly above the threshold
    assert maps.shape == (3, 4, 4) and maps[2, 0, 1] == pytest.approx(0.36)


def test_a_caller_that_stops_early_leaves_no_batch_decoding():
    """`judge` decodes the next batch while it scores one; a caller that stops after the first
    result cancels what was not decoded yet instead of leaving it to the threads."""
    import threading
    import time

    with Inferencer(bundle(ScoringConfig(error="squared", reduce="mean"), 1.0), threads=1) as inferencer:
        loaded, load = [], inferencer._load
        lock = threading.Lock()

        def slow_load(source, *args):
            time.sleep(0.2)  # the second batch takes 1.6 s: far longer than scoring the first
            with lock:
                loaded.append(source)
            return load(source, *args)

        inferencer._load = slow_load
        results = inferencer.judge([GOOD[i % 3] for i in range(24)], batch_size=8)
        next(results)  # the first batch scored, the second handed to the decoding thread
        results.close()
        time.sleep(0.6)  # the file being decoded when it stopped is finished
        assert 8 <= len(loaded) < 16, len(loaded)


def test_judge_paths_bytes_and_frames_alike(tmp_path):
    scoring = ScoringConfig(error="squared", reduce="mean")
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    config = PreprocessConfig(size=64, normalize="unit")
    expected = [float(np.mean(preprocess(p, config) ** 2)) for p in GOOD]
    threshold = float(np.median(expected))
    with Inferencer(bundle(scoring, threshold)) as inferencer:
        from_paths = list(inferencer.judge([*GOOD, broken], batch_size=2, keep_maps=True))
        from_bytes = list(inferencer.judge([(p, p.read_bytes()) for p in GOOD], batch_size=8))
        frame = decode(GOOD[0].read_bytes())
        np.testing.assert_array_equal(inferencer.pre_process(frame), preprocess(GOOD[0], config))
        np.testing.assert_array_equal(inferencer.pre_process(GOOD[0]), preprocess(GOOD[0], config))
        inferencer.write_pictures(from_paths[0], tmp_path / "h.png", tmp_path / "o.png")
    assert [r.path for r in from_paths] == [*GOOD, broken]
    np.testing.assert_allclose([r.score for r in from_paths[:3]], expected, rtol=1e-5)
    assert [r.score for r in from_bytes] == [r.score for r in from_paths[:3]]
    assert [r.verdict for r in from_paths[:3]] == ["defect" if s > threshold else "ok" for s in expected]
    first = from_paths[0]
    assert (first.width, first.height) == (256, 256)  # the frame as read, not the model input
    assert first.model_input.shape == first.error_map.shape == (64, 64)
    np.testing.assert_allclose(first.error_map, first.model_input ** 2, rtol=1e-5)
    assert from_paths[3].verdict == "error" and "not a readable image" in from_paths[3].error
    assert (tmp_path / "h.png").stat().st_size > 0 and (tmp_path / "o.png").stat().st_size > 0


def test_only_the_daemon_turns_any_reading_failure_into_an_error_result(monkeypatch):
    import inspector.inference

    def explode(*args, **kwargs):
        raise RuntimeError("decoder bug")

    monkeypatch.setattr(inspector.inference, "read_frames", explode)
    scoring = ScoringConfig(error="squared", reduce="mean")
    with Inferencer(bundle(scoring, 1.0), contain_failures=True) as daemon_side:
        [result] = daemon_side.judge(GOOD[:1])
    assert result.verdict == "error" and result.error == "cannot process image: RuntimeError: decoder bug"
    with Inferencer(bundle(scoring, 1.0)) as strict, pytest.raises(RuntimeError, match="decoder bug"):
        list(strict.judge(GOOD[:1]))


def _float_tiff(value: float) -> bytes:
    from inspector.cv_setup import cv2

    image = np.full((80, 80), 0.5, np.float32)
    image[30:40, 30:40] = value  # on the part
    ok, data = cv2.imencode(".tif", image)
    assert ok
    return data.tobytes()


def test_non_finite_pixels_are_an_error_not_a_verdict():
    """A float TIFF with NaN or inf pixels is an error, never a verdict with no score."""
    with Inferencer(bundle(ScoringConfig(error="squared", reduce="max"), threshold=0.3)) as inferencer:
        results = list(inferencer.judge([(Path("nan.tif"), _float_tiff(np.nan)), (Path("inf.tif"), _float_tiff(np.inf)),
                                         (Path("fine.tif"), _float_tiff(0.2))]))
    for result in results[:2]:
        assert result.verdict == "error" and result.score is None
        assert "non-finite pixel values" in result.error, result.error
    assert results[2].verdict == "ok"


def test_a_non_finite_score_is_never_ok():
    """NaN > threshold is false: a NaN score must still not be ok."""
    nan_bundle = bundle(ScoringConfig(error="distance", reduce="max"), threshold=0.3)
    inputs = keras.Input(shape=(64, 64, 1))
    nan_bundle.model = keras.Model(inputs, keras.layers.Rescaling(float("nan"))(inputs))
    assert nan_bundle.verdict(float("nan")) == "error"
    with Inferencer(nan_bundle) as inferencer:
        [result] = list(inferencer.judge([GOOD[0]]))
    assert result.verdict == "error" and result.score is None and "non-finite score" in result.error


def test_decoding_stays_within_the_pixel_budget(monkeypatch):
    """Images are decoded under a budget of declared pixels shared by the decoding threads, so
    that 16 different 10000x10000 PNGs at once do not take gigabytes."""
    import threading
    import time

    import inspector.inference as inference
    from inspector.cv_setup import MAX_PIXELS
    from test_preprocess import huge_png

    lock, in_flight, peak = threading.Lock(), [0], [0]

    def decode_slowly(source, exposure=None, path=None):  # declares 10000x10000; decoded as a small frame
        with lock:
            in_flight[0] += 10_000 * 10_000
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 10_000 * 10_000
        return np.full((64, 64), 0.5, np.float32), None

    monkeypatch.setattr(inference, "read_frames", decode_slowly)
    sources = [(Path(f"{i}.png"), huge_png(10_000, 10_000)) for i in range(8)]
    with Inferencer(bundle(ScoringConfig(error="squared", reduce="max"), threshold=0.3), threads=4) as inferencer:
        results = list(inferencer.judge(sources, batch_size=8))
    assert [r.verdict for r in results] == ["ok"] * 8
    assert peak[0] <= MAX_PIXELS, f"{peak[0] / 1e6:.0f} megapixels decoded at once"


@pytest.mark.parametrize("reduce", ["max", "smoothed_max", "mean"])
def test_the_outlines_of_ok_parts_known_from_their_score_are_those_of_their_maps(reduce):
    from inspector.scoring import hot_contours

    sources = sorted((SAMPLE / "test" / "good").glob("*.png")) + sorted((SAMPLE / "test" / "defect").glob("*.png"))
    scoring = ScoringConfig(error="squared", reduce=reduce)
    with Inferencer(bundle(scoring, 1.0)) as probe:
        scores = sorted(r.score for r in probe.judge(sources))
    threshold = scores[len(scores) // 2]  # half the parts ok, half defects
    with Inferencer(bundle(scoring, threshold)) as inferencer:
        results = list(inferencer.judge(sources, keep_maps=True))
        assert {r.verdict for r in results} == {"ok", "defect"}
        for r in results:
            expected = hot_contours(r.error_map, threshold, scoring, defect=r.verdict == "defect")
            found = inferencer.outlines(r)
            assert len(found) == len(expected) and all(np.array_equal(a, b) for a, b in zip(found, expected))
            assert (inferencer.regions(r) == []) == (not expected)
