"""The inbox side of the daemon: which files are there, and when each can be taken.

watchdog events (or a scan) -> temporary names left alone -> size and time tracked -> settled,
and a PNG or JPEG has its end marker -> read once, never through a symlink -> an `Arrival`.
Files leave the inbox through `move_out` (or stay, remembered by `Intake.keep`).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import queue
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ImageError
from .preprocess import check_file_size, looks_complete, read_bytes

log = logging.getLogger("inspector.intake")

# Names that writers use while a file is still being written; taken once renamed.
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~")
# Formats whose last bytes tell whether the writer has finished.
CHECKABLE_SUFFIXES = (".png", ".jpg", ".jpeg")


def is_temporary(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(TEMP_SUFFIXES)


@dataclass
class Arrival:
    """A file taken from the inbox: its bytes, or why they were not read."""

    path: Path
    data: bytes | None
    error: str | None = None  # a symlink, a file too large, an unreadable file


@dataclass
class _Tracked:
    """A file seen in the inbox and not yet taken."""

    size: int
    mtime_ns: int
    changed_at: float
    checked: tuple[int, int] | None = None  # (size, mtime) last found incomplete


class _Events:
    """watchdog handler: every event naming a file in the inbox queues it for a look."""

    def __init__(self, inbox: Path, q: queue.SimpleQueue):
        self.inbox, self.q = inbox, q

    def dispatch(self, event) -> None:
        kind = event.event_type
        if event.is_directory or kind not in ("created", "modified", "moved", "closed"):
            return
        path = Path(event.dest_path if kind == "moved" else event.src_path)
        if path.parent == self.inbox:
            self.q.put(path)


class Intake:
    """Follows one inbox folder; `take` hands over the files that are complete.

    A PNG or JPEG is complete once it is unchanged for `quick_settle` seconds and ends with its
    end marker; other formats (and files never read: symlinks, files too large) once unchanged
    for `settle`. A PNG or JPEG that stays unfinished is taken (and rejected as truncated)
    after `incomplete_timeout`.
    """

    def __init__(self, inbox: Path, polling: bool = False, settle: float = 0.5, quick_settle: float = 0.05,
                 incomplete_timeout: float = 10.0):
        self.inbox = Path(os.path.abspath(inbox))
        self.real_inbox = Path(os.path.realpath(self.inbox))
        self.polling = polling
        self.settle, self.quick_settle, self.incomplete_timeout = settle, quick_settle, incomplete_timeout
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._tracked: dict[Path, _Tracked] = {}
        self._kept: dict[Path, tuple[int, int]] = {}  # --on-done keep: files already judged
        self._observer = None

    def start(self) -> None:
        """Start following watchdog events (`polling`: by polling the folder, for network filesystems)."""
        if self.polling:
            from watchdog.observers.polling import PollingObserver

            observer = PollingObserver(timeout=0.5)
        else:
            from watchdog.observers import Observer

            observer = Observer()
        observer.schedule(_Events(self.inbox, self._events), str(self.inbox), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
            self._observer = None

    @property
    def waiting(self) -> bool:
        """Whether files are in the inbox that were not taken yet (settling, or unfinished)."""
        return bool(self._tracked)

    def scan(self) -> None:
        """Look at everything in the inbox (start-up, and now and then in case an event was lost)."""
        try:
            entries = list(os.scandir(self.inbox))
        except OSError as exc:
            log.error("cannot list inbox %s: %s", self.inbox, exc)
            return
        for entry in sorted(entries, key=lambda e: e.name):
            self._track(Path(entry.path))

    def drain(self) -> None:
        """Look at every file events have named since the last call."""
        while True:
            try:
                path = self._events.get_nowait()
            except queue.Empty:
                return
            self._track(path)

    def wait(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for an event, and look at the file it names."""
        try:
            path = self._events.get(timeout=timeout)
        except queue.Empty:
            return
        self._track(path)

    def keep(self, path: Path) -> None:
        """A judged file stays in the inbox (--on-done keep): ignore it until it changes."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        self._kept[path] = (st.st_size, st.st_mtime_ns)

    def _track(self, path: Path) -> None:
        if is_temporary(path.name):
            return
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._tracked.pop(path, None)
            return
        if not (stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode)):
            return
        stamp = (st.st_size, st.st_mtime_ns)
        if self._kept.get(path) == stamp:
            return
        known = self._tracked.get(path)
        if known is None or (known.size, known.mtime_ns) != stamp:
            self._tracked[path] = _Tracked(st.st_size, st.st_mtime_ns, time.monotonic())

    def take(self, limit: int) -> list[Arrival]:
        """Files that are complete now, each read once, at most `limit` of them."""
        ready: list[Arrival] = []
        now = time.monotonic()
        for path, t in list(self._tracked.items()):
            if len(ready) >= limit:
                break
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                del self._tracked[path]
                continue
            stamp = (st.st_size, st.st_mtime_ns)
            if stamp != (t.size, t.mtime_ns):
                self._tracked[path] = _Tracked(*stamp, now)
                continue
            age = now - t.changed_at
            refusal = self._refusal(path, st)
            if refusal is not None or path.suffix.lower() not in CHECKABLE_SUFFIXES:
                if age >= self.settle:
                    ready.append(Arrival(path, None, refusal) if refusal else self._read(path))
                    del self._tracked[path]
                continue
            if age < self.quick_settle or t.checked == stamp and age < self.incomplete_timeout:
                continue
            arrival = self._read(path)
            if arrival.data is None:
                continue  # unreadable for now: look again later
            if looks_complete(arrival.data) or age >= self.incomplete_timeout:
                ready.append(arrival)
                del self._tracked[path]
            else:
                t.checked = stamp  # still being written, or truncated for good: look again later
        return ready

    def _refusal(self, path: Path, st: os.stat_result) -> str | None:
        """Why a file is not to be read at all: a symlink, or too large."""
        if stat.S_ISLNK(st.st_mode):
            return self._symlink_reason(path)
        try:
            check_file_size(st.st_size, path)
        except ImageError as exc:
            return exc.reason
        return None

    def _read(self, path: Path) -> Arrival:
        """The file's bytes, read without following a symlink swapped in at the last moment."""
        try:
            return Arrival(path, read_bytes(path, follow_symlinks=False))
        except ImageError as exc:
            return Arrival(path, None, self._symlink_reason(path) if os.path.islink(path) else exc.reason)

    def _symlink_reason(self, path: Path) -> str:
        if Path(os.path.realpath(path)).parent != self.real_inbox:
            return f"symlink to a file outside the inbox ({os.readlink(path)}); not followed"
        return "symlink inside the inbox; only regular files are judged, the link was not followed"


def content_key(arrival: Arrival) -> str:
    """SHA-256 of the content; for a file whose content is not read (a symlink, a huge or
    unreadable file), of its name, size, time and inode instead."""
    if arrival.data is not None:
        return hashlib.sha256(arrival.data).hexdigest()
    try:
        st = os.lstat(arrival.path)
        key = f"unread\0{arrival.path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"
    except OSError:
        key = f"unread\0{arrival.path}\0{time.time_ns()}"
    return hashlib.sha256(key.encode()).hexdigest()


def move_out(source: Path, target: Path) -> None:
    """Move a file (or a symlink itself, never its target) out of the inbox.

    A hard link then an unlink, rather than a rename: watchdog holds back every event for
    0.5 s behind a rename out of the folder, which would delay the next verdicts.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            if not os.path.samestat(os.lstat(source), os.lstat(target)):  # a crash after the link
                raise
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.move(str(source), str(target))  # another filesystem: copy, then delete
            return
        os.unlink(source)
    except FileNotFoundError:
        pass  # already moved (a restart finishing earlier work)
    except OSError as exc:
        log.error("cannot move %s to %s: %s", source, target, exc)
