"""`inspector watch --pictures`: which judged parts get their heatmap and overlays."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from inspector.bundle import load_bundle
from inspector.cv_setup import cv2
from inspector.cli import cli
from inspector.daemon import WatchOptions, Watcher
from inspector.inference import Inferencer, Result
from inspector.store import Store
from inspector.web import create_app
from conftest import SAMPLE
from helpers import assert_pictures_exist, heat_top_level, rows


def fill_inbox(inbox):
    """Six sample screws, three good and three defective."""
    inbox.mkdir()
    for kind in ("good", "defect"):
        for path in sorted((SAMPLE / "test" / kind).glob("*.png"))[:3]:
            shutil.copy(path, inbox / f"{kind}_{path.name}")


def split_bundle(bundle_dir, inbox, heat_scale=None):
    """The bundle with its threshold between the third and fourth highest score of the inbox's
    images: three flagged and three passed, whatever the tiny model makes of them; and, given
    `heat_scale` (times the highest error of those images), the error drawn at full red."""
    bundle = load_bundle(bundle_dir)
    with Inferencer(bundle) as inferencer:
        results = list(inferencer.judge(sorted(inbox.iterdir()), keep_maps=True))
    scores = sorted(r.score for r in results)
    bundle.threshold = (scores[2] + scores[3]) / 2
    if heat_scale is not None:
        bundle.calibration["heat_scale"] = heat_scale * max(float(r.error_map.max()) for r in results)
    return bundle


def watch(tmp_path, bundle_dir, choice, heat_scale=None, on_done="move", suffix=".png"):
    inbox, out, db = tmp_path / "inbox", tmp_path / "out", tmp_path / "db.sqlite"
    fill_inbox(inbox)
    if suffix != ".png":  # the same photos in another format
        for path in list(inbox.iterdir()):
            assert cv2.imwrite(str(path.with_suffix(suffix)), cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
            path.unlink()
    store = Store(str(db))
    watcher = Watcher(inbox, split_bundle(bundle_dir, inbox, heat_scale), store,
                      WatchOptions(out=out, batch=8, settle=0.2, pictures=choice, on_done=on_done))
    try:
        watcher.run(install_signals=False, max_idle=2.0)
    finally:
        store.close()
    done = rows(db, "status = 'done'")
    assert len(done) == 6 and len(list(inbox.iterdir())) == (6 if on_done == "keep" else 0)
    assert sorted(row["verdict"] for row in done) == ["defect"] * 3 + ["ok"] * 3
    return done, out, db


def picture_files(out):
    return sorted(p for p in (out / "heatmaps").rglob("*") if p.is_file()) if (out / "heatmaps").exists() else []


def test_flagged_parts_only_get_pictures_and_every_verdict_is_stored(tiny_bundle, tmp_path):
    done, out, db = watch(tmp_path, tiny_bundle, "flagged")
    flagged = [row for row in done if row["verdict"] == "defect"]
    for row in done:
        named = [row["heatmap_path"], row["overlay_path"], row["crop_overlay_path"]]
        if row["verdict"] == "defect":
            assert all(path and (out / path).is_file() for path in named), row["source_name"]
            assert json.loads(row["regions"]), row["source_name"]  # its hot regions, as with every picture
        else:
            assert named == [None, None, None], row["source_name"]
        assert row["score"] is not None and "archive" in row["stored_path"]
    # Three pictures for each flagged part, nothing else under heatmaps/.
    assert len(picture_files(out)) == 3 * len(flagged)

    # QA's page shows a part without pictures by its photo, and serves none for it.
    app = create_app(str(db), out)
    client = app.test_client()
    ok = next(row for row in done if row["verdict"] == "ok")
    page = client.get(f"/inspections/{ok['id']}")
    assert page.status_code == 200
    assert f'<img id="picture" src="/inspections/{ok["id"]}/picture/input"'.encode() in page.data
    assert f"/inspections/{ok['id']}/picture/overlay".encode() not in page.data
    assert client.get(f"/inspections/{ok['id']}/picture/input").status_code == 200
    listing = client.get("/")
    assert f'/inspections/{ok["id"]}/thumbnail'.encode() in listing.data  # its card shows the photo, shrunk
    assert b"not found under" not in listing.data  # the pictures the rows name are where they should be
    assert client.get(f"/inspections/{ok['id']}/picture/overlay").status_code == 404
    bad = flagged[0]
    assert client.get(f"/inspections/{bad['id']}/picture/overlay").status_code == 200
    app.config["STORE"].close()


@pytest.mark.parametrize("choice, pictured", [("none", 0), ("all", 6)])
def test_no_pictures_or_every_part_pictured(tiny_bundle, tmp_path, choice, pictured):
    # Heat drawn at full red at a third of the highest error: every part shows some.
    done, out, db = watch(tmp_path, tiny_bundle, choice, heat_scale=1 / 3)
    assert sum(row["heatmap_path"] is not None for row in done) == pictured
    # Each pictured part's heatmap and overlay on the photo; the upright part's overlay for the
    # three defects only.
    assert len(picture_files(out)) == 2 * pictured + (3 if pictured else 0)
    assert all(json.loads(row["regions"]) for row in done if row["verdict"] == "defect")
    if choice == "all":
        for row in done:
            assert_pictures_exist(row, out)
            assert row["overlay_path"], row["source_name"]
        app = create_app(str(db), out)
        client = app.test_client()
        ok = next(row for row in done if row["verdict"] == "ok")
        bad = next(row for row in done if row["verdict"] == "defect")
        assert client.get(f"/inspections/{ok['id']}/picture/overlay").status_code == 200
        assert client.get(f"/inspections/{ok['id']}/picture/upright").status_code == 404
        assert client.get(f"/inspections/{bad['id']}/picture/upright").status_code == 200
        assert b"not found under" not in client.get("/").data
        app.config["STORE"].close()


def test_a_good_part_with_no_heat_gets_no_overlay(tiny_bundle, tmp_path):
    """Heat drawn at full red at ten times the highest error: no good part shows any, and its
    overlay on the photo, the photo itself, is not written; its heatmap is, and every defect's
    three pictures."""
    done, out, db = watch(tmp_path, tiny_bundle, "all", heat_scale=10)
    for row in done:
        assert_pictures_exist(row, out)
        assert (row["overlay_path"] is None) == (row["verdict"] == "ok"), row["source_name"]
    assert len(picture_files(out)) == 6 + 3 + 3
    ok = next(row for row in done if row["verdict"] == "ok")
    assert heat_top_level(out / ok["heatmap_path"]) <= 255 // 10  # no level above a tenth of the scale

    # QA's page shows such a part by its photo first, its heat a key away; the report by its heatmap.
    app = create_app(str(db), out)
    client = app.test_client()
    page = client.get(f"/inspections/{ok['id']}")
    assert f'<img id="picture" src="/inspections/{ok["id"]}/picture/input"'.encode() in page.data
    assert f'data-src="/inspections/{ok["id"]}/picture/heatmap"'.encode() in page.data
    assert client.get(f"/inspections/{ok['id']}/picture/overlay").status_code == 404
    assert client.get(f"/inspections/{ok['id']}/picture/heatmap").status_code == 200
    assert f'/inspections/{ok["id"]}/thumbnail'.encode() in client.get("/").data
    assert b"not found under" not in client.get("/").data
    app.config["STORE"].close()
    result = CliRunner().invoke(cli, ["report", "--db", str(db), "--out", str(tmp_path / "report"), "--all"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "images" / f"{ok['id']}_heatmap.png").read_bytes() == \
        (out / ok["heatmap_path"]).read_bytes()
    bad = next(row for row in done if row["verdict"] == "defect")
    assert (tmp_path / "report" / "images" / f"{bad['id']}_overlay.jpg").is_file()


@pytest.mark.parametrize("on_done, suffix", [("keep", ".png"), ("move", ".tif")])
def test_a_good_part_gets_its_overlay_when_qa_could_not_see_its_photo(tiny_bundle, tmp_path, on_done, suffix):
    """A photo left in the inbox (outside --out, not served) or in a format browsers do not show
    (TIFF): the overlay on the photo is QA's only view of it, and is drawn, heat or none."""
    done, out, db = watch(tmp_path, tiny_bundle, "all", heat_scale=10, on_done=on_done, suffix=suffix)
    for row in done:
        assert row["overlay_path"] and (out / row["overlay_path"]).is_file(), row["source_name"]
        assert row["source_name"].endswith(suffix)
    assert len(picture_files(out)) == 6 + 6 + 3


