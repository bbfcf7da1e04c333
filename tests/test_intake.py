"""The inbox side on its own: which files are taken when, read how (no daemon, no model)."""

import errno
import os
import time

import pytest

from inspector.errors import ImageError
from inspector.daemon.intake import FAILING_AFTER, FIRST_RETRY, Intake, content_key
from inspector.daemon.moves import GONE, MOVED, STAYED, move_out
from inspector.formats import MAX_FILE_BYTES
from helpers import encoded, jpeg_with_exif_thumbnail, png_bytes


def intake_of(inbox, **timing):
    intake = Intake(inbox, **{"settle": 0.3, "quick_settle": 0.0, "incomplete_timeout": 0.6, **timing})
    intake.scan()
    return intake


def names(arrivals):
    return sorted(a.path.name for a in arrivals)


def test_complete_files_at_once_other_formats_after_settling(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes(1))
    (tmp_path / "b.bmp").write_bytes(encoded(".bmp", 2))  # complete by its declared size
    (tmp_path / "c.png.part").write_bytes(png_bytes(2))  # still being written under a temporary name
    (tmp_path / ".hidden.png").write_bytes(png_bytes(3))
    (tmp_path / "d.txt").write_text("a format without a completeness rule\n")
    (tmp_path / "e.bmp").write_bytes(b"BM not really")  # shorter than its header declares
    intake = intake_of(tmp_path)
    first = intake.take(10)
    assert names(first) == ["a.png", "b.bmp"] and all(a.error is None for a in first)
    assert first[0].data == png_bytes(1)
    assert intake.waiting  # the text file is settling, the BMP waits for the rest of its bytes
    time.sleep(0.35)
    assert names(intake.take(10)) == ["d.txt"]
    time.sleep(0.3)
    [unfinished] = intake.take(10)
    assert unfinished.path.name == "e.bmp" and unfinished.unfinished
    assert unfinished.error == "incomplete BMP file: 13 of the 1953459744 bytes its header declares"
    assert not intake.waiting


def test_truncated_png_waits_then_is_taken_for_rejection(tmp_path):
    (tmp_path / "cut.png").write_bytes(png_bytes(1)[:300])
    intake = intake_of(tmp_path)
    assert intake.take(10) == [] and intake.waiting
    time.sleep(0.65)
    [arrival] = intake.take(10)
    assert arrival.data == png_bytes(1)[:300]  # decoding it will say what is wrong


