import json
import re

import pytest
from click.testing import CliRunner

from inspector.cli import cli
from inspector.store import Inspection, Store


REGION = {"box": [310, 402, 24, 18], "outline": [[310, 402], [334, 402], [334, 420]], "area_px": 301.5,
          "area_mm2": 0.754, "peak": 1.75, "mean": 0.98}


@pytest.fixture
def db(tmp_path):
    """A database with three judged parts, one flagged with a hostile file name."""
    path = tmp_path / "db.sqlite"
    overlay = tmp_path / "o.png"
    overlay.write_bytes(b"\x89PNG fake")
    store = Store(str(path))
    with store.session() as s, s.begin():
        s.add_all([
            Inspection(source_path="/in/a.png", source_name="a.png", content_hash="a" * 64, status="done",
                       verdict="ok", score=0.1, threshold=0.5),
            Inspection(source_path="/in/b.png", source_name="<script>alert(1)</script>.png", content_hash="b" * 64,
                       status="done", verdict="defect", score=0.9, threshold=0.5, overlay_path=str(overlay),
                       heatmap_path="/out/h.png", regions=[REGION]),
            Inspection(source_path="/in/c.png", source_name="c.png", content_hash="c" * 64, status="error",
                       verdict="error", error_reason="empty file"),
        ])
    store.close()
    return path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_list_flagged_as_table_and_json(db):
    result = run("review", "list", "--db", db, "--flagged")
    assert result.exit_code == 0, result.output
    assert "<script>alert(1)</script>.png" in result.output and "a.png" not in result.output
    data = json.loads(run("review", "list", "--db", db, "--json").stdout)
    assert [d["verdict"] for d in data] == ["error", "defect", "ok"]
    assert data[0]["error_reason"] == "empty file"


def test_list_since_rejects_nonsense(db):
    result = run("review", "list", "--db", db, "--since", "last tuesday")
    assert result.exit_code == 1 and "cannot read --since" in result.output
    assert json.loads(run("review", "list", "--db", db, "--since", "1h", "--json").stdout)


def test_show_and_label(db):
    shown = run("review", "show", "2", "--db", db)
    assert shown.exit_code == 0 and "overlay_path" in shown.output and "0.9" in shown.output
    labelled = run("review", "label", "2", "ok", "--note", "dust", "--reviewer", "qa1", "--db", db)
    assert labelled.exit_code == 0, labelled.output
    data = json.loads(run("review", "show", "2", "--db", db, "--json").stdout)
    assert data["review"] == "dismissed"
    assert data["reviews"][0] == {**data["reviews"][0], "label": "ok", "reviewer": "qa1", "note": "dust"}
    assert "hot region     24x18 at (310, 402), 302 px (0.754 mm2), peak 1.75, mean 0.98" in shown.output
    assert data["regions"] == [REGION]
    missing = run("review", "label", "99", "defect", "--db", db)
    assert missing.exit_code == 1 and "no inspection with id 99" in missing.output