def test_the_command_line_takes_the_choice(tiny_bundle, tmp_path):
    inbox, out, db = tmp_path / "inbox", tmp_path / "out", tmp_path / "db.sqlite"
    fill_inbox(inbox)
    result = CliRunner().invoke(cli, ["watch", str(inbox), "--model", str(tiny_bundle), "--db", str(db), "--out", str(out),
                                      "--settle", "0.2", "--exit-when-idle", "3"], env={"INSPECTOR_PICTURES": "none"})
    assert result.exit_code == 0, result.output
    assert len(rows(db, "status = 'done'")) == 6 and picture_files(out) == []


def test_an_unknown_choice_is_refused(tiny_bundle, tmp_path):
    (tmp_path / "inbox").mkdir()
    result = CliRunner().invoke(cli, ["watch", str(tmp_path / "inbox"), "--model", str(tiny_bundle),
                                      "--db", str(tmp_path / "db.sqlite"), "--pictures", "some"])
    assert result.exit_code == 2 and "'some' is not one of 'all', 'flagged', 'none'" in result.output


def test_a_daemon_keeping_its_photos_without_pictures_raises_no_notice(tiny_bundle, tmp_path):
    """With the photos left in the inbox and no picture written, nothing the rows name lies under
    --out: that is not a QA page started on the wrong folder."""
    inbox, out, db = tmp_path / "inbox", tmp_path / "out", tmp_path / "db.sqlite"
    fill_inbox(inbox)
    store = Store(str(db))
    watcher = Watcher(inbox, load_bundle(tiny_bundle), store,
                      WatchOptions(out=out, batch=8, settle=0.2, pictures="none", on_done="keep"))
    try:
        watcher.run(install_signals=False, max_idle=2.0)
    finally:
        store.close()
    assert len(rows(db, "status = 'done'")) == 6
    app = create_app(str(db), out)
    page = app.test_client().get("/")
    assert page.status_code == 200 and b"not found under" not in page.data
    app.config["STORE"].close()


def test_what_counts_as_showing_heat(tiny_bundle):
    """An overlay is drawn for a part with a hot region even where no pixel is above a good
    part's level (a mean score can flag a region so), and for one pixel above that level."""
    with Inferencer(load_bundle(tiny_bundle)) as inferencer:
        scale = inferencer.heat_scale
        quiet = np.full((8, 8), scale * 0.49, np.float32)
        region = np.array([[[1, 1]], [[4, 1]], [[4, 4]]], np.int32)
        assert not inferencer.shows_heat(Result(Path("quiet.png"), "ok", 0.0, error_map=quiet, outlines=[]))
        assert inferencer.shows_heat(Result(Path("region.png"), "ok", 0.0, error_map=quiet, outlines=[region]))
        warm = quiet.copy()
        warm[3, 3] = scale * 0.51
        assert inferencer.shows_heat(Result(Path("warm.png"), "ok", 0.0, error_map=warm, outlines=[]))
