"""The drift measures on made-up scores: shift of passed scores in calibration bands, flagged
and part-in-view rates against the calibrated ones, the daemon's monitor raising once and clearing."""

from types import SimpleNamespace

import numpy as np
import pytest

from inspector import drift


def bundle_like(good, threshold, policy="mean_std", skipped=(), images=None, **info):
    return SimpleNamespace(path="m", threshold=threshold, threshold_info={"policy": policy, **info},
                           calibration={"good_scores": list(good)},
                           training={"skipped": list(skipped), "images": images or len(good)})


GOOD = np.linspace(1.0, 3.0, 41)  # p5 1.1, p95 2.9: one band is 1.8


def test_reference_quantiles_band_and_expected_rates():
    ref = drift.Reference.of(bundle_like(GOOD, threshold=2.5))
    assert ref.median == pytest.approx(np.median(GOOD[GOOD <= 2.5]))
    assert ref.band == pytest.approx(1.8)
    assert ref.false_reject_rate == pytest.approx((GOOD > 2.5).mean())  # mean_std: the calibration's own share
    assert ref.view_error_rate == drift.MIN_RATE
    quantile = drift.Reference.of(bundle_like(GOOD, 2.5, "quantile", false_reject_rate=0.04))
    assert quantile.false_reject_rate == 0.04  # what the policy targets
    skipped = [f"{i}.png: no part found: nothing stands out from the background" for i in range(4)]
    assert drift.Reference.of(bundle_like(GOOD, 2.5, skipped=skipped, images=36)).view_error_rate == pytest.approx(0.1)
    assert drift.Reference.of(bundle_like(GOOD, 9.0)).false_reject_rate == drift.MIN_RATE


def test_score_shift_in_bands_up_or_down_needs_a_full_window():
    ref = drift.Reference.of(bundle_like(GOOD, threshold=3.5))
    same = drift.assess(ref, GOOD[::4][:10], ["ok"] * 10, window=10)
    assert not same["drifting"] and abs(same["scores"]["shift"]) < 0.2
    up = drift.assess(ref, GOOD[::4][:10] + 1.5, ["ok"] * 10, window=10)  # median 1.9 -> 3.4, calibrated 2.0
    assert up["drifting"] and up["scores"]["median_shift"] == pytest.approx(1.4 / 1.8)
    assert "limit 0.5 bands" in up["reasons"][0]
    down = drift.assess(ref, GOOD[::4][:10] - 1.0, ["ok"] * 10, window=10)
    assert down["drifting"] and down["scores"]["median_shift"] < -0.5  # lower scores may hide defects
    assert not drift.assess(ref, GOOD[::4][:9] + 1.5, ["ok"] * 9, window=10)["drifting"]  # 9 < window


def test_flagged_and_view_error_rates_alarm_when_several_times_and_unlikely():
    ref = drift.Reference.of(bundle_like(GOOD, 2.9, "quantile", false_reject_rate=0.04))
    calm = drift.assess(ref, GOOD[:48], ["ok"] * 48 + ["defect"] * 2, window=50)
    assert not calm["drifting"] and calm["flagged"]["count"] == 2
    flagged = drift.assess(ref, GOOD[:40], ["ok"] * 40 + ["defect"] * 10, window=50)
    assert flagged["drifting"] and flagged["flagged"]["drifting"] and not flagged["scores"]["drifting"]
    assert flagged["flagged"]["p_value"] < drift.RATE_P and "flagged 10 of 50 parts (20%)" in flagged["reasons"][0]
    # 3 times the rate but likely by chance in a small window: no alarm.
    assert not drift.assess(ref, GOOD[:8], ["ok"] * 8 + ["defect"] * 2, window=10)["drifting"]
    views = drift.assess(ref, GOOD[:44], ["ok"] * 44 + ["view"] * 6, window=50)
    assert views["view_errors"]["drifting"] and views["view_errors"]["count"] == 6


