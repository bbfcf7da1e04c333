"""The inbox side of the daemon: which files are there, and when each can be taken.

watchdog events (or a scan) -> temporary names left alone -> size, time and inode tracked ->
complete by its format's rule (`formats`) and settled -> read once, never through a symlink,
never blocking on a FIFO -> an `Arrival`. Files leave the inbox through `move_out` (or stay,
remembered by `Intake.keep`, or watched a while longer by `Intake.hold`).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import queue
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .digest import file_sha256
from .errors import ImageError
from .formats import COMPLETE, INCOMPLETE, UNKNOWN, completeness
from .names import printable
from .preprocess import check_file_size, read_bytes
from .timing import STAGE_TIMES

log = logging.getLogger("inspector.intake")

# Names that writers use while a file is still being written; taken once renamed.
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~")
# Read errors that may go away (the writer has not set the permissions yet, a passing I/O
# error); other read errors are final (a symlink or a FIFO swapped in).
_PASSING_READ_ERRORS = (errno.EACCES, errno.EPERM, errno.EIO, errno.EAGAIN, errno.ETXTBSY)

Stamp = tuple[int, int, int, int]  # size, mtime_ns, inode, mode: any change means "written again"


def is_temporary(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(TEMP_SUFFIXES)


def stamp_of(st: os.stat_result) -> Stamp:
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode


@dataclass
class Arrival:
    """A file taken from the inbox: its bytes, or why they were not read."""

    path: Path
    data: bytes | None
    error: str | None = None  # a symlink, a special or too large file, unreadable, unfinished
    unfinished: bool = False  # still incomplete by its format's rule when `incomplete_timeout` ran out
    stamp: Stamp | None = None  # the file's stamp when it was read


@dataclass
class _Tracked:
    """A file seen in the inbox and not yet taken."""

    stamp: Stamp
    changed_at: float
    checked: tuple[Stamp, str] | None = None  # (stamp, completeness state) at the last read
    # Its writer is done with it (closed it, or renamed it in): complete by its format's rule, it
    # is taken at once, without waiting for it to settle.
    final: bool = False


@dataclass
class _Ignored:
    """A file left in the inbox on purpose, ignored while its stamp is unchanged."""

    stamp: Stamp
    since: float
    payload: Any = None


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
            # Renamed in, or closed by its writer: finished, if its format's rule finds it complete.
            self.q.put((path, kind in ("moved", "closed")))


class Intake:
    """Follows one inbox folder; `take` hands over the files that are complete.

    A file is read once it is unchanged for `quick_settle` seconds; what happens then depends on
    its format's completeness rule (`formats.completeness`): a complete file is taken; a file of
    a format without a rule once unchanged for `settle`; an incomplete file (or an empty one, or
    one that cannot be read yet) only once unchanged for `incomplete_timeout`, then as an error.
    A symlink, a special file (FIFO, socket, device) or a file too large is never read: it is
    taken as an error once unchanged for `settle`. A file is looked at again only when it changed
    or its next wait is over: nothing is retried in a hot loop.
    """

    def __init__(self, inbox: Path, polling: bool = False, settle: float = 0.5, quick_settle: float = 0.05,
                 incomplete_timeout: float = 10.0):
        self.inbox = Path(os.path.abspath(inbox))
        self.real_inbox = Path(os.path.realpath(self.inbox))
        self.polling = polling
        self.settle, self.quick_settle, self.incomplete_timeout = settle, quick_settle, incomplete_timeout
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._tracked: dict[Path, _Tracked] = {}
        self._kept: dict[Path, _Ignored] = {}  # --on-done keep: judged files left in the inbox
        self._held: dict[Path, _Ignored] = {}  # unfinished files rejected, watched a while longer
        self._observer = None
        self._identity: tuple[int, int] | None = None  # the inbox folder watched (device, inode)
        self._checked_at = 0.0

    def start(self) -> None:
        """Start following watchdog events (`polling`: by polling the folder, for network filesystems)."""
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
        observer.schedule(_Events(self.inbox, self._events), str(self.inbox), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._identity = self._inbox_identity()

    def check_inbox(self, every: float = 0.25) -> None:
        """Watch the inbox again when it was deleted and recreated: its watch went with it, and
        only the rescans would find new files. Said in the log, as is an inbox gone missing."""
        now = time.monotonic()
        if now - self._checked_at < every:
            return
        self._checked_at = now
        identity = self._inbox_identity()
        if identity == self._identity:
            return
        if identity is None:
            log.error("inbox %s is gone; waiting for it to come back", self.inbox)
            self._identity = None
            return
        self.stop()
        self.real_inbox = Path(os.path.realpath(self.inbox))
        try:
            self.start()
        except OSError as exc:  # gone again meanwhile: tried at the next check
            log.error("cannot watch inbox %s: %s", self.inbox, exc)
            self._identity = None
            return
        log.warning("inbox %s was recreated; watching the new folder", self.inbox)
        self.scan()

    def _inbox_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.inbox)
        except OSError:
            return None
        return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None

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
                path, final = self._events.get_nowait()
            except queue.Empty:
                return
            self._track(path, final)

    def wait(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for an event, and look at the file it names."""
        try:
            path, final = self._events.get(timeout=timeout)
        except queue.Empty:
            return
        self._track(path, final)

    def keep(self, path: Path) -> None:
        """A judged file stays in the inbox (--on-done keep): ignore it until it changes."""
        self._ignore(path, None, self._kept)

    def hold(self, path: Path, payload: Any) -> None:
        """A file rejected as unfinished stays in the inbox (a copy was set aside): if it changes it
        is taken again (its new content gets its own verdict); if it stays unchanged for
        `incomplete_timeout`, `released` hands it back with `payload`, to be removed."""
        self._ignore(path, payload, self._held)

    def released(self) -> list[tuple[Path, Any]]:
        """Held files unchanged for `incomplete_timeout` since they were held: (path, payload)."""
        done, now = [], time.monotonic()
        for path, ignored in list(self._held.items()):
            if now - ignored.since < self.incomplete_timeout:
                continue
            del self._held[path]
            try:
                unchanged = stamp_of(os.lstat(path)) == ignored.stamp
            except FileNotFoundError:
                continue
            if unchanged:
                done.append((path, ignored.payload))
            else:
                self._track(path)
        return done

    def _ignore(self, path: Path, payload: Any, into: dict[Path, _Ignored]) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        self._tracked.pop(path, None)
        into[path] = _Ignored(stamp_of(st), time.monotonic(), payload)

    def _track(self, path: Path, final: bool = False) -> None:
        if is_temporary(path.name):
            return
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._tracked.pop(path, None)
            return
        except OSError:
            return
        if stat.S_ISDIR(st.st_mode):
            return
        stamp = stamp_of(st)
        for ignoring in (self._kept, self._held):
            ignored = ignoring.get(path)
            if ignored is not None:
                if ignored.stamp == stamp:
                    return
                del ignoring[path]  # written again: a new file to judge
        known = self._tracked.get(path)
        if known is None or known.stamp != stamp:
            self._tracked[path] = _Tracked(stamp, time.monotonic(), final=final)
        elif final:
            known.final = True

    def take(self, limit: int) -> list[Arrival]:
        """Files that are complete now (or waited for long enough), each read once, at most `limit`."""
        ready: list[Arrival] = []
        now = time.monotonic()
        waits = {COMPLETE: self.quick_settle, UNKNOWN: self.settle, INCOMPLETE: self.incomplete_timeout}
        for path, t in list(self._tracked.items()):
            if len(ready) >= limit:
                break
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                del self._tracked[path]
                continue
            except OSError:
                continue
            stamp = stamp_of(st)
            if stamp != t.stamp:
                self._tracked[path] = _Tracked(stamp, now)
                continue
            age = now - t.changed_at
            refusal = self._refusal(path, st)
            if refusal is not None:
                if age >= self.settle:
                    ready.append(Arrival(path, None, refusal, stamp=stamp))
                    del self._tracked[path]
                continue
            last = t.checked[1] if t.checked is not None and t.checked[0] == stamp else COMPLETE
            if age < self._wait(t, last, waits):
                continue
            arrival, state, detail = self._read(path, stamp)
            if arrival is None:  # changed while it was read, or gone: look again
                self._track(path)
                continue
            if age >= self._wait(t, state, waits):
                if state == INCOMPLETE and arrival.data is not None:
                    arrival.error, arrival.unfinished = detail, True
                ready.append(arrival)
                del self._tracked[path]
            else:
                t.checked = (stamp, state)  # looked at again once its wait is over, or when it changes
        return ready

    @staticmethod
    def _wait(t: _Tracked, state: str, waits: dict[str, float]) -> float:
        return 0.0 if t.final and state == COMPLETE else waits[state]

    def _refusal(self, path: Path, st: os.stat_result) -> str | None:
        """Why a file is not to be read at all: a symlink, a special file, or too large."""
        if stat.S_ISLNK(st.st_mode):
            return self._symlink_reason(path)
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
            return f"not a regular file ({kind}); never opened"
        try:
            check_file_size(st.st_size, path)
        except ImageError as exc:
            return exc.reason
        return None

    def _read(self, path: Path, stamp: Stamp) -> tuple[Arrival | None, str, str]:
        """The file read now, never following a symlink nor blocking, with its completeness
        (state, what is missing); no arrival when the file changed meanwhile. A read error that
        may pass (permission denied) counts as incomplete, any other as final."""
        try:
            with STAGE_TIMES.stage("read"):
                arrival = Arrival(path, read_bytes(path, follow_symlinks=False), stamp=stamp)
            state, detail = completeness(arrival.data)
        except ImageError as exc:
            arrival, detail = Arrival(path, None, exc.reason, stamp=stamp), exc.reason
            cause = exc.__cause__
            state = INCOMPLETE if isinstance(cause, OSError) and cause.errno in _PASSING_READ_ERRORS else COMPLETE
        try:
            if stamp_of(os.lstat(path)) != stamp:
                return None, state, detail
        except FileNotFoundError:
            return None, state, detail
        return arrival, state, detail

    def _symlink_reason(self, path: Path) -> str:
        if Path(os.path.realpath(path)).parent != self.real_inbox:
            return f"symlink to a file outside the inbox ({printable(os.readlink(path))}); not followed"
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
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def move_out(source: Path, target: Path, digest: str | None = None, stamp: Stamp | None = None) -> bool:
    """Move a file (or a symlink itself, never its target) out of the inbox; true once it is out.

    Idempotent and verified. A target that already holds the file (the same inode, after a crash
    between link and unlink; or a complete copy) only has the source unlinked; a stale or
    truncated target is replaced. Across filesystems the file is copied under a temporary name,
    synced, its size and SHA-256 checked against the source and `digest` (the hash it was judged
    by), then renamed into place, and only then is the source unlinked. A full disk (or any other
    failure) leaves the source in the inbox and no partial copy: the next scan tries again. With
    `stamp`, a source written again since it was read is left in the inbox, to be judged again.

    A hard link then an unlink, rather than a rename: watchdog holds back every event for
    0.5 s behind a rename out of the folder, which would delay the next verdicts.
    """
    try:
        try:
            st = os.lstat(source)
        except FileNotFoundError:
            return True  # already moved (a restart finishing earlier work)
        if stamp is not None and stamp_of(st)[:3] != stamp[:3]:
            log.warning("%s was written again after it was read; left in the inbox to be judged again",
                        printable(str(source)))
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        if not _holds(target, source, st, digest):
            try:
                _link(source, target)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                _copy(source, target, st, digest)  # another filesystem
        os.unlink(source)
        return True
    except FileNotFoundError:
        return True  # moved meanwhile by another worker
    except OSError as exc:
        log.error("cannot move %s to %s: %s; it stays in the inbox and is tried again at the next scan",
                  printable(str(source)), target, exc.strerror or exc)
        return False


