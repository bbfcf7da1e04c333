"""The watcher in-process: each kind of bad input gets its documented outcome, the daemon goes on."""

import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from inspector.bundle import load_bundle
from inspector.store import Store
from inspector.daemon.intake import is_temporary
from inspector.daemon import WatchOptions, Watcher
from conftest import SAMPLE
from helpers import assert_pictures_exist, encoded, png_bytes, rows, wait_for, write_png
from test_preprocess import huge_png


@pytest.fixture
def daemon(tiny_bundle, tmp_path):
    """Start a watcher in a thread; yields a function that starts it, and stops it afterwards."""
    started = []

    def start(on_done="move", settle=0.2, incomplete_timeout=1.0, rescan_every=1.0):
        inbox = tmp_path / "inbox"
        inbox.mkdir(exist_ok=True)
        store = Store(str(tmp_path / "db.sqlite"))
        options = WatchOptions(out=tmp_path / "out", batch=8, on_done=on_done, settle=settle,
                               incomplete_timeout=incomplete_timeout, rescan_every=rescan_every)
        watcher = Watcher(inbox, load_bundle(tiny_bundle), store, options)
        thread = threading.Thread(target=watcher.run, kwargs={"install_signals": False}, name="watcher-under-test")
        thread.start()
        started.append((watcher, thread, store))
        return inbox, tmp_path / "out", tmp_path / "db.sqlite", watcher, thread

    yield start
    for watcher, thread, store in started:
        watcher.stop()
        thread.join(timeout=30)
        store.close()
        assert not thread.is_alive()


def test_temporary_names_are_recognised():
    for name in [".hidden.png", "a.png.tmp", "b.part", "c.PNG.partial", "d.png~"]:
        assert is_temporary(name), name
    for name in ["a.png", "part 1.png", "tmp.png"]:
        assert not is_temporary(name), name


def test_good_images_get_verdicts_heatmaps_and_are_archived(daemon):
    inbox, out, db, watcher, thread = daemon()
    for i in range(5):
        write_png(inbox / f"part{i}.png", seed=i)
    done = wait_for(lambda: len(rows(db, "status='done'")) == 5 and rows(db, "status='done'"), 60, "5 verdicts")
    for row in done:
        assert row["verdict"] in ("ok", "defect")
        assert row["verdict"] == ("defect" if row["score"] > row["threshold"] else "ok")
        assert_pictures_exist(row)
        wait_for(lambda: Path(row["stored_path"]).is_file(), 10, "archived file")
        assert "archive" in row["stored_path"]
    assert list(inbox.iterdir()) == []
    assert thread.is_alive()


