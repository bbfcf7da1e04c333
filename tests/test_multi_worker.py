"""Three daemons share one inbox and one database; one is killed with SIGKILL midway.

Each image must end with exactly one verdict, none missing, whatever the backend.
"""

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from helpers import png_bytes, wait_for

IMAGES = 500


def start(inbox, bundle, url, out, station, log):
    return subprocess.Popen(
        [sys.executable, "-m", "inspector.cli", "watch", str(inbox), "--model", str(bundle), "--db", url,
         "--out", str(out), "--station", station, "--batch", "8", "--summary-every", "5"],
        stdout=log, stderr=subprocess.STDOUT,
    )


def test_three_daemons_one_inbox_one_killed(tiny_bundle, database_url, tmp_path):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    engine = create_engine(database_url)

    def count(where="status != 'pending'"):
        try:
            with engine.connect() as conn:
                return conn.execute(text(f"SELECT count(*) FROM inspections WHERE {where}")).scalar()
        except Exception:  # the schema is not there yet
            return 0

    # Migrate once before the three start, as an installation would.
    from inspector.store import Store

    Store(database_url).close()
    log = open(tmp_path / "daemons.log", "wb")
    daemons = {name: start(inbox, tiny_bundle, database_url, out, name, log) for name in ("s1", "s2", "s3")}
    try:
        time.sleep(6)  # TensorFlow start-up
        for i in range(IMAGES):
            tmp = inbox / f".{i}.tmp"
            tmp.write_bytes(png_bytes(50_000 + i))
            tmp.rename(inbox / f"part_{i:03d}.png")
            if i == IMAGES // 3:
                wait_for(lambda: count() > 50, 60, "work under way")
                daemons["s2"].send_signal(signal.SIGKILL)
                daemons["s2"].wait(timeout=30)
        wait_for(lambda: count() == IMAGES and not any(inbox.iterdir()), 240, "every image judged by the survivors")
        for name in ("s1", "s3"):
            daemons[name].send_signal(signal.SIGTERM)
            assert daemons[name].wait(timeout=60) == 0
    finally:
        for process in daemons.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        log.close()

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM inspections")).mappings().all()
    engine.dispose()
    names = [r["source_name"] for r in rows]
    assert len(names) == len(set(names)) == IMAGES
    assert set(names) == {f"part_{i:03d}.png" for i in range(IMAGES)}
    for r in rows:
        assert r["status"] == "done", (r["source_name"], r["error_reason"])
        assert Path(r["heatmap_path"]).is_file()
        assert hashlib.sha256(Path(r["stored_path"]).read_bytes()).hexdigest() == r["content_hash"]
    stations = {r["station"] for r in rows}
    log_text = (tmp_path / "daemons.log").read_text(errors="replace")
    print({s: sum(r["station"] == s for r in rows) for s in sorted(stations)},
          "takeovers:", log_text.count("taking over"))
    assert {"s1", "s3"} <= stations  # the survivors shared the work
    assert not (out / "duplicates").exists() and not (out / "rejected").exists()
    assert "Traceback" not in log_text


def _pending_row(url, path: Path, worker: str, claimed_seconds_ago: float) -> int:
    from datetime import timedelta

    from inspector.store import Inspection, Store, utcnow

    store = Store(url)
    with store.session() as s, s.begin():
        row = Inspection(source_path=str(path), source_name=path.name,
                         content_hash=hashlib.sha256(path.read_bytes()).hexdigest(), status="pending",
                         received_at=utcnow(), worker=worker,
                         claimed_at=utcnow() - timedelta(seconds=claimed_seconds_ago))
        s.add(row)
        s.flush()
        row_id = row.id
    store.close()
    return row_id


def _run_watcher(tiny_bundle, url, inbox, out, claim_timeout, until, timeout=60):
    import threading

    from inspector.bundle import load_bundle
    from inspector.store import Store
    from inspector.daemon import WatchOptions, Watcher

    store = Store(url)
    watcher = Watcher(inbox, load_bundle(tiny_bundle), store,
                      WatchOptions(out=out, claim_timeout=claim_timeout, rescan_every=0.5, station="new"))
    thread = threading.Thread(target=watcher.run, kwargs={"install_signals": False})
    thread.start()
    try:
        return wait_for(until, timeout, "the watcher's verdict")
    finally:
        watcher.stop()
        thread.join()
        store.close()


def _row(url, row_id):
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM inspections WHERE id = :id"), {"id": row_id}).mappings().one()
    engine.dispose()
    return row


def test_claim_of_a_dead_process_is_taken_over_at_once(tiny_bundle, database_url, tmp_path):
    import socket

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    image = inbox / "left behind.png"
    image.write_bytes(png_bytes(77))
    row_id = _pending_row(database_url, image, f"{socket.gethostname()}:999999999:1", 1)
    _run_watcher(tiny_bundle, database_url, inbox, tmp_path / "out", 600,
                 lambda: _row(database_url, row_id)["status"] == "done")
    row = _row(database_url, row_id)
    assert row["station"] == "new" and row["verdict"] in ("ok", "defect")


def test_claim_of_another_host_waits_for_the_timeout(tiny_bundle, database_url, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    image = inbox / "theirs.png"
    image.write_bytes(png_bytes(78))
    row_id = _pending_row(database_url, image, "other-host:123:456", 0)
    started = time.monotonic()
    _run_watcher(tiny_bundle, database_url, inbox, tmp_path / "out", 3.0,
                 lambda: _row(database_url, row_id)["status"] == "done")
    # Not before the other host's claim was 3 s old: a live worker there keeps its image.
    assert time.monotonic() - started >= 3.0
    assert _row(database_url, row_id)["station"] == "new"
