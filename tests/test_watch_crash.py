"""The real daemon as a subprocess, killed with SIGKILL twice while 600 images arrive, on SQLite
and on PostgreSQL.

At the end every image has exactly one verdict row, none is missing or duplicated, and every
heatmap, overlay and archived image exists.
"""

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from helpers import assert_pictures_exist, png_bytes, wait_for

SLOW, ATOMIC = 300, 300


def start_daemon(inbox, bundle, db, out, log):
    return subprocess.Popen(
        [sys.executable, "-m", "inspector.cli", "watch", str(inbox), "--model", str(bundle), "--db", str(db),
         "--out", str(out), "--settle", "0.3", "--incomplete-timeout", "3", "--batch", "16",
         "--summary-every", "5"],
        stdout=log, stderr=subprocess.STDOUT,
    )


def write_slowly(inbox: Path, stop: threading.Event):
    """Chunked writes with pauses, as a camera writing straight into the inbox would."""
    for i in range(SLOW):
        data = png_bytes(i)
        with open(inbox / f"slow {i:03d}.png", "wb") as fh:
            for start in range(0, len(data), len(data) // 3 + 1):
                fh.write(data[start:start + len(data) // 3 + 1])
                fh.flush()
                time.sleep(0.02)
        if stop.is_set():
            return


def write_atomically(inbox: Path, stop: threading.Event):
    """Written under a temporary name, then renamed in: the file appears complete."""
    for i in range(ATOMIC):
        tmp = inbox / f".atomic_{i:03d}.png.tmp"
        tmp.write_bytes(png_bytes(10_000 + i))
        os.rename(tmp, inbox / f"atomic_{i:03d}.png")
        time.sleep(0.04)
        if stop.is_set():
            return


def test_sigkill_twice_loses_nothing_and_scores_nothing_twice(tiny_bundle, database_url, tmp_path):
    inbox, out, db = tmp_path / "inbox", tmp_path / "out", database_url
    inbox.mkdir()
    engine = create_engine(database_url)

    def rows(url, where="1=1"):
        try:
            with engine.connect() as conn:
                return conn.execute(text(f"SELECT * FROM inspections WHERE {where} ORDER BY id")).mappings().all()
        except Exception:  # the schema is not there yet
            return []

    seed = random.SystemRandom().randrange(1 << 30)  # keras seeds the global generator
    rng = random.Random(seed)
    print(f"kill schedule seed {seed}")
    log = open(tmp_path / "daemon.log", "wb")
    stop = threading.Event()
    writers = [threading.Thread(target=write_slowly, args=(inbox, stop)),
               threading.Thread(target=write_atomically, args=(inbox, stop))]
    daemon = start_daemon(inbox, tiny_bundle, db, out, log)
    try:
        wait_for(lambda: b"watching" in (tmp_path / "daemon.log").read_bytes(), 60, "daemon start-up")
        for w in writers:
            w.start()
        for kill in range(2):
            # Kill at a random moment once this daemon is busy judging images.
            before = len(rows(db))
            wait_for(lambda: len(rows(db)) > before + 10, 60, "the daemon at work")
            time.sleep(rng.uniform(0.0, 1.5))
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(timeout=30)
            pending = len(rows(db, "status = 'pending'"))
            print(f"kill {kill + 1}: {len(rows(db))} rows, {pending} pending")
            daemon = start_daemon(inbox, tiny_bundle, db, out, log)
        for w in writers:
            w.join()
        wait_for(lambda: len(rows(db, "status != 'pending'")) == SLOW + ATOMIC and not any(inbox.iterdir()),
                 240, "every image judged and moved")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, "SIGTERM should drain and exit 0"
    finally:
        stop.set()
        for w in writers:
            if w.is_alive():
                w.join()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()

    everything = rows(db)
    engine.dispose()
    names = [r["source_name"] for r in everything]
    expected = {f"slow {i:03d}.png" for i in range(SLOW)} | {f"atomic_{i:03d}.png" for i in range(ATOMIC)}
    assert len(names) == len(set(names)), "an image has more than one row"
    assert set(names) == expected, f"missing: {sorted(expected - set(names))[:5]} extra: {sorted(set(names) - expected)[:5]}"
    for r in everything:
        assert r["status"] == "done", (r["source_name"], r["error_reason"])
        assert_pictures_exist(r)
        archived = Path(r["stored_path"])
        assert hashlib.sha256(archived.read_bytes()).hexdigest() == r["content_hash"], r["source_name"]
    assert not (out / "rejected").exists() and not (out / "duplicates").exists()
    log_text = (tmp_path / "daemon.log").read_text(errors="replace")
    assert "Traceback" not in log_text, log_text[-3000:]