def test_each_bad_input_gets_its_documented_outcome_and_the_daemon_stays_up(daemon, tmp_path):
    inbox, out, db, watcher, thread = daemon()
    outside = write_png(tmp_path / "outside.png", seed=99)
    (inbox / "empty.png").write_bytes(b"")
    (inbox / "truncated.png").write_bytes(png_bytes(1)[:300])
    (inbox / "text.png").write_text("a shift report, not an image\n")
    (inbox / "huge.png").write_bytes(huge_png(50_000, 50_000))
    os.symlink(outside, inbox / "link.png")
    write_png(inbox / "pièce n°7 (côté gauche).png", seed=7)
    (inbox / "first name.png").write_bytes(png_bytes(8))
    expected_errors = {
        "empty.png": "empty file",
        "truncated.png": "incomplete PNG file: it ends before its IEND chunk",
        "text.png": "not a readable image",
        "huge.png": "too large (50000x50000",
        "link.png": "symlink to a file outside the inbox",
    }
    wait_for(lambda: len(rows(db, "status != 'pending'")) == 7, 60, "7 outcomes")
    by_name = {r["source_name"]: r for r in rows(db)}
    for name, reason in expected_errors.items():
        row = by_name[name]
        assert row["status"] == "error" and row["verdict"] == "error", name
        assert reason in row["error_reason"], (name, row["error_reason"])
        wait_for(lambda: Path(row["stored_path"]).exists() or Path(row["stored_path"]).is_symlink(), 10, name)
        assert "rejected" in row["stored_path"]
    # The symlink itself was moved aside; the file it pointed to was never touched.
    assert outside.read_bytes() == png_bytes(99)
    assert by_name["pièce n°7 (côté gauche).png"]["status"] == "done"
    assert by_name["first name.png"]["status"] == "done"

    # The same image under a second name: not scored again, moved to duplicates/.
    (inbox / "second name.png").write_bytes(png_bytes(8))
    wait_for(lambda: list((out / "duplicates").rglob("*second name.png")), 30, "duplicate moved aside")
    assert len(rows(db)) == 7
    # A second empty file is a copy of a rejected one: rejected as well, with no second row.
    (inbox / "empty again.png").write_bytes(b"")
    wait_for(lambda: list((out / "rejected").rglob("*empty again.png")), 30, "second empty file rejected")
    assert len(rows(db)) == 7
    # And the daemon is still up: a good image after all that gets its verdict.
    write_png(inbox / "after.png", seed=1234)
    wait_for(lambda: rows(db, "source_name='after.png' AND status='done'"), 30, "verdict after bad inputs")
    assert thread.is_alive()


def test_temporary_file_is_taken_only_after_rename(daemon):
    inbox, out, db, watcher, thread = daemon()
    tmp = inbox / "part.png.part"
    tmp.write_bytes(png_bytes(3))
    write_png(inbox / "marker.png", seed=4)
    wait_for(lambda: rows(db, "source_name='marker.png' AND status='done'"), 30, "marker verdict")
    assert not rows(db, "source_name LIKE 'part.png%'")
    assert tmp.exists()
    tmp.rename(inbox / "part.png")
    wait_for(lambda: rows(db, "source_name='part.png' AND status='done'"), 30, "verdict after rename")


def test_slowly_written_file_waits_until_complete(daemon):
    inbox, out, db, watcher, thread = daemon(settle=0.3, incomplete_timeout=5.0)
    data = png_bytes(5)
    with open(inbox / "slow.png", "wb") as fh:
        for start in range(0, len(data), 2000):
            fh.write(data[start:start + 2000])
            fh.flush()
            threading.Event().wait(0.15)
    row = wait_for(lambda: rows(db, "source_name='slow.png' AND status != 'pending'"), 30, "slow file verdict")[0]
    assert row["status"] == "done" and row["size_bytes"] == len(data)


def test_keep_leaves_files_and_never_rescores(daemon):
    inbox, out, db, watcher, thread = daemon(on_done="keep")
    write_png(inbox / "kept.png", seed=11)
    with open(os.fsencode(inbox) + b"/kept\xff.png", "wb") as fh:  # a name that is not UTF-8
        fh.write(png_bytes(12))
    wait_for(lambda: len(rows(db, "status='done'")) == 2, 30, "verdicts")
    threading.Event().wait(2.5)  # two rescans of the inbox
    assert (inbox / "kept.png").exists()
    assert len(rows(db)) == 2


def test_daemon_waits_for_a_locked_database_and_loses_nothing(daemon):
    inbox, out, db, watcher, thread = daemon()
    write_png(inbox / "before.png", seed=20)
    wait_for(lambda: rows(db, "status='done'"), 30, "first verdict")
    blocker = sqlite3.connect(db, timeout=30)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock
    try:
        for i in range(6):
            write_png(inbox / f"during{i}.png", seed=100 + i)
        threading.Event().wait(4.0)
        assert len(rows(db)) == 1  # nothing could be written meanwhile
    finally:
        blocker.rollback()
        blocker.close()
    wait_for(lambda: len(rows(db, "status='done'")) == 7, 60, "all verdicts after the lock is released")
    assert thread.is_alive()


