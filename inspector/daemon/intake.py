"""The inbox side of the daemon: which files are there, and when each can be taken.

watchdog events (or a scan) -> temporary names left alone -> size, time and inode tracked ->
complete by its format's rule (`formats`) and settled -> read once, never through a symlink,
never blocking on a FIFO -> an `Arrival`. Events come from `events`; files leave the inbox
through `moves.move_out` (or stay, remembered by `Intake.keep`, or watched a while longer by
`Intake.hold`); one its batch left in the inbox as it was is taken again later (`retry_wait`).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ImageError
from ..formats import COMPLETE, INCOMPLETE, UNKNOWN, check_file_size, completeness, read_bytes
from ..names import printable
from ..timing import STAGE_TIMES
from .events import InboxEvents

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
    tries: int = 0  # batches that took it before and left it in the inbox as it was


@dataclass
class _Tracked:
    """A file seen in the inbox and not yet taken."""

    stamp: Stamp
    changed_at: float
    checked: tuple[Stamp, str] | None = None  # (stamp, completeness state) at the last read
    # Its writer is done with it (closed it, or renamed it in): complete by its format's rule, it
    # is taken at once, without waiting for it to settle.
    final: bool = False
    tries: int = 0  # batches that took it and left it in the inbox as it was (`retry_wait`)


@dataclass
class _Ignored:
    """A file left in the inbox on purpose, ignored while its stamp is unchanged."""

    stamp: Stamp
    since: float
    payload: Any = None


class Intake:
    """Follows one inbox folder; `take` hands over the files that are complete.

    A file is read once unchanged for `quick_settle` seconds; then, by its format's completeness
    rule (`formats.completeness`), a complete file is taken, one of a format without a rule once
    unchanged for `settle`, an incomplete, empty or unreadable one once unchanged for
    `incomplete_timeout` (as an error). A symlink, a special or too large file is never read: it
    is taken as an error once unchanged for `settle`. A file is looked at again only when it
    changed or its next wait is over (`retry_wait`): nothing is retried in a hot loop."""

    def __init__(self, inbox: Path, polling: bool = False, settle: float = 0.5, quick_settle: float = 0.05,
                 incomplete_timeout: float = 10.0, retry_longest: float = 10.0):
        self.inbox = Path(os.path.abspath(inbox))
        self.real_inbox = Path(os.path.realpath(self.inbox))
        self.polling = polling
        self.settle, self.quick_settle, self.incomplete_timeout = settle, quick_settle, incomplete_timeout
        self.events = InboxEvents(self.inbox, polling)
        self._tracked: dict[Path, _Tracked] = {}
        self._kept: dict[Path, _Ignored] = {}  # --on-done keep: judged files left in the inbox
        self._held: dict[Path, _Ignored] = {}  # unfinished files rejected, watched a while longer
        self._taken: dict[Path, Stamp] = {}  # in a batch not finished: not taken again unless written again
        self._folders: set[tuple[str, int, int]] = set()  # subfolders said in the log: name, device, inode
        self.retry_longest = retry_longest

    def start(self) -> None:
        """Start following watchdog events (`polling`: by polling the folder, for network filesystems)."""
        self.events.start()

    def stop(self) -> None:
        self.events.stop()
        if failing := sum(t.tries >= FAILING_AFTER for t in self._tracked.values()):
            log.warning("%d file%s still failing (the errors above) stay%s in the inbox: taken again at the next start",
                        failing, *(("", "s") if failing == 1 else ("s", "")))

    def check_inbox(self, every: float = 0.25) -> None:
        """Watch the inbox again when it was deleted and recreated, and look at what is in it."""
        if self.events.check(every):
            self.real_inbox = Path(os.path.realpath(self.inbox))
            self.scan()

    @property
    def waiting(self) -> bool:  # files not taken yet: settling, unfinished, tried again (not failing for long)
        return any(t.tries < FAILING_AFTER for t in self._tracked.values())

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
        for path, final in self.events.pending():
            self._track(path, final)

    def wait(self, longest: float = 0.25) -> None:
        """Wait for an event and look at its file: `longest` s at most, 10 ms while a file settles."""
        now = time.monotonic()
        due = min((t.changed_at for t in self._tracked.values()), default=now + longest) - now
        event = self.events.next(min(longest, max(0.01, due)))
        if event is not None:
            self._track(*event)

    def finished(self, arrivals: list[Arrival]) -> None:
        """The batch these arrivals were taken for is finished: their files were moved out, kept
        (`keep`) or held (`hold`); one still there as it was taken is taken again later (`retry_wait`)."""
        for arrival in arrivals:
            if self._taken.get(arrival.path) == arrival.stamp:
                del self._taken[arrival.path]
                self._retry(arrival)

    def look_again(self, arrivals: list[Arrival]) -> None:
        """Take these files again now: their content was in a batch not finished then, finished now."""
        self.finished(arrivals)
        for arrival in arrivals:
            self._tracked.pop(arrival.path, None)  # now, not after a retry's wait
            self._track(arrival.path, final=True)

    def _retry(self, arrival: Arrival) -> None:
        try:
            stamp = stamp_of(os.lstat(arrival.path))
        except OSError:
            return  # moved out
        ignored = self._kept.get(arrival.path) or self._held.get(arrival.path)
        if stamp != arrival.stamp or (ignored is not None and ignored.stamp == stamp):
            self._track(arrival.path)  # written again (a new file to judge), or left on purpose
            return
        due = time.monotonic() + retry_wait(arrival.tries, self.retry_longest)
        self._tracked[arrival.path] = _Tracked(stamp, due, tries=arrival.tries + 1)

    def keep(self, path: Path) -> None:
        """A judged file stays in the inbox (--on-done keep): ignore it until it changes."""
        self._ignore(path, None, self._kept)

    def hold(self, path: Path, payload: Any) -> None:
        """A file rejected as unfinished stays in the inbox (a copy set aside): changed, it is taken
        again (a new verdict); unchanged for `incomplete_timeout`, `released` hands it back with `payload`."""
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
            _say_folder_once(self._folders, path, st)
            return
        stamp = stamp_of(st)
        if self._taken.get(path) == stamp:
            return  # in a batch not finished
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
            refused = refusal(path, st, self.real_inbox)
            if refused is not None:
                if age >= self.settle:
                    ready.append(Arrival(path, None, refused, stamp=stamp, tries=t.tries))
                    del self._tracked[path]
                    self._taken[path] = stamp
                continue
            last = t.checked[1] if t.checked is not None and t.checked[0] == stamp else COMPLETE
            if age < _wait(t, last, waits):
                continue
            arrival, state, detail = read_arrival(path, stamp)
            if arrival is None:  # changed while it was read, or gone: look again
                self._track(path)
                continue
            arrival.tries = t.tries
            if age >= _wait(t, state, waits):
                if state == INCOMPLETE and arrival.data is not None:
                    arrival.error, arrival.unfinished = detail, True
                ready.append(arrival)
                del self._tracked[path]
                self._taken[path] = arrival.stamp
            else:
                t.checked = (stamp, state)  # looked at again once its wait is over, or when it changes
        return ready


def _wait(t: _Tracked, state: str, waits: dict[str, float]) -> float:
    """How long a tracked file in `state` stays unchanged before it is taken."""
    return 0.0 if t.final and state == COMPLETE else waits[state]


# A file its batch left in the inbox is taken again after this wait, doubled with each try.
FIRST_RETRY = 0.5
# Left this many times running, a file is failing for a reason that does not pass soon (a
# folder that cannot be written, a file that cannot be removed): it is still tried again, but no
# longer keeps a daemon that quits when idle from quitting.
FAILING_AFTER = 5


def retry_wait(tries: int, longest: float) -> float:
    """The wait before a file its batch left in the inbox (the batch failed for a passing reason,
    or another worker had its content) is taken again, after `tries` such batches before: never
    a hot loop, and not only at the next scan, which a daemon quitting when idle would not wait
    for."""
    return min(longest, FIRST_RETRY * 2 ** min(tries, 30))


def _say_folder_once(said: set[tuple[str, int, int]], path: Path, st: os.stat_result) -> None:
    """Only files directly in the inbox are judged: a folder in it is said once (a camera
    writing into dated subfolders would otherwise see nothing judged, and no word why)."""
    key = (path.name, st.st_dev, st.st_ino)
    if key in said:
        return
    said.add(key)
    log.warning("%s is a folder: only files directly in the inbox are judged, not those in its "
                "subfolders (have the camera write into the inbox itself, or watch that folder)",
                printable(str(path)))


def read_arrival(path: Path, stamp: Stamp) -> tuple[Arrival | None, str, str]:
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


def refusal(path: Path, st: os.stat_result, real_inbox: Path) -> str | None:
    """Why a file is not to be read at all: a symlink, a special file, or too large."""
    if stat.S_ISLNK(st.st_mode):
        return _symlink_reason(path, real_inbox)
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        return f"not a regular file ({kind}); never opened"
    try:
        check_file_size(st.st_size, path)
    except ImageError as exc:
        return exc.reason
    return None


def _symlink_reason(path: Path, real_inbox: Path) -> str:
    if Path(os.path.realpath(path)).parent != real_inbox:
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
