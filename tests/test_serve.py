import html
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from inspector.store import Inspection, Store

LOCAL = {"Host": "127.0.0.1:8765"}


def test_serve_binds_to_loopback_by_default_and_answers(tmp_path):
    db = tmp_path / "db.sqlite"
    Store(str(db)).close()
    process = subprocess.Popen(
        [sys.executable, "-m", "inspector.cli", "serve", "--db", str(db), "--out", str(tmp_path), "--port", "0"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        banner = process.stderr.readline()
        match = re.search(r"http://(127\.0\.0\.1):(\d+)/", banner)
        assert match, banner
        with urllib.request.urlopen(f"http://127.0.0.1:{match.group(2)}/", timeout=10) as response:
            page = response.read().decode()
        assert response.status == 200 and "No inspections match." in page
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()


def a_line_elsewhere(tmp_path) -> tuple[Path, Path]:
    """A database naming the pictures of one part that a daemon wrote under line1/out."""
    out = tmp_path / "line1" / "out"
    day = out / "heatmaps" / "2026-11-23"
    day.mkdir(parents=True)
    (out / "archive" / "2026-11-23").mkdir(parents=True)
    for name in ("1_a_heatmap.png", "1_a_overlay.jpg"):
        (day / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    (out / "archive" / "2026-11-23" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    db = tmp_path / "db.sqlite"
    store = Store(str(db))
    with store.session() as s, s.begin():
        s.add(Inspection(source_path="/inbox/a.png", source_name="a.png", content_hash="a" * 64, status="done",
                         verdict="defect", score=0.9, threshold=0.5, heatmap_path=str(day / "1_a_heatmap.png"),
                         overlay_path=str(day / "1_a_overlay.jpg"),
                         stored_path=str(out / "archive" / "2026-11-23" / "a.png")))
    store.close()
    return db, out


def test_serve_says_at_start_and_on_every_page_when_the_pictures_are_not_under_out(tmp_path):
    db, line_out = a_line_elsewhere(tmp_path)
    wrong = tmp_path / "inspector-out"
    process = subprocess.Popen(
        [sys.executable, "-m", "inspector.cli", "serve", "--db", str(db), "--out", str(wrong), "--port", "0"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        while not (match := re.search(r"http://127\.0\.0\.1:(\d+)/", lines[-1] if lines else "")):
            lines.append(process.stderr.readline())
            assert lines[-1], lines
        warning = next(line for line in lines if " WARNING " in line)
        assert f"not found under {wrong}" in warning
        assert f"have them under {line_out}." in warning and "--out or INSPECTOR_OUT" in warning
        for page in ("/", "/?verdict=defect&review=unreviewed", "/inspections/1", "/summary"):
            with urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}{page}", timeout=10) as response:
                text = html.unescape(response.read().decode())
            assert f"The pictures the database names are not found under {wrong}" in text, page
            assert "a.png" in text or page == "/summary", page  # the pages still work
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()


def test_no_notice_when_out_holds_the_pictures_and_one_when_they_are_gone(tmp_path, caplog):
    from inspector.web import create_app

    db, line_out = a_line_elsewhere(tmp_path)
    app = create_app(str(db), line_out)
    try:
        assert "pictures-notice" not in app.test_client().get("/", headers=LOCAL).get_data(as_text=True)
    finally:
        app.config["STORE"].close()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    shutil.rmtree(line_out / "heatmaps")
    shutil.rmtree(line_out / "archive")
    app = create_app(str(db), line_out)
    try:
        page = html.unescape(app.test_client().get("/inspections/1", headers=LOCAL).get_data(as_text=True))
    finally:
        app.config["STORE"].close()
    assert f"not found under {line_out}: none of those of the newest inspections is there" in page
    assert any(f"not found under {line_out}" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