def test_outcomes_count_part_in_view_errors_only():
    assert drift.outcome("error", "no part found: the image is blank") == drift.VIEW
    assert drift.outcome("error", "part not in view: 2 parts in the frame; one at a time can be judged") == drift.VIEW
    assert drift.outcome("error", "empty file") is None
    assert drift.outcome("ok", None) == "ok" and drift.outcome("defect", None) == "defect"
    rows = [("ok", 1.0, None), ("error", "x", "empty file"), ("defect", 9.0, None), ("ok", 2.0, None),
            ("error", None, "no part found: the image is blank")]  # newest first
    assert drift.windows(rows, 2) == ([2.0, 1.0], ["defect", "ok"])
    assert drift.windows(rows, 10) == ([2.0, 1.0], ["view", "ok", "defect", "ok"])


def test_monitor_warns_once_and_clears_below_the_hysteresis():
    ref = drift.Reference.of(bundle_like(GOOD, threshold=3.5))
    monitor = drift.Monitor(ref, window=10, limit=0.5)
    changes = []
    # Calibrated; 0.78 bands up (drift); 0.42 bands up: below the limit, above 0.8 x limit (still
    # drifting); calibrated again (cleared).
    for shift in (0.0, 1.5, 0.85, 0.0):
        for score in GOOD[::4][:10] + shift:
            monitor.add("ok", score)
            change = monitor.check()
            if change:
                changes.append((shift, change[0]))
    assert changes == [(1.5, "start"), (0.0, "clear")]
    off = drift.Monitor(ref, window=0)
    off.add("ok", 100.0)
    assert off.check() is None


def test_qa_summary_charts_scores_over_time_and_says_which_line_drifts(tiny_bundle, tmp_path):
    """The summary page: scores over time (PNG) with the threshold and the calibration band,
    and a line per station and model saying whether it drifts."""
    from datetime import timedelta

    from inspector.bundle import read_metadata
    from inspector.store import Inspection, ModelRecord, Store, utcnow
    from inspector.web import create_app

    meta = read_metadata(tiny_bundle)
    good = np.array(meta.calibration["good_scores"])
    calm = np.quantile(good[good <= meta.threshold], np.linspace(0, 1, 60))
    store = Store(str(tmp_path / "db.sqlite"))
    now = utcnow()
    with store.session() as s, s.begin():
        model = ModelRecord(fingerprint=meta.fingerprint, name="tiny", path=str(tiny_bundle), threshold=meta.threshold)
        s.add(model)
        s.flush()
        scores = [*calm, *(calm + 3 * (good.max() - good.min()))]  # then far above the calibration
        for i, score in enumerate(scores):
            s.add(Inspection(source_path=f"/in/{i}", source_name=f"{i}.png", content_hash=f"{i:064d}", status="done",
                             verdict="defect" if score > meta.threshold else "ok", score=score,
                             threshold=meta.threshold, model_id=model.id, station="line1",
                             received_at=now - timedelta(minutes=len(scores) - i),
                             scored_at=now - timedelta(minutes=len(scores) - i)))
    store.close()
    app = create_app(str(tmp_path / "db.sqlite"), tmp_path)
    try:
        client = app.test_client()
        chart = client.get("/summary/scores.png?days=1", headers={"Host": "127.0.0.1"})
        assert chart.status_code == 200 and chart.mimetype == "image/png"
        assert chart.data.startswith(b"\x89PNG\r\n\x1a\n") and len(chart.data) > 10_000
        page = client.get("/summary", headers={"Host": "127.0.0.1"}).get_data(as_text=True)
        assert 'src="/summary/scores.png?days=7"' in page
        assert "line1 / tiny:" in page and "DRIFT</b>: flagged 50 of 50 parts (100%)" in page
    finally:
        app.config["STORE"].close()


