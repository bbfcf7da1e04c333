"""A daemon with one more output, a durable one that records every verdict it is handed in a
file: run as a subprocess by tests/test_outputs.py.

Usage: python recording_daemon.py INBOX BUNDLE DB OUT RECORD [--kill-at-first-delivery] [--kill-at-prepare N] [--kill-at-first-move]
With --kill-at-first-delivery the process SIGKILLs itself when the output is first handed
verdicts: after their commit, before any output has them. With --kill-at-prepare N it does so
when the N-th batch is prepared: its pictures written, its verdicts not committed (the batches
before it delivered, and marked so, first; if they are not within 60 s it exits with 3 instead). With
--kill-at-first-move, when the first committed verdicts are handed to the archive: committed, no
file moved out of the inbox.
"""

import os
import signal
import sys
import time
from pathlib import Path

from inspector.bundle import load_bundle
from inspector.daemon import Output, WatchOptions, Watcher
from inspector.store import Store


class Recording(Output):
    name = "recording"
    durable = True

    def __init__(self, path: Path, kill_first: bool, kill_at_prepare: int = 0):
        self.path, self.kill_first, self.kill_at_prepare = path, kill_first, kill_at_prepare
        self.prepared = 0
        self.owed = lambda: 0  # this output's undelivered outbox entries (set once the daemon exists)

    def prepare(self, parts) -> None:  # after the pictures' own prepare: they are on disk
        self.prepared += 1
        if self.prepared == self.kill_at_prepare:
            # The earlier batches' verdicts delivered and marked first: the gap killed in is this
            # batch's (pictures written, not committed), not the outbox's own between a delivery
            # and its mark, where a verdict is handed on again after a restart by design.
            deadline = time.monotonic() + 60
            try:
                while self.owed():
                    if time.monotonic() > deadline:
                        sys.stderr.write("recording_daemon: the earlier batches were never marked delivered\n")
                        os._exit(3)
                    time.sleep(0.02)
            except Exception as exc:  # the outbox unreadable: say so, rather than kill in another gap
                sys.stderr.write(f"recording_daemon: the outbox could not be read: {exc}\n")
                os._exit(4)
            os.kill(os.getpid(), signal.SIGKILL)

    def deliver(self, verdicts) -> None:
        if self.kill_first:
            os.kill(os.getpid(), signal.SIGKILL)
        with open(self.path, "a") as fh:
            fh.writelines(f"{v.inspection_id} {v.verdict} {v.source_name}\n" for v in verdicts)
            fh.flush()
            os.fsync(fh.fileno())


def main() -> None:
    inbox, bundle, db, out, record = sys.argv[1:6]
    kill_at_prepare = int(sys.argv[sys.argv.index("--kill-at-prepare") + 1]) if "--kill-at-prepare" in sys.argv else 0
    store = Store(db)
    recording = Recording(Path(record), "--kill-at-first-delivery" in sys.argv, kill_at_prepare)
    watcher = Watcher(Path(inbox), load_bundle(bundle), store,
                      WatchOptions(out=Path(out), batch=4, settle=0.2, rescan_every=1.0), outputs=[recording])
    recording.owed = lambda: watcher.outputs.waiting()[recording.name]
    if "--kill-at-first-move" in sys.argv:
        watcher.archive.deliver = lambda verdicts: os.kill(os.getpid(), signal.SIGKILL)
    print("watching", flush=True)
    try:
        watcher.run()
    finally:
        store.close()


if __name__ == "__main__":
    main()
