"""The inbox side on its own: which files are taken when, read how (no daemon, no model)."""

import os
import time

from inspector.intake import Intake, content_key, move_out
from inspector.preprocess import MAX_FILE_BYTES
from helpers import png_bytes


def intake_of(inbox, **timing):
    intake = Intake(inbox, **{"settle": 0.3, "quick_settle": 0.0, "incomplete_timeout": 0.6, **timing})
    intake.scan()
    return intake


def names(arrivals):
    return sorted(a.path.name for a in arrivals)


def test_complete_png_at_once_other_formats_after_settling(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes(1))
    (tmp_path / "b.bmp").write_bytes(b"BM not really")
    (tmp_path / "c.png.part").write_bytes(png_bytes(2))  # still being written under a temporary name
    (tmp_path / ".hidden.png").write_bytes(png_bytes(3))
    intake = intake_of(tmp_path)
    [first] = intake.take(10)
    assert first.path.name == "a.png" and first.data == png_bytes(1) and first.error is None
    assert intake.waiting  # the BMP is settling
    time.sleep(0.35)
    assert names(intake.take(10)) == ["b.bmp"]
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