def test_drift_is_not_judged_until_its_window_is_full():
    """11 flagged of 20 parts against 4% expected looks like drift, and 20 calm parts like none:
    with a window of 50, neither is judged yet, and the summary says how far the window is."""
    ref = drift.Reference.of(bundle_like(GOOD, 2.9, "quantile", false_reject_rate=0.04))
    early = drift.assess(ref, GOOD[:9], ["ok"] * 9 + ["defect"] * 11, window=50)
    assert not early["drifting"] and not early["judged"] and early["parts"] == 20
    assert drift.summary(early) == "20 of 50 parts"
    assert drift.judgement({"available": True, **early}) == ("not judged yet", "20 of 50 parts")
    full = drift.assess(ref, np.resize(GOOD, 48), ["ok"] * 48 + ["defect"] * 2, window=50)
    assert full["judged"] and drift.judgement(full)[0] == "no drift"
    assert "only 48 of 50 passed: not judged yet" in full["scores"]["says"]  # the rates are judged, the shift not
    assert drift.judgement({"available": False, "reason": "no model recorded"}) == ("not assessed", "no model recorded")


def test_the_time_axis_spans_at_least_an_hour_or_the_whole_run():
    from datetime import datetime, timedelta

    from inspector.plots import time_axis

    at = datetime(2026, 12, 5, 10, 0, 0)
    assert time_axis([at, at]) == (at - timedelta(minutes=30), at + timedelta(minutes=30))
    start, end = time_axis([at, at + timedelta(minutes=10)])
    assert end - start == timedelta(hours=1) and start < at and end > at + timedelta(minutes=10)
    start, end = time_axis([at, at + timedelta(hours=5)])
    assert start < at and at + timedelta(hours=5) < end < at + timedelta(hours=5, minutes=10)


def test_a_batch_scored_in_one_second_gets_a_summary_that_tells_the_truth(tiny_bundle, tmp_path):
    """20 parts scored at one instant, 11 flagged (as the demo leaves them): the scores chart
    still draws the calibration band across the plot, and the summary page and `stats` say
    drift is not judged yet instead of "no drift"."""
    from click.testing import CliRunner

    from inspector.bundle import read_metadata
    from inspector.cli import cli
    from inspector.cv_setup import cv2
    from inspector.store import Inspection, ModelRecord, Store, utcnow
    from inspector.web import create_app

    meta = read_metadata(tiny_bundle)
    good = np.array(meta.calibration["good_scores"])
    db = str(tmp_path / "db.sqlite")
    store = Store(db)
    now = utcnow()
    with store.session() as s, s.begin():
        model = ModelRecord(fingerprint=meta.fingerprint, name="tiny", path=str(tiny_bundle), threshold=meta.threshold)
        s.add(model)
        s.flush()
        for i in range(20):
            flagged = i < 11
            s.add(Inspection(source_path=f"/in/{i}", source_name=f"{i}.png", content_hash=f"{i:064d}", status="done",
                             verdict="defect" if flagged else "ok", score=meta.threshold * 2 if flagged else good[i % len(good)],
                             threshold=meta.threshold, model_id=model.id, station="line1", received_at=now,
                             scored_at=now))
    store.close()
    stats = CliRunner().invoke(cli, ["stats", "--db", db])
    assert stats.exit_code == 0, stats.output
    assert "line1 / tiny: drift not judged yet: 20 of 50 parts" in stats.output and "no drift" not in stats.output
    app = create_app(db, tmp_path)
    try:
        client = app.test_client()
        page = client.get("/summary", headers={"Host": "127.0.0.1"}).get_data(as_text=True)
        assert "line1 / tiny:\n  not judged yet: 20 of 50 parts" in page and "no drift" not in page
        chart = client.get("/summary/scores.png", headers={"Host": "127.0.0.1"})
        assert chart.status_code == 200
        image = cv2.imdecode(np.frombuffer(chart.data, np.uint8), cv2.IMREAD_COLOR).astype(int)
    finally:
        app.config["STORE"].close()
    # The band is tab:blue at 15% on white; the columns holding it span the plot, not one instant.
    band = (np.abs(image - [245, 234, 221]).max(axis=2) <= 3).any(axis=0)
    assert band.sum() > 0.7 * image.shape[1]