def test_symlinks_and_huge_files_are_never_read(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes(5))
    os.symlink(outside, inbox / "link.png")
    (inbox / "real.png").write_bytes(png_bytes(6))
    os.symlink(inbox / "real.png", inbox / "inner.png")
    with open(inbox / "huge.tif", "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used
    intake = intake_of(inbox, settle=0.0)
    time.sleep(0.01)
    by_name = {a.path.name: a for a in intake.take(10)}
    assert by_name["link.png"].data is None and "symlink to a file outside the inbox" in by_name["link.png"].error
    assert by_name["inner.png"].data is None and "symlink inside the inbox" in by_name["inner.png"].error
    assert by_name["huge.tif"].data is None and "file too large" in by_name["huge.tif"].error
    assert by_name["real.png"].data == png_bytes(6)
    # Unread files are told apart by name, size, time and inode; read ones by content.
    assert len({content_key(a) for a in by_name.values()}) == 4
    move_out(inbox / "link.png", tmp_path / "rejected" / "link.png")
    assert os.path.islink(tmp_path / "rejected" / "link.png") and outside.read_bytes() == png_bytes(5)


def test_a_kept_file_is_not_taken_again_until_it_changes(tmp_path):
    (tmp_path / "kept.png").write_bytes(png_bytes(1))
    intake = intake_of(tmp_path)
    [arrival] = intake.take(10)
    intake.keep(arrival.path)
    intake.scan()
    assert intake.take(10) == [] and not intake.waiting
    (tmp_path / "kept.png").write_bytes(png_bytes(2))
    intake.scan()
    assert names(intake.take(10)) == ["kept.png"]


def _write_in_pieces(path, data, pieces, pause, intake=None, taken=None):
    """Write `data` in `pieces` chunks with `pause` seconds between them; calls take() meanwhile."""
    with open(path, "wb") as fh:
        for i in range(pieces):
            fh.write(data[i * len(data) // pieces:(i + 1) * len(data) // pieces])
            fh.flush()
            if i < pieces - 1:
                deadline = time.monotonic() + pause
                while time.monotonic() < deadline:
                    intake.scan()
                    taken.extend(intake.take(10))
                    time.sleep(0.02)


@pytest.mark.parametrize("suffix", [".tif", ".bmp"])
def test_tiff_and_bmp_written_slowly_are_taken_only_once_complete(tmp_path, suffix):
    """Pauses longer than --settle: the completeness rule keeps the file waiting."""
    data = encoded(suffix, 3, size=128)
    intake = intake_of(tmp_path, settle=0.2, incomplete_timeout=5.0)
    taken = []
    _write_in_pieces(tmp_path / f"slow{suffix}", data, 3, 0.6, intake, taken)
    assert taken == []
    time.sleep(0.05)
    intake.scan()
    [arrival] = intake.take(10)
    assert arrival.data == data and arrival.error is None


def test_jpeg_paused_after_its_exif_thumbnail_waits_for_the_main_image(tmp_path):
    """The EXIF thumbnail's FF D9 is not the end of the file."""
    data, after_thumbnail = jpeg_with_exif_thumbnail(5)
    assert data[:after_thumbnail].endswith(b"\xff\xd9")
    path = tmp_path / "camera.jpg"
    path.write_bytes(data[:after_thumbnail])
    intake = intake_of(tmp_path, incomplete_timeout=5.0)
    time.sleep(0.1)
    assert intake.take(10) == [] and intake.waiting
    with open(path, "ab") as fh:
        fh.write(data[after_thumbnail:])
    intake.scan()
    time.sleep(0.05)
    [arrival] = intake.take(10)
    assert arrival.data == data


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".png"])
def test_an_empty_file_is_not_taken_while_it_may_still_be_written(tmp_path, suffix):
    """Created empty, filled 1.5 s later (exec 3>f; sleep 1.5; cat img >&3)."""
    path = tmp_path / f"late{suffix}"
    intake = intake_of(tmp_path, settle=0.2, incomplete_timeout=5.0)
    with open(path, "wb") as fh:
        intake.scan()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            intake.scan()
            assert intake.take(10) == []
            time.sleep(0.05)
        data = encoded(suffix, 9)
        fh.write(data)
    intake.scan()
    time.sleep(0.05)
    [arrival] = intake.take(10)
    assert arrival.data == data


def test_an_empty_file_left_empty_is_taken_after_the_incomplete_timeout(tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    intake = intake_of(tmp_path, settle=0.1, incomplete_timeout=0.6)
    time.sleep(0.3)
    assert intake.take(10) == []
    time.sleep(0.4)
    [arrival] = intake.take(10)
    assert arrival.data == b"" and arrival.unfinished and arrival.error == "empty file"


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_an_unreadable_file_is_not_retried_hot_and_is_taken_as_an_error(tmp_path, monkeypatch, suffix):
    """One rule for every format: no hot loop, then an error (permission denied)."""
    import inspector.daemon.intake

    path = tmp_path / f"locked{suffix}"
    path.write_bytes(encoded(suffix, 4))
    reads = []

    def denied(p, follow_symlinks=True):  # as read_bytes says it (root reads a mode 000 file)
        reads.append(p)
        raise ImageError(p, "cannot read file: Permission denied") from PermissionError(errno.EACCES, "denied")

    monkeypatch.setattr(inspector.daemon.intake, "read_bytes", denied)
    intake = intake_of(tmp_path, settle=0.1, incomplete_timeout=0.8)
    taken = []
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:
        taken += intake.take(10)
        time.sleep(0.005)
    assert taken == [] and len(reads) <= 3, len(reads)
    time.sleep(0.3)
    [arrival] = intake.take(10)
    assert arrival.data is None and "Permission denied" in arrival.error


def test_a_fifo_renamed_over_a_tracked_file_never_blocks(tmp_path):
    """A FIFO is never opened (open() would wait for a writer for ever)."""
    import threading

    path = tmp_path / "part.png"
    path.write_bytes(png_bytes(1)[:200])  # unfinished: tracked, not taken
    intake = intake_of(tmp_path, settle=0.1, incomplete_timeout=0.3)
    assert intake.take(10) == []
    os.mkfifo(tmp_path / "fifo")
    os.rename(tmp_path / "fifo", path)
    result = []
    worker = threading.Thread(target=lambda: [result.extend(intake.take(10)) for _ in range(30) if not time.sleep(0.02)])
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():  # blocked in open(): release it (each time) so the test can fail cleanly
        while worker.is_alive():
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader at this moment
                pass
            worker.join(timeout=0.01)
        pytest.fail("take() blocked on a FIFO")
    [arrival] = result
    assert arrival.data is None and "not a regular file" in arrival.error


def test_move_across_filesystems_on_a_full_disk_keeps_the_source_and_recovers(tmp_path, monkeypatch):
    """Without a tmpfs: a copy that runs out of space leaves no partial target, the
    source stays; once space returns the move completes, verified; a stale copy is replaced."""
    import errno
    import hashlib

    import inspector.daemon.moves as intake_module

    data = png_bytes(7, size=300)
    source, target = tmp_path / "in" / "a.png", tmp_path / "out" / "archive" / "1_a.png"
    source.parent.mkdir()
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    def no_link(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(intake_module.os, "link", no_link)
    real_open, full = open, [True]

    class FullFile:
        def __init__(self, fh):
            self.fh = fh

        def write(self, chunk):
            self.fh.write(chunk[:len(chunk) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def opener(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return FullFile(fh) if full[0] and "w" in mode else fh

    monkeypatch.setattr(intake_module, "open", opener, raising=False)
    assert move_out(source, target, digest) == STAYED
    assert source.read_bytes() == data and not target.exists()
    assert not [p for p in target.parent.iterdir()], "no partial copy is left"
    target.write_bytes(data[:100])  # a truncated copy left by an older version
    full[0] = False
    assert move_out(source, target, digest) == MOVED
    assert not source.exists() and target.read_bytes() == data
    # Idempotent: asked again (a restart), nothing changes; the file is said to be gone already.
    assert move_out(source, target, digest) == GONE and target.read_bytes() == data


def test_a_file_written_again_after_its_verdict_is_not_moved(tmp_path):
    from inspector.daemon.intake import stamp_of

    source, target = tmp_path / "a.png", tmp_path / "out" / "a.png"
    source.write_bytes(png_bytes(1))
    stamp = stamp_of(os.lstat(source))
    time.sleep(0.01)
    source.write_bytes(png_bytes(2))  # new content under the same name
    assert move_out(source, target, stamp=stamp) == STAYED
    assert source.read_bytes() == png_bytes(2) and not target.exists()


def test_an_unread_file_with_an_undecodable_name_has_a_content_key(tmp_path):
    """A symlink named with invalid UTF-8 is keyed by its name, size, time and inode."""
    link = os.fsencode(tmp_path) + b"/link\xff.png"
    os.symlink(b"/etc/hostname", link)
    [arrival] = intake_of(tmp_path, settle=0.0).take(10)
    assert arrival.data is None and len(content_key(arrival)) == 64


def test_a_complete_file_renamed_in_is_taken_without_waiting_to_settle(tmp_path):
    """A file renamed into the inbox (or closed by its writer) is finished; complete by
    its format's rule, it need not settle first. One written in place waits while it is open."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    intake = Intake(inbox, settle=5.0, quick_settle=5.0, incomplete_timeout=10.0)
    intake.start()
    try:
        staged = tmp_path / "staged.png"
        staged.write_bytes(png_bytes(7))
        os.rename(staged, inbox / "renamed.png")
        started = time.monotonic()
        taken = []
        while not taken and time.monotonic() - started < 3:
            intake.wait(0.05)
            taken = intake.take(10)
        assert names(taken) == ["renamed.png"] and time.monotonic() - started < 1.0
        # Written whole in place and still open: complete by its rule, but its writer may go on
        # (another image after the first, a tool rewriting its metadata), so it settles first...
        with open(inbox / "in_place.png", "wb") as fh:
            fh.write(png_bytes(8))
            fh.flush()
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                intake.wait(0.05)
                assert not intake.take(10)
        # ...until its writer closes it.
        started, taken = time.monotonic(), []
        while not taken and time.monotonic() - started < 3:
            intake.wait(0.05)
            taken = intake.take(10)
        assert names(taken) == ["in_place.png"] and time.monotonic() - started < 1.0
    finally:
        intake.stop()


def test_a_file_in_a_batch_not_finished_is_not_taken_again_unless_written_again(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes(1))
    (tmp_path / "b.png").write_bytes(png_bytes(2))
    intake = intake_of(tmp_path)
    taken = intake.take(10)
    assert names(taken) == ["a.png", "b.png"]
    intake.scan()  # the daemon scans while the batch is still being judged: both files still there
    assert intake.take(10) == [] and not intake.waiting
    time.sleep(0.01)
    (tmp_path / "b.png").write_bytes(png_bytes(3))  # written again: new content to judge
    intake.scan()
    assert names(intake.take(10)) == ["b.png"]
    intake.finished(taken)  # a.png's batch failed and left it in the inbox: taken again after a wait
    intake.scan()
    assert intake.take(10) == [] and intake.waiting
    time.sleep(FIRST_RETRY + 0.05)
    assert names(intake.take(10)) == ["a.png"]


def test_a_file_its_batch_left_in_the_inbox_is_taken_again_after_a_wait_that_doubles(tmp_path):
    """A batch failed for a passing reason (a full disk): its file is tried again, not in a hot
    loop and not only at the next scan; each failure doubles the wait, up to the longest."""
    (tmp_path / "a.png").write_bytes(png_bytes(1))
    intake = intake_of(tmp_path, retry_longest=1.5)
    [arrival] = intake.take(10)
    waits = []
    for _ in range(3):
        intake.finished([arrival])  # its batch failed: the file is still there as it was taken
        left = time.monotonic()
        assert intake.take(10) == [] and intake.waiting
        intake.wait()  # no event: the daemon's loop sleeps until the retry is due (0.25 s at most)
        assert time.monotonic() - left >= 0.2
        while not (again := intake.take(10)):
            time.sleep(0.01)
        waits.append(time.monotonic() - left)
        [arrival] = again
    assert 0.5 <= waits[0] < 0.9 and 1.0 <= waits[1] < 1.4 and 1.5 <= waits[2] < 1.9, waits
    (tmp_path / "a.png").unlink()  # judged and moved out at last
    intake.finished([arrival])
    assert not intake.waiting


def test_a_file_left_in_the_inbox_again_and_again_is_still_tried_but_no_longer_keeps_the_daemon_busy(tmp_path, caplog):
    """An unwritable output folder: every batch fails. After FAILING_AFTER tries running the file
    no longer counts as waiting (a daemon quitting when idle quits) and stopping says it is left."""
    (tmp_path / "a.png").write_bytes(png_bytes(1))
    intake = intake_of(tmp_path, retry_longest=0.02)
    for tries in range(FAILING_AFTER):
        assert intake.waiting
        while not (taken := intake.take(10)):
            time.sleep(0.005)
        assert taken[0].tries == tries
        intake.finished(taken)  # failed again
    assert not intake.waiting
    time.sleep(0.05)
    taken = intake.take(10)
    assert names(taken) == ["a.png"]  # still tried again
    intake.finished(taken)
    intake.stop()
    assert "1 file still failing (the errors above) stays in the inbox: taken again at the next start" in caplog.text