def disk_full_twice(watcher, monkeypatch) -> list:
    """Writing heatmaps fails twice (a full disk), then works; the list grows with each failure."""
    original, failures = watcher.pictures.write, []

    def flaky(*args):
        if len(failures) < 2:
            failures.append(1)
            raise OSError(28, "No space left on device")
        return original(*args)

    monkeypatch.setattr(watcher.pictures, "write", flaky)
    return failures


def test_a_failing_batch_is_retried_and_the_daemon_keeps_running(daemon, monkeypatch):
    """Writing heatmaps fails (say, a full disk): the image stays, and is judged once it works."""
    inbox, out, db, watcher, thread = daemon()
    failures = disk_full_twice(watcher, monkeypatch)
    write_png(inbox / "unlucky.png", seed=31)
    row = wait_for(lambda: rows(db, "status='done'"), 60, "verdict after the disk recovered")[0]
    assert row["source_name"] == "unlucky.png" and len(rows(db)) == 1
    assert len(failures) == 2 and thread.is_alive()
    wait_for(lambda: not (inbox / "unlucky.png").exists(), 10, "file moved")


def test_a_daemon_quitting_when_idle_first_judges_the_files_a_failed_batch_left(tiny_bundle, tmp_path, monkeypatch):
    """The batch fails twice for a passing reason (a full disk); the inbox is scanned only every
    ten minutes: the file is tried again on its own, and the daemon is not idle before it is judged."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_png(inbox / "unlucky.png", seed=32)
    store = Store(str(tmp_path / "db.sqlite"))
    watcher = Watcher(inbox, load_bundle(tiny_bundle), store,
                      WatchOptions(out=tmp_path / "out", batch=8, settle=0.2, rescan_every=600))
    failures = disk_full_twice(watcher, monkeypatch)
    try:
        watcher.run(install_signals=False, max_idle=1.0)
    finally:
        store.close()
    assert len(failures) == 2 and list(inbox.iterdir()) == []
    (row,) = rows(tmp_path / "db.sqlite")
    assert row["status"] == "done" and row["source_name"] == "unlucky.png"


def _write_slowly(path: Path, data: bytes, pieces: int, pause: float) -> None:
    with open(path, "wb") as fh:
        for i in range(pieces):
            fh.write(data[i * len(data) // pieces:(i + 1) * len(data) // pieces])
            fh.flush()
            if i < pieces - 1:
                threading.Event().wait(pause)


def test_tiff_and_bmp_written_with_long_pauses_are_judged_complete(daemon):
    """Pauses longer than --settle: each format's completeness rule, not settling, decides."""
    inbox, out, db, watcher, thread = daemon(settle=0.2, incomplete_timeout=5.0)
    files = {"slow.tif": encoded(".tif", 41, size=160), "slow.bmp": encoded(".bmp", 42, size=160)}
    writers = [threading.Thread(target=_write_slowly, args=(inbox / name, data, 3, 0.6)) for name, data in files.items()]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    wait_for(lambda: len(rows(db, "status != 'pending'")) == 2, 30, "two verdicts")
    for row in rows(db):
        assert row["status"] == "done", (row["source_name"], row["error_reason"])
        assert row["size_bytes"] == len(files[row["source_name"]])
    assert not (out / "rejected").exists()


@pytest.mark.parametrize("suffix", [".bmp", ".tif"])
def test_a_file_created_empty_and_filled_later_is_judged(daemon, suffix):
    """As `exec 3>f; sleep 1.5; cat img >&3` (or rsync --inplace) writes it."""
    inbox, out, db, watcher, thread = daemon(settle=0.2, incomplete_timeout=5.0)
    (inbox / f"earlier empty{suffix}").write_bytes(b"")  # an empty file left for good, first
    data = encoded(suffix, 43)
    with open(inbox / f"late{suffix}", "wb") as fh:
        threading.Event().wait(1.5)
        fh.write(data)
    row = wait_for(lambda: rows(db, f"source_name='late{suffix}' AND status != 'pending'"), 30, "verdict")[0]
    assert row["status"] == "done" and row["size_bytes"] == len(data)
    wait_for(lambda: not (inbox / f"late{suffix}").exists(), 10, "archived")
    assert not list((out / "rejected").rglob(f"*late{suffix}"))
    # The empty file itself ends as an error once the timeout is over, judged once.
    empty = wait_for(lambda: rows(db, "status = 'error'"), 30, "the empty file's error row")[0]
    assert empty["source_name"] == f"earlier empty{suffix}" and empty["error_reason"] == "empty file"


