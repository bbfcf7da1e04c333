"""Frames decoded and prepared in worker processes (`inspector watch --decode-in processes`, the
default): the same verdicts as in threads, a dead worker replaced, no worker left behind."""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from inspector.bundle import load_bundle
from inspector.decode_workers import DecodeWorkerDied, DecodeWorkers
from inspector.inference import Inferencer, PixelBudget
from conftest import SAMPLE
from helpers import rows, wait_for, write_png


def sources(tmp_path):
    """Sample screws as the daemon hands them over (path and bytes), a file that is not an image,
    an empty one, and a path without its bytes."""
    files = [path for kind in ("defect", "good") for path in sorted((SAMPLE / "test" / kind).glob("*.png"))[:3]]
    (tmp_path / "notes.png").write_bytes(b"not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    given = [(path, path.read_bytes()) for path in files + [tmp_path / "notes.png", tmp_path / "empty.png"]]
    return given + [files[0]]


def judged(inferencer, given):
    return inferencer.score(inferencer.load(given, keep_maps=True))


def test_workers_judge_as_threads_do(tiny_bundle, tmp_path):
    bundle, given = load_bundle(tiny_bundle), sources(tmp_path)
    with Inferencer(bundle, threads=2, contain_failures=True) as threads:
        expected = judged(threads, given)
    with Inferencer(bundle, threads=2, contain_failures=True, processes=True) as processes:
        assert len(multiprocessing.active_children()) >= 2  # the workers
        got = judged(processes, given)
    assert [r.verdict for r in got] == [r.verdict for r in expected]
    assert "error" in [r.verdict for r in got] and [r.error for r in got] == [r.error for r in expected]
    assert "empty" in got[-2].error
    for mine, theirs in zip(got, expected):
        assert mine.score == theirs.score and (mine.width, mine.height) == (theirs.width, theirs.height)
        if theirs.frame is not None:  # the preview QA's overlay is drawn on, and its matrix
            assert np.array_equal(mine.frame[0], theirs.frame[0]) and np.allclose(mine.frame[1], theirs.frame[1])
            assert np.array_equal(mine.error_map, theirs.error_map)


def kill_workers():
    workers = multiprocessing.active_children()
    for worker in workers:
        os.kill(worker.pid, signal.SIGKILL)
    return {w.pid for w in workers}


def test_a_dead_worker_is_replaced(tiny_bundle, tmp_path):
    bundle, given = load_bundle(tiny_bundle), sources(tmp_path)
    with Inferencer(bundle, threads=2, contain_failures=True, processes=True) as inferencer:
        first = judged(inferencer, given)
        # Killed while a batch is in their hands: that batch fails (the daemon then judges its
        # files one by one), the next is judged by new workers. The batch opens with two large
        # frames (tens of milliseconds to decode): the workers are killed once both are handed
        # over, while they decode them (a worker killed before it is handed a file is simply
        # started again for it).
        large = [write_png(tmp_path / f"large{i}.png", seed=40 + i, size=4000) for i in range(2)]
        loading = inferencer.load([(path, path.read_bytes()) for path in large] + given * 4, keep_maps=True)
        wait_for(lambda: all(p.future.running() for p in loading.futures[:2]), 30, "the large frames handed over",
                 interval=0.001)
        time.sleep(0.03)  # sent (a few ms), not yet decoded and prepared (70 ms or more)
        killed = kill_workers()
        with pytest.raises(DecodeWorkerDied):
            inferencer.score(loading)
        again = judged(inferencer, given)
        assert {w.pid for w in multiprocessing.active_children()}.isdisjoint(killed)
        # Killed while idle: the next batch starts new ones too.
        kill_workers()
        time.sleep(0.5)
        last = judged(inferencer, given)
    for results in (again, last):
        assert [(r.verdict, r.score, r.error) for r in results] == [(r.verdict, r.score, r.error) for r in first]


def test_the_daemon_killed_leaves_no_worker_behind(tiny_bundle, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(3):
        write_png(inbox / f"part{i}.png", seed=900 + i)
    db = tmp_path / "db.sqlite"
    daemon = subprocess.Popen([sys.executable, "-m", "inspector.cli", "watch", str(inbox), "--model", str(tiny_bundle),
                               "--db", str(db), "--out", str(tmp_path / "out")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(rows(db, "status = 'done'")) == 3, 60, "three verdicts")
        children = [int(pid) for task in Path(f"/proc/{daemon.pid}/task").glob("*/children")
                    for pid in task.read_text().split()]
        assert len(children) >= 2, children  # the decoding workers
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
                             for pid in children), 10, "the workers gone with their daemon")


class CountingBudget(PixelBudget):
    """The pixel budget, counting how many frames hold it at once."""

    def __init__(self, pixels):
        super().__init__(pixels)
        self.now = self.most = 0
        self.lock = threading.Lock()

    @contextmanager
    def hold(self, pixels):
        with super().hold(pixels):
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                yield
            finally:
                with self.lock:
                    self.now -= 1


@pytest.mark.parametrize("frames_at_once", [1, 2])
def test_workers_decode_within_the_pixel_budget(tiny_bundle, tmp_path, frames_at_once):
    """Two workers, a budget of one 256x256 sample frame (or of ten): one frame decoded at a
    time (or two), as the decoding threads would."""
    inferencer = Inferencer(load_bundle(tiny_bundle), threads=1)
    budget = CountingBudget(256 * 256 * (1 if frames_at_once == 1 else 10))
    settings = (inferencer.pipeline.preprocess, inferencer.part_length, inferencer.registration)
    workers = DecodeWorkers(settings, 2, budget)
    try:
        given = [(path, path.read_bytes()) for path in sorted((SAMPLE / "train" / "good").glob("*.png"))[:16]]
        pending = [workers.submit(source, False) for source in given]
        results = [p.result() for p in pending]
    finally:
        workers.close()
        inferencer.close()
    assert all(item[1] == (256, 256) for item, _ in results)
    assert budget.most == frames_at_once
