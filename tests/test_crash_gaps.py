"""The daemon killed in each gap of its pipeline, then started again: nothing lost, nothing judged twice.

The daemon claims a batch and decodes it while it finishes the batch before (scored, pictured,
committed, moved). A SIGKILL can fall between the pictures and the commit of one batch while
the next is claimed, or between a commit and the moves. After the restart every image has one
finished row, its pictures on disk, its file archived once, and every verdict handed to the
durable output once.
"""

import signal
from pathlib import Path

import pytest

from helpers import assert_pictures_exist, reap, start_recording_daemon, wait_for, write_png
from test_outputs import rows

IMAGES = 12  # three batches of four
PICTURE_COLUMNS = ("heatmap_path", "overlay_path", "crop_overlay_path")


@pytest.mark.parametrize("gap", ["pictures written, not committed", "committed, not moved"])
def test_a_sigkill_in_a_gap_loses_nothing_and_judges_nothing_twice(gap, tiny_bundle, tmp_path, database_url):
    inbox, out, record = tmp_path / "inbox", tmp_path / "out", tmp_path / "record.txt"
    inbox.mkdir()
    for i in range(IMAGES):
        write_png(inbox / f"part{i:02d}.png", seed=700 + i)
    kill = ["--kill-at-prepare", "2"] if gap.startswith("pictures") else ["--kill-at-first-move"]
    log = open(tmp_path / "daemon.log", "wb")
    process = start_recording_daemon(inbox, tiny_bundle, database_url, out, record, log, *kill)
    try:
        assert process.wait(timeout=120) == -signal.SIGKILL
        before = rows(database_url)
        if gap.startswith("pictures"):
            # Batch 1 finished; batch 2 pictured but pending; batch 3 claimed while batch 2 was finished.
            assert [r["status"] for r in before] == ["done"] * 4 + ["pending"] * 8
            named = {Path(r[c]) for r in before for c in PICTURE_COLUMNS if r[c]}
            written = {p for p in (out / "heatmaps").rglob("*") if p.is_file()}
            # Batch 2's pictures too: a heatmap each at least (an overlay unless ok with no heat).
            assert named < written and len({p for p in written - named if p.name.endswith("_heatmap.png")}) == 4
        else:
            # Batch 1 committed and no file moved yet; batch 2 claimed meanwhile.
            assert [r["status"] for r in before] == ["done"] * 4 + ["pending"] * 4
            assert len(list(inbox.iterdir())) == IMAGES
        process = start_recording_daemon(inbox, tiny_bundle, database_url, out, record, log)
        wait_for(lambda: not list(inbox.iterdir()) and len(rows(database_url, "status = 'done'")) == IMAGES
                 and record.exists() and len(record.read_text().splitlines()) >= IMAGES, 120, "every image judged")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        reap(process)
        log.close()
    after = rows(database_url)
    log = (tmp_path / "daemon.log").read_text()
    assert len(after) == IMAGES and all(r["status"] == "done" for r in after), log[-3000:]
    assert sorted(r["source_name"] for r in after) == [f"part{i:02d}.png" for i in range(IMAGES)]
    for row in after:  # the pictures the row names exist, batch 2's made again after the kill
        assert_pictures_exist(row)
        assert Path(row["stored_path"]).is_file()
    archived = sorted(p.name for p in (out / "archive").rglob("*.png"))
    assert len(archived) == IMAGES  # each file moved once, none set aside as a duplicate
    recorded = [int(line.split()[0]) for line in record.read_text().splitlines()]
    assert sorted(recorded) == [r["id"] for r in after]  # each verdict handed on once
    assert not (out / "duplicates").exists() or not list((out / "duplicates").rglob("*.png"))
