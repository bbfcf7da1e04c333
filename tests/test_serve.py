import re
import subprocess
import sys
import urllib.request

from inspector.store import Store


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
