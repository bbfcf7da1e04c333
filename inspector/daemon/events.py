"""The emitter side of the intake: watchdog events naming files in the inbox, through a queue.

watchdog's observer runs in its own thread and only puts (path, final) pairs on a queue; the
daemon's loop takes them off (`pending`, `next`), so each side stays small. The inbox folder
itself is watched too: when it is deleted and made again its watch went with it, and `check`
watches the new folder.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger("inspector.intake")

# What an event hands over: the file's path, and whether its writer is done with it (it was
# closed, or renamed in).
Event = tuple[Path, bool]


class _Handler:
    """watchdog handler: every event naming a file in the inbox queues it for a look."""

    def __init__(self, inbox: Path, q: queue.SimpleQueue):
        self.inbox, self.q = inbox, q

    def dispatch(self, event) -> None:
        kind = event.event_type
        if kind not in ("created", "modified", "moved", "closed") or (event.is_directory and kind == "modified"):
            return
        path = Path(event.dest_path if kind == "moved" else event.src_path)
        if path.parent == self.inbox:  # a folder made in the inbox too: the intake says it is not watched
            # Renamed in, or closed by its writer: finished, if its format's rule finds it complete.
            self.q.put((path, kind in ("moved", "closed")))


class InboxEvents:
    """watchdog's observer on one folder (`polling`: by polling it, for network filesystems)."""

    def __init__(self, inbox: Path, polling: bool = False):
        self.inbox = inbox
        self.polling = polling
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._observer = None
        self._identity: tuple[int, int] | None = None  # the inbox folder watched (device, inode)
        self._checked_at = 0.0

    def start(self) -> None:
        if self.polling:
            from watchdog.observers.polling import PollingObserver

            observer = PollingObserver(timeout=0.5)
        else:
            try:  # Linux: a file renamed in from outside the folder is reported as moved, not created
                from watchdog.observers.inotify import InotifyObserver

                observer = InotifyObserver(generate_full_events=True)
            except ImportError:
                from watchdog.observers import Observer

                observer = Observer()
        observer.schedule(_Handler(self.inbox, self._queue), str(self.inbox), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._identity = self._folder_identity()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
            self._observer = None

    def check(self, every: float = 0.25) -> bool:
        """Watch the inbox again when it was deleted and recreated (said in the log, as is an
        inbox gone missing); true when the new folder is watched and should be scanned."""
        now = time.monotonic()
        if now - self._checked_at < every:
            return False
        self._checked_at = now
        identity = self._folder_identity()
        if identity == self._identity:
            return False
        if identity is None:
            log.error("inbox %s is gone; waiting for it to come back", self.inbox)
            self._identity = None
            return False
        self.stop()
        try:
            self.start()
        except OSError as exc:  # gone again meanwhile: tried at the next check
            log.error("cannot watch inbox %s: %s", self.inbox, exc)
            self._identity = None
            return False
        log.warning("inbox %s was recreated; watching the new folder", self.inbox)
        return True

    def pending(self) -> Iterator[Event]:
        """The events queued since the last call, without waiting."""
        while True:
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                return

    def next(self, timeout: float) -> Event | None:
        """The next event, waiting up to `timeout` seconds for it."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _folder_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.inbox)
        except OSError:
            return None
        return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None
