"""Files that change under the daemon's feet: every file it removes from the inbox is accounted for
(a row, a duplicate entry with a WARNING and a count), and a row never names a file that does not
exist."""

import logging
import os
from pathlib import Path

from helpers import png_bytes, rows, wait_for, write_png
from test_watch import daemon  # noqa: F401  (the fixture)


def test_a_file_renamed_just_after_it_was_read_is_judged_once_under_its_new_name(daemon, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    inbox, out, db, watcher, _ = daemon()
    prepare = watcher.pictures.prepare

    def rename_then_prepare(parts):  # after the read and the claim, before the commit and the move
        for part in parts:
            if part.path.name == "a.png":
                os.rename(part.path, part.path.with_name("b.png"))
        prepare(parts)

    watcher.pictures.prepare = rename_then_prepare
    write_png(inbox / "a.png", seed=5)
    wait_for(lambda: not any(inbox.iterdir()) and [r["source_name"] for r in rows(db)] == ["b.png"], 30,
             "the renamed file judged and out of the inbox")
    (row,) = rows(db)
    assert row["status"] == "done"
    assert Path(row["source_path"]).name == "b.png"
    assert Path(row["stored_path"]).read_bytes() == png_bytes(5)  # the row names a file that exists
    assert not (out / "duplicates").exists()
    assert watcher.counters.duplicates == 0
    assert any("was renamed to b.png in the inbox" in r.getMessage() for r in caplog.records)


def test_a_file_deleted_just_after_it_was_read_keeps_its_bytes_where_its_row_says(daemon, caplog):  # noqa: F811
    inbox, out, db, watcher, _ = daemon()
    prepare = watcher.pictures.prepare

    def delete_then_prepare(parts):
        for part in parts:
            os.unlink(part.path)
        prepare(parts)

    watcher.pictures.prepare = delete_then_prepare
    write_png(inbox / "gone.png", seed=6)
    wait_for(lambda: rows(db, "status = 'done'"), 30, "the verdict")
    (row,) = rows(db)
    wait_for(lambda: Path(row["stored_path"]).exists(), 10, "the bytes judged archived")
    assert Path(row["stored_path"]).read_bytes() == png_bytes(6)
    assert any("left the inbox" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_the_same_name_with_the_same_bytes_sent_again_is_a_counted_duplicate(daemon, caplog):  # noqa: F811
    inbox, out, db, watcher, _ = daemon()
    write_png(inbox / "frame.png", seed=7)
    wait_for(lambda: rows(db, "status = 'done'") and not any(inbox.iterdir()), 30, "the first verdict")
    write_png(inbox / "frame.png", seed=7)  # the camera sends the frame again
    wait_for(lambda: not any(inbox.iterdir()), 30, "the second copy out of the inbox")
    wait_for(lambda: watcher.counters.duplicates == 1, 10, "the second copy counted as a duplicate")
    (row,) = rows(db)
    copies = list((out / "duplicates").rglob("*frame.png"))
    assert len(copies) == 1 and copies[0].read_bytes() == png_bytes(7)
    assert Path(row["stored_path"]).read_bytes() == png_bytes(7)
    assert any(r.levelname == "WARNING" and "frame.png has the same content as inspection" in r.getMessage()
               for r in caplog.records)


def test_a_subfolder_of_the_inbox_is_said_once_and_its_files_left_alone(daemon, caplog):  # noqa: F811
    inbox, out, db, watcher, _ = daemon(rescan_every=0.3)
    folder = inbox / "2026-12-03"
    folder.mkdir()
    write_png(folder / "img.png", seed=8)
    wait_for(lambda: any("2026-12-03 is a folder" in r.getMessage() for r in caplog.records), 10, "the warning")
    write_png(folder / "img2.png", seed=9)
    write_png(inbox / "top.png", seed=10)
    wait_for(lambda: rows(db, "status = 'done'"), 30, "the file directly in the inbox judged")
    wait_for(lambda: not (inbox / "top.png").exists(), 10, "top.png moved out")
    import time

    time.sleep(1.0)  # a few more scans of the inbox
    said = [r for r in caplog.records if "2026-12-03 is a folder" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING"
    assert [r["source_name"] for r in rows(db)] == ["top.png"]
    assert sorted(p.name for p in folder.iterdir()) == ["img.png", "img2.png"]  # left where they are


def test_a_copy_arriving_while_its_content_is_in_hand_is_set_aside_before_the_daemon_is_idle(tiny_bundle, tmp_path):
    """One file per batch: b.png is claimed while a.png, the same bytes, is still in the batch in
    hand; it is looked at again once that batch is finished, not left for the next scan."""
    from inspector.bundle import load_bundle
    from inspector.daemon import Watcher, WatchOptions
    from inspector.store import Store

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_png(inbox / "a.png", seed=11)
    write_png(inbox / "b.png", seed=11)
    store = Store(str(tmp_path / "db.sqlite"))
    options = WatchOptions(out=tmp_path / "out", batch=1, settle=0.2, rescan_every=600)
    watcher = Watcher(inbox, load_bundle(tiny_bundle), store, options)
    try:
        watcher.run(install_signals=False, max_idle=1.0)
    finally:
        store.close()
    assert list(inbox.iterdir()) == []
    (row,) = rows(tmp_path / "db.sqlite")
    assert row["status"] == "done" and row["source_name"] == "a.png"
    copies = list((tmp_path / "out" / "duplicates").rglob("*b.png"))
    assert len(copies) == 1 and copies[0].read_bytes() == png_bytes(11)
    assert watcher.counters.duplicates == 1