def test_report_escapes_names_and_copies_overlays(db, tmp_path):
    result = run("report", "--db", db, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in page
    assert (tmp_path / "report" / "images" / "2_overlay.png").is_file()
    assert "a.png" not in page  # only flagged parts


def test_report_says_each_verdict_in_words(db, tmp_path):
    result = run("report", "--db", db, "--out", tmp_path / "report", "--all")
    assert result.exit_code == 0, result.output
    text = re.sub(r"<[^>]+>", "", (tmp_path / "report" / "index.html").read_text())
    assert "judged defect" in text and "judged ok" in text
    assert text.count("1 hot region, largest 302 px") == 1  # the flagged part's, in its card
    parts = json.loads(run("report", "--db", db, "--out", tmp_path / "r2", "--all", "--json").stdout)["parts"]
    assert [p["regions"] for p in parts if p["id"] == 2] == [[REGION]]


def test_stats_per_station_and_model(database_url):
    """Rates over the time the daemons ran (their run spans), not from first to last verdict."""
    from datetime import datetime, timedelta

    from inspector.store import ModelRecord, Run

    store = Store(database_url)
    start = datetime(2026, 11, 23, 8, 0, 0)
    with store.session() as s, s.begin():
        model = ModelRecord(fingerprint="f" * 16, name="screw", path="/m", threshold=0.5)
        s.add(model)
        s.flush()
        for i in range(10):  # line1: 10 parts, scores 0.0 .. 0.9, two defects, one error
            verdict = "error" if i == 0 else ("defect" if i >= 8 else "ok")
            s.add(Inspection(source_path=f"/in/{i}", source_name=f"{i}.png", content_hash=f"{i:064d}",
                             status="error" if i == 0 else "done", verdict=verdict,
                             score=None if i == 0 else i / 10, model_id=model.id, station="line1",
                             received_at=start + timedelta(seconds=i), scored_at=start + timedelta(seconds=i)))
        s.add(Inspection(source_path="/in/x", source_name="x.png", content_hash="x" * 64, status="done",
                         verdict="ok", score=0.2, model_id=model.id, station="line2", scored_at=start,
                         received_at=start))
        # line1 ran 20 s in all: two daemons overlapping for 5 s (15 s), then a restart (5 s).
        for begin, end in ((-5, 5), (0, 10), (30, 35)):
            s.add(Run(worker=f"h:{begin}:1", station="line1", model_id=model.id, started_at=start + timedelta(seconds=begin),
                      last_seen_at=start + timedelta(seconds=end), stopped_at=start + timedelta(seconds=end)))
    store.close()
    result = run("stats", "--db", database_url, "--json")
    assert result.exit_code == 0, result.output
    line1, line2 = json.loads(result.stdout)
    assert (line1["station"], line1["model"], line1["images"], line1["defects"], line1["errors"]) == ("line1", "screw", 10, 2, 1)
    assert line1["running_s"] == pytest.approx(20.0)
    assert line1["images_per_s"] == pytest.approx(10 / 20)
    assert line1["score_percentiles"]["p50"] == pytest.approx(0.5)  # median of 0.1 .. 0.9
    assert (line2["station"], line2["images"], line2["images_per_s"]) == ("line2", 1, None)  # no run recorded
    since = run("stats", "--db", database_url, "--since", (start + timedelta(seconds=2)).isoformat(), "--json")
    line1 = json.loads(since.stdout)[0]
    assert line1["images"] == 8 and line1["running_s"] == pytest.approx(13.0)
    table = run("stats", "--db", database_url).stdout
    assert "line1" in table and "line2" in table and "images/s" in table


@pytest.mark.parametrize("command", [["review", "list"], ["review", "show", "1"], ["review", "label", "1", "ok"],
                                     ["report", "--out", "r"], ["stats"]])
def test_read_only_commands_do_not_create_a_database(tmp_path, monkeypatch, command):
    """A read-only command where there is no database is an error naming the path, and creates none."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INSPECTOR_DB", raising=False)
    result = run(*command)
    assert result.exit_code == 1
    assert "no database at inspector.db" in result.output
    assert not (tmp_path / "inspector.db").exists()


@pytest.mark.parametrize("command", [["review", "list"], ["stats"]])
def test_one_shot_commands_fail_fast_on_a_database_that_cannot_be_opened(command):
    """One clear line and exit code 1, neither 'database busy' for ever nor a traceback."""
    for url, says in (("postgresql+psycopg://qa@no-such-host.invalid/x", "cannot open database"),
                      ("foo://x", "unknown database type 'foo'")):
        result = run(*command, "--db", url)
        assert result.exit_code == 1, result.output
        assert says in result.output and "Traceback" not in result.output


def test_stats_drift_section_against_the_bundles_calibration(tiny_bundle, database_url):
    """The newest passed scores of a station and model against the calibration of the
    bundle the model was loaded from; part-in-view errors against the expected share."""
    from datetime import timedelta

    import numpy as np

    from inspector.bundle import read_metadata
    from inspector.store import ModelRecord, utcnow

    meta = read_metadata(tiny_bundle)
    good = np.array(meta.calibration["good_scores"])
    band = np.quantile(good, 0.95) - np.quantile(good, 0.05)
    calm = np.quantile(good[good <= meta.threshold], np.linspace(0, 1, 20))  # as calibrated
    store = Store(database_url)
    now = utcnow()
    with store.session() as s, s.begin():
        model = ModelRecord(fingerprint=meta.fingerprint, name="tiny", path=str(tiny_bundle), threshold=meta.threshold)
        gone = ModelRecord(fingerprint="0" * 16, name="gone", path="/nowhere", threshold=1.0)
        s.add_all([model, gone])
        s.flush()
        rows = [("calm", score, "ok", None) for score in calm]  # line calm: as calibrated
        rows += [("shifted", score, "ok", None) for score in calm]  # line shifted: calm, then 2 bands higher
        rows += [("shifted", score + 2 * band, "ok", None) for score in calm]
        rows += [("view", score, "ok", None) for score in calm[:14]]  # line view: 6 frames of 20 without a part
        rows += [("view", None, "error", "no part found: nothing stands out from the background")] * 6
        for i, (station, score, verdict, reason) in enumerate(rows):
            s.add(Inspection(source_path=f"/in/{i}", source_name=f"{i}.png", content_hash=f"{i:064d}",
                             status="error" if reason else "done", verdict=verdict, score=score, error_reason=reason,
                             model_id=model.id, station=station, scored_at=now - timedelta(seconds=len(rows) - i)))
        s.add(Inspection(source_path="/in/g", source_name="g.png", content_hash="g" * 64, status="done",
                         verdict="ok", score=0.1, model_id=gone.id, station="calm", scored_at=now))
    store.close()
    result = run("stats", "--db", database_url, "--json", "--drift-window", "20")
    assert result.exit_code == 0, result.output
    by_key = {(r["station"], r["model"]): r["drift"] for r in json.loads(result.stdout)}
    calm, shifted, view = by_key["calm", "tiny"], by_key["shifted", "tiny"], by_key["view", "tiny"]
    assert calm["available"] and not calm["drifting"] and calm["scores"]["count"] == 20
    assert abs(calm["scores"]["shift"]) < 0.05 and calm["last_hour"]["parts"] == 20
    assert shifted["drifting"] and shifted["scores"]["median_shift"] == pytest.approx(2.0, abs=0.01)
    assert shifted["scores"]["band"] == pytest.approx([np.quantile(good, 0.05), np.quantile(good, 0.95)])
    assert view["drifting"] and view["view_errors"]["drifting"] and not view["scores"]["drifting"]
    assert view["view_errors"]["count"] == 6 and view["last_hour"]["view_errors"] == 6
    assert by_key["calm", "gone"] == {"available": False,
                                      "reason": "cannot read the model's bundle: /nowhere: no such model directory"}
    table = run("stats", "--db", database_url, "--drift-window", "20").stdout
    assert "shifted / tiny: DRIFT: passed scores: median" in table and "calm / tiny: no drift" in table
    assert "view / tiny: DRIFT: part-in-view errors 6 of 20 frames (30%)" in table
    assert run("stats", "--db", database_url, "--json", "--drift-window", "0").stdout.count('"drift": null') == 4


def test_stats_count_the_frames_where_the_part_could_not_be_judged(database_url):
    """Part-in-view errors are errors with a reason, counted apart in `stats`."""
    store = Store(database_url)
    reasons = ["no part found: the image is blank", "part not in view: it touches the frame's edge (cut off)",
               "part not in view: 2 parts in the frame; one at a time can be judged", "empty file"]
    with store.session() as s, s.begin():
        for i, reason in enumerate(reasons):
            s.add(Inspection(source_path=f"/in/{i}", source_name=f"{i}.png", content_hash=f"{i:064d}",
                             status="error", verdict="error", error_reason=reason, station="line1"))
        s.add(Inspection(source_path="/in/ok", source_name="ok.png", content_hash="o" * 64, status="done",
                         verdict="ok", score=0.1, station="line1"))
    store.close()
    [line1] = json.loads(run("stats", "--db", database_url, "--json").stdout)
    assert (line1["images"], line1["errors"], line1["not_in_view"]) == (5, 4, 3)
    assert "no view" in run("stats", "--db", database_url).stdout
