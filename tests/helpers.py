"""Helpers shared by the tests: unique small images, polling the database, a headless Chromium."""

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from inspector.cv_setup import cv2


def png_bytes(seed: int, size: int = 96) -> bytes:
    """A unique grey PNG: smooth noise that differs for every seed."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 255, (size, size), dtype=np.uint8), (0, 0), 3)
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def write_png(path: Path, seed: int, size: int = 96) -> Path:
    path.write_bytes(png_bytes(seed, size))
    return path


def rows(db: Path, where: str = "1=1") -> list[sqlite3.Row]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as conn:
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(f"SELECT * FROM inspections WHERE {where} ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # table not created yet
            return []


def heat_top_level(heatmap: Path) -> int:
    """The highest level (0-255, the palette's index) of an indexed-colour heatmap PNG."""
    with Image.open(heatmap) as image:
        assert image.mode == "P", heatmap
        return int(np.asarray(image).max())


def assert_pictures_exist(row, out: Path = Path()) -> None:
    """The pictures a judged row names are on disk (`out`: the folder they are named relative
    to): its heatmap; its overlay on the photo, but for a part judged ok with no heat above a
    good part's level (half the heat scale: a heatmap level of 127 or less); the overlay on the
    upright part for a defect only."""
    name = row["source_name"]
    assert (out / row["heatmap_path"]).is_file(), (name, "heatmap")
    top = heat_top_level(out / row["heatmap_path"])
    if row["overlay_path"] is None:
        assert row["verdict"] == "ok" and top <= 127, (name, "overlay", top)
    else:
        assert (out / row["overlay_path"]).is_file(), (name, "overlay")
        assert row["verdict"] == "defect" or top >= 127 or json.loads(row["regions"] or "[]"), (name, "overlay", top)
    if row["verdict"] == "defect":
        assert (out / row["crop_overlay_path"]).is_file(), (name, "upright overlay")
    else:
        assert row["crop_overlay_path"] is None, (name, "upright overlay")


def wait_for(condition, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def encoded(suffix: str, seed: int, size: int = 96, params=()) -> bytes:
    """A unique grey image in the format of `suffix` (.png, .jpg, .bmp, .tif)."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 255, (size, size), dtype=np.uint8), (0, 0), 3)
    ok, data = cv2.imencode(suffix, image, list(params))
    assert ok
    return data.tobytes()


def jpeg_with_exif_thumbnail(seed: int) -> tuple[bytes, int]:
    """A JPEG whose EXIF segment (APP1) carries a thumbnail, itself a JPEG ending in FF D9;
    returns the bytes and the offset just past that segment."""
    import struct

    thumbnail = encoded(".jpg", seed + 1, size=16)
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff + thumbnail
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    main = encoded(".jpg", seed)
    data = main[:2] + app1 + main[2:]
    return data, 2 + len(app1)


def evaluate_on_sample(bundle: Path) -> dict:
    """`inspector evaluate --json` of `bundle` on the sample's good and defect test screws."""
    import json

    from click.testing import CliRunner

    from inspector.cli import cli

    sample = Path(__file__).resolve().parent.parent / "sample_data" / "test"
    result = CliRunner().invoke(cli, ["evaluate", str(bundle), "--good", str(sample / "good"),
                                      "--defect", str(sample / "defect"), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def chromium(tmp_path: Path, size: tuple[int, int]):
    """A headless Chromium (Debian's chromium + chromium-driver) whose page is `size` (width,
    height) pixels; quit it when done."""
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={size[0]},{size[1]}", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    if list(inner) != list(size):  # the window's frame, if any, is not the page's
        driver.set_window_size(2 * size[0] - inner[0], 2 * size[1] - inner[1])
    return driver


@contextlib.contextmanager
def qa_server(db: Path, out: Path):
    """The QA page on `db`, serving pictures under `out`, on a free port of 127.0.0.1; yields its URL."""
    from werkzeug.serving import make_server

    from inspector.web import create_app

    app = create_app(str(db), out)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="qa-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()
        app.config["STORE"].close()


TESTS = Path(__file__).resolve().parent


def start_recording_daemon(inbox: Path, bundle: Path, db, out: Path, record: Path, log, *extra: str) -> subprocess.Popen:
    """tests/recording_daemon.py (a daemon with a durable output writing each verdict to `record`)
    as a subprocess, its output into the open file `log`; `extra`: its kill options."""
    return subprocess.Popen([sys.executable, str(TESTS / "recording_daemon.py"), str(inbox), str(bundle), str(db),
                             str(out), str(record), *extra], stdout=log, stderr=subprocess.STDOUT)


def reap(process: subprocess.Popen) -> None:
    """Kill a subprocess the test did not get to stop (it failed first), and wait for it."""
    if process.poll() is None:
        process.kill()
        process.wait()