def test_a_premature_rejection_loses_nothing_when_the_file_completes(daemon):
    """A writer pausing longer than --incomplete-timeout: the unfinished file gets
    an error row and a copy in rejected/; the file stays, and its complete content is judged."""
    import hashlib

    inbox, out, db, watcher, thread = daemon(settle=0.2, incomplete_timeout=1.0)
    data = encoded(".tif", 44, size=160)
    path = inbox / "paused.tif"
    with open(path, "wb") as fh:
        fh.write(data[:len(data) // 3])
        fh.flush()
        first = wait_for(lambda: rows(db, "status = 'error'"), 30, "the unfinished file rejected")[0]
        assert first["error_reason"].startswith("incomplete TIFF file")
        copy = Path(first["stored_path"])
        wait_for(copy.exists, 10, "the copy set aside (after the commit: the row is the truth, files follow)")
        assert "rejected" in str(copy) and copy.read_bytes() == data[:len(data) // 3]
        assert path.exists()  # held: it may still be written
        fh.write(data[len(data) // 3:])
    done = wait_for(lambda: rows(db, "status = 'done'"), 30, "the completed file judged")[0]
    assert done["source_name"] == "paused.tif" and done["content_hash"] == hashlib.sha256(data).hexdigest()
    wait_for(lambda: Path(done["stored_path"]).is_file() and not path.exists(), 10, "archived")
    assert copy.is_file() and len(rows(db)) == 2  # the rejected copy is kept


def test_an_unfinished_file_left_so_is_removed_from_the_inbox_once_its_copy_is_kept(daemon):
    inbox, out, db, watcher, thread = daemon(settle=0.2, incomplete_timeout=0.5)
    (inbox / "cut.png").write_bytes(png_bytes(45)[:500])
    row = wait_for(lambda: rows(db, "status = 'error'"), 30, "error row")[0]
    wait_for(lambda: not (inbox / "cut.png").exists(), 10, "removed after a second timeout")
    assert Path(row["stored_path"]).read_bytes() == png_bytes(45)[:500]


def test_an_unreadable_file_gets_an_error_row_and_is_moved_aside(daemon, monkeypatch):
    """No read permission, as .png or .tif: one rule, no hot retry loop."""
    import errno

    import inspector.daemon.intake
    from inspector.errors import ImageError

    original, attempts = inspector.daemon.intake.read_bytes, []

    def read_bytes(path, follow_symlinks=True):  # root reads a mode 000 file: refuse as EACCES would
        if Path(path).stem == "locked":
            attempts.append(path)
            raise ImageError(path, "cannot read file: Permission denied") from PermissionError(errno.EACCES, "")
        return original(path, follow_symlinks)

    monkeypatch.setattr(inspector.daemon.intake, "read_bytes", read_bytes)
    inbox, out, db, watcher, thread = daemon(settle=0.2, incomplete_timeout=1.0)
    for suffix in (".png", ".tif"):
        (inbox / f"locked{suffix}").write_bytes(encoded(suffix, 46))
    errors = wait_for(lambda: len(rows(db, "status = 'error'")) == 2 and rows(db, "status = 'error'"), 30, "errors")
    for row in errors:
        assert "Permission denied" in row["error_reason"]
        wait_for(lambda: Path(row["stored_path"]).is_file(), 10, "moved aside")
    assert len(attempts) <= 6, len(attempts)
    assert not any(inbox.iterdir())


def test_a_fifo_in_the_inbox_is_refused_and_the_daemon_stays_responsive(daemon):
    """A FIFO renamed over a tracked file does not block the loop in open()."""
    inbox, out, db, watcher, thread = daemon(settle=0.2, incomplete_timeout=5.0)
    (inbox / "part.png").write_bytes(png_bytes(47)[:300])  # unfinished: tracked
    threading.Event().wait(0.3)
    os.mkfifo(inbox / ".fifo")
    os.rename(inbox / ".fifo", inbox / "part.png")
    write_png(inbox / "after.png", seed=48)
    try:
        wait_for(lambda: rows(db, "source_name='after.png' AND status='done'"), 30, "verdict after the FIFO")
        row = wait_for(lambda: rows(db, "source_name='part.png' AND status='error'"), 30, "the FIFO refused")[0]
        assert "not a regular file (a FIFO)" in row["error_reason"]
    finally:  # a loop blocked in open() on the FIFO is let go, so that the test ends
        import time

        deadline = time.monotonic() + 10
        while (inbox / "part.png").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
            try:
                os.close(os.open(inbox / "part.png", os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


@pytest.fixture
def small_out(tmp_path):
    """OUT on a 4 MB tmpfs (root only), most of it taken by a filler file; yields the filler."""
    import subprocess

    out = tmp_path / "out"
    out.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(out)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    filler = out / "filler"
    filler.write_bytes(b"\0" * 2_500_000)
    yield filler
    subprocess.run(["umount", "-l", str(out)], check=True)


def noise_png(seed: int, size: int = 320) -> bytes:
    """A PNG that does not compress: about size * size bytes."""
    import numpy as np

    from inspector.cv_setup import cv2

    ok, data = cv2.imencode(".png", np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8))
    return data.tobytes()


def test_a_full_disk_keeps_files_in_the_inbox_and_recovers_when_space_returns(small_out, daemon):
    """--out on a full 4 MB tmpfs, then space freed: every file is archived, every
    row points at a complete copy (size and SHA-256)."""
    import hashlib

    inbox, out, db, watcher, thread = daemon()
    watcher.intake  # the inbox is on the disk, OUT on the tmpfs: moves are copies
    images = {f"big{i:02d}.png": noise_png(60 + i) for i in range(12)}
    for name, data in images.items():
        (inbox / name).write_bytes(data)
    wait_for(lambda: len(rows(db, "status = 'done'")) >= 2, 60, "some verdicts")
    threading.Event().wait(2.0)  # the disk is full: some files cannot leave the inbox
    stuck = sorted(p.name for p in inbox.iterdir())
    assert stuck, "the tmpfs should have filled up"
    for row in rows(db, "status = 'done'"):  # no row points at a truncated copy
        stored = Path(row["stored_path"])
        assert not stored.exists() or hashlib.sha256(stored.read_bytes()).hexdigest() == row["content_hash"]
    small_out.unlink()  # space returns
    wait_for(lambda: len(rows(db, "status = 'done'")) == 12 and not any(inbox.iterdir()), 60, "recovery")
    for row in rows(db):
        stored = Path(row["stored_path"])
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == row["content_hash"], row["source_name"]
        assert stored.stat().st_size == len(images[row["source_name"]])
    assert not [p for p in out.rglob(".*") if p.is_file()], "a temporary copy was left behind"


def test_the_sqlite_file_deleted_while_running_stops_the_daemon_before_moving_anything(tiny_bundle, tmp_path, caplog):
    """Writing on into the unlinked file and archiving the images would lose their verdicts: the
    daemon stops loudly (ERROR, exit code 1), the image left in the inbox."""
    import signal

    from click.testing import CliRunner

    from inspector.cli import cli

    inbox, out, db = tmp_path / "inbox", tmp_path / "out", tmp_path / "db.sqlite"
    inbox.mkdir()
    write_png(inbox / "first.png", seed=51)

    def saboteur():
        wait_for(lambda: rows(db, "status = 'done'"), 60, "first verdict")
        wait_for(lambda: not (inbox / "first.png").exists(), 10, "first archived")
        for name in ("db.sqlite", "db.sqlite-wal", "db.sqlite-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        write_png(inbox / "second.png", seed=52)

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=saboteur)
    thread.start()
    try:
        result = CliRunner().invoke(cli, ["watch", str(inbox), "--model", str(tiny_bundle), "--db", str(db),
                                          "--out", str(out), "--settle", "0.2", "--exit-when-idle", "15"])
    finally:
        thread.join()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert result.exit_code == 1, result.output
    assert f"the database file {db} was deleted while in use" in result.output
    assert any(r.levelname == "ERROR" and "was deleted" in r.getMessage() for r in caplog.records)
    assert (inbox / "second.png").exists() and not list(out.rglob("*second.png"))


@pytest.mark.parametrize("db, says", [("/nonexistent/dir/x.db", "cannot open database sqlite:////nonexistent/dir/x.db"),
                                      ("foo://x", "unknown database type 'foo'")])
def test_watch_with_a_database_that_cannot_be_opened_exits_at_once(tiny_bundle, tmp_path, db, says):
    """Neither "database busy" for ever nor a traceback: one line, exit code 1."""
    from click.testing import CliRunner

    from inspector.cli import cli

    (tmp_path / "inbox").mkdir()
    result = CliRunner().invoke(cli, ["watch", str(tmp_path / "inbox"), "--model", str(tiny_bundle), "--db", db,
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and says in result.output and result.exception.__class__ is SystemExit


def test_a_name_with_invalid_utf8_is_judged_and_stored_losslessly(daemon):
    """bad\\xff\\xfe.png is judged, and its batch with it, not failed every 10 s."""
    from inspector.names import text_to_path

    inbox, out, db, watcher, thread = daemon()
    bad = os.fsencode(inbox) + b"/bad\xff\xfe.png"
    with open(bad, "wb") as fh:
        fh.write(png_bytes(53))
    write_png(inbox / "good neighbour.png", seed=54)
    done = wait_for(lambda: len(rows(db, "status = 'done'")) == 2 and rows(db, "status = 'done'"), 30, "both judged")
    by_name = {r["source_name"]: r for r in done}
    row = by_name["bad\\xff\\xfe.png"]  # printable for people
    assert os.fsencode(text_to_path(row["source_path"])) == bad  # the real name, byte for byte
    stored = Path(row["stored_path"])
    assert stored.read_bytes() == png_bytes(53) and stored.name == f"{row['id']}_bad\\xff\\xfe.png"
    assert Path(row["heatmap_path"]).is_file()
    wait_for(lambda: not any(inbox.iterdir()), 10, "both archived")


def test_a_very_long_name_gets_bounded_output_names(daemon):
    """A 250-byte name gives output names within 255 bytes; both files of its batch are judged."""
    inbox, out, db, watcher, thread = daemon()
    long_name = "line1_station4_" + "x" * 231 + ".png"
    assert len(long_name.encode()) == 250
    write_png(inbox / long_name, seed=55)
    write_png(inbox / "batch mate.png", seed=56)
    done = wait_for(lambda: len(rows(db, "status = 'done'")) == 2 and rows(db, "status = 'done'"), 30, "both judged")
    row = next(r for r in done if r["source_name"] == long_name)
    # (An overlay is named unless the part is judged ok with no heat to draw.)
    for column in ("heatmap_path", "stored_path") + (("overlay_path",) if row["overlay_path"] else ()):
        name = Path(row[column]).name
        assert len(name.encode()) <= 255 and name.startswith(f"{row['id']}_line1_station4_xxx"), name
        wait_for(lambda: Path(row[column]).is_file(), 10, column)


def test_a_file_that_fails_for_good_gets_an_error_row_and_its_batch_mates_are_judged(daemon, monkeypatch):
    """A batch failing for a reason that will not go away is judged one file at a time; the
    failing file gets an error row with the reason."""
    inbox, out, db, watcher, thread = daemon()
    original = watcher.pictures.write

    def poisoned(result, *pictures):
        if "poison" in result.path.name:
            raise ValueError("heat_scale is not a number: 'x'")
        return original(result, *pictures)

    monkeypatch.setattr(watcher.pictures, "write", poisoned)
    write_png(inbox / "poison.png", seed=61)
    for i in range(3):
        write_png(inbox / f"mate{i}.png", seed=62 + i)
    wait_for(lambda: len(rows(db, "status != 'pending'")) == 4, 30, "four outcomes")
    by_name = {r["source_name"]: r for r in rows(db)}
    poison = by_name.pop("poison.png")
    assert poison["status"] == "error" and "heat_scale is not a number" in poison["error_reason"]
    assert all(r["status"] == "done" for r in by_name.values())
    wait_for(lambda: not any(inbox.iterdir()), 10, "every file out of the inbox")
    assert "rejected" in poison["stored_path"] and Path(poison["stored_path"]).is_file()


def test_an_inbox_deleted_and_recreated_is_watched_again_at_once(daemon, caplog):
    """Without watching the new folder, only the rescan (every 10 s) would find new files."""
    import shutil
    import time

    inbox, out, db, watcher, thread = daemon(rescan_every=600.0)  # events only
    write_png(inbox / "before.png", seed=71)
    wait_for(lambda: rows(db, "status = 'done'"), 30, "first verdict")
    wait_for(lambda: not (inbox / "before.png").exists(), 10, "archived")
    shutil.rmtree(inbox)
    time.sleep(0.5)
    inbox.mkdir()
    time.sleep(0.5)
    write_png(inbox / "after.png", seed=72)
    started = time.monotonic()
    wait_for(lambda: rows(db, "source_name = 'after.png' AND status = 'done'"), 10, "verdict in the new inbox")
    assert time.monotonic() - started < 5
    messages = [r.getMessage() for r in caplog.records]
    assert any("is gone" in m for m in messages) and any("was recreated" in m for m in messages), messages


def test_each_row_records_its_own_processing_time_and_the_run_is_recorded(tiny_bundle, tmp_path, monkeypatch):
    """processing_ms is each image's own time, not its batch's."""
    import time

    import inspector.decode_workers as preparing  # `prepared_item`, in the decoding threads here
    from inspector.store import Run

    real_prepare = preparing.prepare_frame

    def prepare(gray, config, path=None, *rest):
        if path is not None and "slow" in str(path):
            time.sleep(0.4)
        return real_prepare(gray, config, path, *rest)

    monkeypatch.setattr(preparing, "prepare_frame", prepare)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, seed in (("slow.png", 81), ("quick1.png", 82), ("quick2.png", 83)):
        write_png(inbox / name, seed=seed)
    store = Store(str(tmp_path / "db.sqlite"))
    watcher = Watcher(inbox, load_bundle(tiny_bundle), store, WatchOptions(out=tmp_path / "out", quick_settle=0.0))
    try:
        watcher.intake.scan()
        arrivals = watcher.intake.take(10)
        assert len(arrivals) == 3
        watcher.process(arrivals)  # one batch
    finally:
        watcher._pool.shutdown()
        watcher.inferencer.close()
    by_name = {r["source_name"]: r["processing_ms"] for r in rows(tmp_path / "db.sqlite")}
    assert by_name["slow.png"] >= 400, by_name
    assert by_name["quick1.png"] < 300 and by_name["quick2.png"] < 300, by_name
    # The daemon records when it ran, for the rates of `inspector stats`.
    watcher = Watcher(inbox, load_bundle(tiny_bundle), store, WatchOptions(out=tmp_path / "out"))
    watcher.run(install_signals=False, max_idle=0.5)
    with store.session() as s:
        [recorded] = s.query(Run).all()
    assert recorded.stopped_at is not None and recorded.stopped_at >= recorded.started_at
    assert recorded.station == watcher.options.station and recorded.model_id == watcher.model_id
    store.close()


def test_reload_switches_between_batches_and_a_bundle_that_fails_keeps_the_old_model(tiny_bundle, tiny_pipeline_file,
                                                                                      tmp_path, caplog):
    """SIGHUP (`request_reload`) loads --model again, a symlink resolved anew; a bundle
    that does not load is an ERROR and the old model goes on judging."""
    import json
    import logging

    from click.testing import CliRunner

    from inspector.cli import cli
    from inspector.store import Run

    caplog.set_level(logging.INFO, logger="inspector.watch")
    other = tmp_path / "models" / "other"
    result = CliRunner().invoke(cli, ["train", str(SAMPLE / "train" / "good"), "--out", str(other), "--pipeline",
                                      str(tiny_pipeline_file), "--seed", "2"])
    assert result.exit_code == 0, result.output
    broken = tmp_path / "models" / "broken"
    shutil.copytree(tiny_bundle, broken)
    meta = json.loads((broken / "bundle.json").read_text())
    meta["threshold"]["value"] = 1000.0  # a hand edit: refused by its checksum
    (broken / "bundle.json").write_text(json.dumps(meta))
    link = tmp_path / "models" / "current"
    link.symlink_to(tiny_bundle)

    def point(target):
        (tmp_path / "models" / "new").symlink_to(target)
        os.replace(tmp_path / "models" / "new", link)

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    db = tmp_path / "db.sqlite"
    store = Store(str(db))
    watcher = Watcher(inbox, load_bundle(os.path.realpath(link)), store,
                      WatchOptions(out=tmp_path / "out", settle=0.1), model_source=link)
    thread = threading.Thread(target=watcher.run, kwargs={"install_signals": False})
    thread.start()
    try:
        first_model = watcher.model_id
        write_png(inbox / "one.png", seed=181)
        wait_for(lambda: rows(db, "source_name='one.png' AND status='done'"), 30, "first verdict")
        point(broken)
        watcher.request_reload()
        wait_for(lambda: any("reload of" in r.getMessage() for r in caplog.records), 30, "the failed reload")
        failed = [r for r in caplog.records if "reload of" in r.getMessage()][0]
        assert failed.levelname == "ERROR" and "changed since inspector wrote it" in failed.getMessage()
        write_png(inbox / "two.png", seed=182)
        wait_for(lambda: rows(db, "source_name='two.png' AND status='done'"), 30, "second verdict")
        point(other)
        watcher.request_reload()
        wait_for(lambda: watcher.model_id != first_model, 30, "the switch")
        write_png(inbox / "three.png", seed=183)
        wait_for(lambda: rows(db, "source_name='three.png' AND status='done'"), 30, "third verdict")
    finally:
        watcher.stop()
        thread.join(timeout=30)
    by_name = {r["source_name"]: r for r in rows(db)}
    assert by_name["one.png"]["model_id"] == by_name["two.png"]["model_id"] == first_model
    assert by_name["three.png"]["model_id"] == watcher.model_id != first_model
    assert by_name["three.png"]["threshold"] == pytest.approx(load_bundle(other).threshold)
    switched = [r for r in caplog.records if "model switched on reload" in r.getMessage()]
    assert len(switched) == 1 and str(other) in switched[0].getMessage()
    with store.session() as s:  # a run per model, for the rates of `inspector stats`
        runs = s.query(Run).order_by(Run.id).all()
    assert [r.model_id for r in runs] == [first_model, watcher.model_id] and all(r.stopped_at for r in runs)
    store.close()