def copy_out(source: Path, target: Path, digest: str | None = None) -> bool:
    """Copy a file out of the inbox (verified, as `move_out` does), leaving it where it is."""
    try:
        st = os.lstat(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not _holds(target, source, st, digest):
            _copy(source, target, st, digest)
        return True
    except OSError as exc:
        log.error("cannot copy %s to %s: %s; tried again at the next scan", printable(str(source)), target,
                  exc.strerror or exc)
        return False


def _holds(target: Path, source: Path, st: os.stat_result, digest: str | None) -> bool:
    """Whether `target` already is the file at `source`: the same inode, the same symlink, or a
    regular file of the same size and content (`digest`, or the source's own hash)."""
    try:
        existing = os.lstat(target)
    except FileNotFoundError:
        return False
    if os.path.samestat(existing, st):
        return True
    if stat.S_ISLNK(existing.st_mode) and stat.S_ISLNK(st.st_mode):
        return os.readlink(target) == os.readlink(source)
    if not (stat.S_ISREG(existing.st_mode) and stat.S_ISREG(st.st_mode)) or existing.st_size != st.st_size:
        return False
    return file_sha256(target, follow_symlinks=False) == (digest or file_sha256(source, follow_symlinks=False))


def _temporary(target: Path) -> Path:
    return target.parent / f".{secrets.token_hex(8)}.tmp"


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:  # a stale or truncated copy from an earlier attempt: replace it
        tmp = _temporary(target)
        os.link(source, tmp, follow_symlinks=False)
        os.replace(tmp, target)


def _copy(source: Path, target: Path, st: os.stat_result, digest: str | None) -> None:
    """Copy to a temporary name, check it, rename it into place; nothing is left on failure."""
    tmp = _temporary(target)
    try:
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(source), tmp)
        elif stat.S_ISFIFO(st.st_mode):
            os.mkfifo(tmp)
        elif stat.S_ISREG(st.st_mode):
            read = hashlib.sha256()
            with open(os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as src, \
                    open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    read.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            size = os.stat(tmp).st_size
            if (size != st.st_size or (digest and read.hexdigest() != digest)
                    or file_sha256(tmp, follow_symlinks=False) != read.hexdigest()):
                raise OSError(errno.EIO, f"the copy does not match the file judged ({size} of {st.st_size} bytes)")
        else:  # a socket or a device: nothing to copy
            return
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
