"""A daemon with one more output, a durable one that records every verdict it is handed in a
file: run as a subprocess by tests/test_outputs.py.

Usage: python recording_daemon.py INBOX BUNDLE DB OUT RECORD [--kill-at-first-delivery]
With --kill-at-first-delivery the process SIGKILLs itself when the output is first handed
verdicts: after their commit, before any output has them.
"""

import os
import signal
import sys
from pathlib import Path

from inspector.bundle import load_bundle
from inspector.daemon import Output, WatchOptions, Watcher
from inspector.store import Store


class Recording(Output):
    name = "recording"
    durable = True

    def __init__(self, path: Path, kill_first: bool):
        self.path, self.kill_first = path, kill_first

    def deliver(self, verdicts) -> None:
        if self.kill_first:
            os.kill(os.getpid(), signal.SIGKILL)
        with open(self.path, "a") as fh:
            fh.writelines(f"{v.inspection_id} {v.verdict} {v.source_name}\n" for v in verdicts)
            fh.flush()
            os.fsync(fh.fileno())


def main() -> None:
    inbox, bundle, db, out, record = sys.argv[1:6]
    store = Store(db)
    watcher = Watcher(Path(inbox), load_bundle(bundle), store,
                      WatchOptions(out=Path(out), batch=4, settle=0.2, rescan_every=1.0),
                      outputs=[Recording(Path(record), "--kill-at-first-delivery" in sys.argv)])
    print("watching", flush=True)
    try:
        watcher.run()
    finally:
        store.close()


if __name__ == "__main__":
    main()
