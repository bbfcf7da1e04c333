"""Log lines: routine ones at INFO, plain text when not on a terminal, one JSON object per line."""

import json
import logging
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from inspector import logs
from inspector.cli import cli
from inspector.store import Store
from helpers import write_png
from test_cli import with_threshold


@pytest.fixture
def inbox(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    for i in range(3):
        write_png(folder / f"part{i}.png", seed=i)
    (folder / "broken.png").write_text("not an image")
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # watch installs its own
    yield folder
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def watch(inbox, tiny_bundle, *args):
    result = CliRunner().invoke(cli, ["watch", str(inbox), "--model", str(tiny_bundle), "--db",
                                      str(inbox.parent / "db.sqlite"), "--out", str(inbox.parent / "out"),
                                      "--exit-when-idle", "0.5", *args])
    assert result.exit_code == 0, result.output
    return result.stderr.splitlines()


def test_watch_logs_one_json_object_per_line_with_routine_lines_at_info(inbox, tiny_bundle):
    records = [json.loads(line) for line in watch(inbox, tiny_bundle, "--log-format", "json")]
    assert all(set(r) == {"time", "level", "logger", "message"} for r in records)
    by_start = {r["message"].split()[0]: r for r in records}
    assert by_start["watching"]["level"] == "INFO"
    assert by_start["stopped;"]["level"] == "INFO"
    assert by_start["stopped;"]["message"].startswith("stopped; since start (")
    assert "): 4 images, 0 defects, 1 error, " in by_start["stopped;"]["message"]
    assert by_start["broken.png:"]["level"] == "WARNING"
    assert not any(r["message"].startswith("part") for r in records)  # an ok part is a line only with -v


def test_watch_verbose_adds_a_line_per_image_as_plain_text(inbox, tiny_bundle):
    lines = watch(inbox, tiny_bundle, "-v")
    per_image = [line for line in lines if re.search(r" DEBUG part\d\.png: ok score ", line)]
    assert len(per_image) == 3
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", line) for line in lines)


def test_watch_logs_each_defect_at_info_without_verbose(inbox, tiny_bundle, tmp_path):
    strict = with_threshold(tiny_bundle, tmp_path, -1.0)  # every part it judges is a defect
    lines = watch(inbox, strict)
    defects = [line for line in lines if re.search(r" INFO part\d\.png: defect score [\d.e+-]+ threshold -1 "
                                                   r"\(inspection \d+\)$", line)]
    assert len(defects) == 3, lines


def test_watch_summarises_each_interval_once_and_stays_quiet_while_idle(inbox, tiny_bundle):
    lines = watch(inbox, tiny_bundle, "--summary-every", "0.2", "--exit-when-idle", "3")
    pattern = re.compile(r" INFO summary: last ([\d.]+) s: (\d+) images?, 0 defects, (\d+) errors?, [\d.]+ images/s; "
                         r"since start \([\d.]+ s\): (\d+) images?, 0 defects, (\d+) errors?, [\d.]+ images/s$")
    summaries = [pattern.search(line) for line in lines if " summary: " in line]
    assert summaries and all(summaries), lines
    # Each line counts its own interval; the run's count grows to the four images.
    assert sum(int(m.group(2)) for m in summaries) == 4 and all(int(m.group(2)) > 0 for m in summaries)
    assert sum(int(m.group(3)) for m in summaries) == 1
    assert int(summaries[-1].group(4)) == 4 and int(summaries[-1].group(5)) == 1
    assert all(float(m.group(1)) < 1.5 for m in summaries)  # the interval, not the time since the start
    # Idle for 3 s with a summary due every 0.2 s: nothing more is said until the daemon stops.
    assert len(summaries) <= 4


def serve_access_log(tmp_path, log_format):
    """The lines `inspector serve` logs for one page that is not there, with stderr a pipe."""
    db = tmp_path / "db.sqlite"
    Store(str(db)).close()
    process = subprocess.Popen([sys.executable, "-m", "inspector.cli", "serve", "--db", str(db), "--out",
                                str(tmp_path), "--port", "0", "--log-format", log_format],
                               stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stderr.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", banner).group(1)
        with pytest.raises(urllib.error.HTTPError):  # 404: werkzeug colours it on a terminal
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=10)
        access = process.stderr.readline()
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()
    return banner, access


def test_serve_access_log_is_plain_text_in_a_file_or_pipe(tmp_path):
    banner, access = serve_access_log(tmp_path, "text")
    assert " INFO QA page on http://127.0.0.1:" in banner
    assert '"GET /nope HTTP/1.1" 404' in access and "\x1b" not in access


def test_serve_logs_json(tmp_path):
    banner, access = serve_access_log(tmp_path, "json")
    assert json.loads(banner)["message"].startswith("QA page on http://127.0.0.1:")
    record = json.loads(access)
    assert record["logger"] == "werkzeug" and record["level"] == "INFO"
    assert '"GET /nope HTTP/1.1" 404' in record["message"] and "\x1b" not in record["message"]


def test_colour_codes_are_kept_only_on_a_terminal(monkeypatch):
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, "\x1b[33m%s\x1b[0m", ("GET /x 404",), None)

    class Terminal:
        def isatty(self):
            return True

    assert "\x1b[33m" not in logs.TextFormatter().format(record)  # pytest's stderr is no terminal
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert "\x1b[33m" in logs.TextFormatter().format(record)
    assert json.loads(logs.JsonFormatter().format(record))["message"] == "GET /x 404"


def test_json_logs_carry_what_native_libraries_print_on_stderr(tmp_path, tiny_bundle):
    """libpng prints "libpng error: ..." on the process's stderr when OpenCV gives up on a PNG:
    with --log-format json it arrives as a log record, and every line on stderr is JSON."""
    from helpers import png_bytes

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = bytearray(png_bytes(3))
    data[data.index(b"IDAT") + 20] ^= 0xFF  # the image data no longer matches its checksum
    (inbox / "bad_crc.png").write_bytes(bytes(data))
    (inbox / "good.png").write_bytes(png_bytes(4))
    done = subprocess.run(
        [sys.executable, "-m", "inspector.cli", "watch", str(inbox), "--model", str(tiny_bundle), "--db",
         str(tmp_path / "db.sqlite"), "--out", str(tmp_path / "out"), "--exit-when-idle", "1", "--log-format", "json"],
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]  # fails on any line that is not JSON
    native = [r for r in records if r["logger"] == "inspector.native"]
    assert any(r["message"].startswith("libpng error:") and r["level"] == "WARNING" for r in native), records
    assert any("bad_crc.png: error: not a readable image" in r["message"] for r in records), records
