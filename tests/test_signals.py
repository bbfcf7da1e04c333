"""Storms of signals: the real daemon as a subprocess takes hundreds of SIGHUPs in bursts, goes on
judging, and stops on a burst of SIGTERMs, with exit code 0.

A handler that takes a lock (threading.Event.set does) can wait for ever on the lock its own
thread held when the next signal came: the daemon then neither judges nor stops.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from inspector.bundle import load_bundle
from inspector.daemon import WatchOptions, Watcher
from inspector.store import Store
from helpers import rows, wait_for, write_png


def send(pid: int, sig: int, times: int, apart: float = 0.0003) -> None:
    """`times` signals `apart` seconds apart (a fraction of a millisecond: as a shell's kill loop
    sends them; sent closer, the kernel merges them into one). Stops when the process is gone."""
    for _ in range(times):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        time.sleep(apart)


def test_bursts_of_hups_then_terms_neither_freeze_nor_lose_a_file(tiny_bundle, tmp_path):
    inbox, out, db, log_path = tmp_path / "inbox", tmp_path / "out", tmp_path / "db.sqlite", tmp_path / "daemon.log"
    inbox.mkdir()
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "inspector.cli", "watch", str(inbox), "--model", str(tiny_bundle), "--db",
             str(db), "--out", str(out), "--settle", "0.1"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"watching" in log_path.read_bytes(), 60, "daemon start-up")
        storms(daemon, inbox, db)
        code = daemon.wait(timeout=60)
    except Exception as exc:  # what the daemon said, to see why it fell behind or did not stop
        exc.add_note("--- the daemon's log ---\n" + log_path.read_text(errors="replace")[-6000:])
        raise
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    text = log_path.read_text(errors="replace")
    assert code == 0, text
    assert "stopped; " in text, text
    assert sorted(r["source_name"] for r in rows(db)) == ["after.png", "before_0.png", "before_1.png", "before_2.png"]
    assert not any(inbox.iterdir())


def storms(daemon, inbox, db) -> None:
    """Three bursts of SIGHUPs, each after a file, a file after them, then a burst of SIGTERMs."""
    for burst in range(3):
        write_png(inbox / f"before_{burst}.png", seed=burst)
        os.kill(daemon.pid, signal.SIGHUP)
        time.sleep(0.3)  # the reload is under way when the storm comes
        send(daemon.pid, signal.SIGHUP, 200)
        wait_for(lambda: len(rows(db, "status = 'done'")) == burst + 1, 60,
                 f"the file of burst {burst + 1} judged after 200 SIGHUPs")
    write_png(inbox / "after.png", seed=99)
    wait_for(lambda: len(rows(db, "status = 'done'")) == 4, 60, "a file judged after the storms")
    # A storm longer than the stop takes: its tail arrives while the process exits.
    send(daemon.pid, signal.SIGTERM, 300, apart=0.005)


def returns_when_reentered(handler) -> bool:
    """Run `handler` as a signal handler can run: called again in the middle of itself, at each
    line it runs (the next signal arriving there). True if it returns."""

    def tracer(frame, event, arg):
        if event == "line":
            handler()  # a trace function is not traced itself: this call runs straight through
        return tracer

    def run():
        sys.settrace(tracer)
        try:
            handler()
        finally:
            sys.settrace(None)

    thread = threading.Thread(target=run, daemon=True, name="signal-reentered")
    thread.start()
    thread.join(5)
    return not thread.is_alive()


@pytest.mark.parametrize("what", ["stop", "request_reload"])
def test_the_signal_handlers_return_when_a_signal_comes_in_the_middle_of_them(what, tiny_bundle, tmp_path):
    (tmp_path / "inbox").mkdir()
    store = Store(str(tmp_path / "db.sqlite"))
    try:
        watcher = Watcher(tmp_path / "inbox", load_bundle(tiny_bundle), store, WatchOptions(out=tmp_path / "out"))
        assert returns_when_reentered(getattr(watcher, what)), f"{what} froze when entered again"
        assert watcher.stopping if what == "stop" else watcher.reload_wanted
        watcher.inferencer.close()
    finally:
        store.close()
