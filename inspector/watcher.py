"""`inspector watch`: judge every image that lands in an inbox exactly once.

One image's way: event or scan -> ignore temporary names -> stable and complete? -> read once,
hash -> claim a row (unique hash, status pending) -> decode + preprocess (threads) -> batch
through the model -> heatmap and overlay written -> verdict committed -> file moved.

The database row is the truth and files follow it: a crash between two steps leaves a state
that the next start finishes. A pending row is scored again; a finished row whose file is still
in the inbox only has its file moved. Nothing is scored twice because the content hash is unique.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import queue
import shutil
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .bundle import Bundle
from .claims import CLAIMED, DUPLICATE, FINISH, Claims, Request
from .errors import ConfigError
from .inference import Inferencer, Result
from .preprocess import MAX_FILE_BYTES, looks_complete
from .store import Store, utcnow

log = logging.getLogger("inspector.watch")

# Names that writers use while a file is still being written; taken once renamed.
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~")
# Formats whose last bytes tell whether the writer has finished.
CHECKABLE_SUFFIXES = (".png", ".jpg", ".jpeg")


def is_temporary(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(TEMP_SUFFIXES)


@dataclass
class WatchOptions:
    out: Path
    batch: int = 16
    on_done: str = "move"  # move | keep
    polling: bool = False
    settle: float = 0.5  # seconds a file's size and mtime must stay unchanged (formats we cannot check)
    quick_settle: float = 0.05  # the same for a PNG/JPEG that also has its end marker
    incomplete_timeout: float = 10.0  # an unfinished-looking file is judged after this long unchanged
    rescan_every: float = 10.0  # safety net for missed events
    summary_every: float = 60.0
    threads: int = 4
    station: str = field(default_factory=socket.gethostname)  # recorded with every inspection
    claim_timeout: float = 60.0  # a claim from another host older than this is taken over


@dataclass
class Tracked:
    """A file seen in the inbox and not yet handled."""

    size: int
    mtime_ns: int
    changed_at: float
    checked: tuple[int, int] | None = None  # (size, mtime) last found incomplete


@dataclass
class Work:
    """One file taken from the inbox for this batch."""

    path: Path
    row_id: int
    received_at: object
    data: bytes | None = None
    error: str | None = None
    result: Result | None = None


@dataclass
class Counters:
    images: int = 0
    defects: int = 0
    errors: int = 0
    duplicates: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (f"summary: {self.images} images, {self.defects} defects, {self.errors} errors, "
                f"{self.duplicates} duplicates, {self.images / elapsed:.2f} images/s")


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


class Watcher:
    def __init__(self, inbox: Path, bundle: Bundle, store: Store, options: WatchOptions):
        self.inbox = Path(os.path.abspath(inbox))
        self.real_inbox = Path(os.path.realpath(self.inbox))
        self.out = Path(os.path.abspath(options.out))
        if self.out == self.inbox or self.inbox in self.out.parents:
            raise ConfigError("--out must not be inside the inbox")
        self.bundle, self.store, self.options = bundle, store, options
        self.stop_event = threading.Event()
        self.counters = Counters()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._tracked: dict[Path, Tracked] = {}
        self._kept: dict[Path, tuple[int, int]] = {}  # --on-done keep: files already judged
        self._pool = ThreadPoolExecutor(max_workers=options.threads, thread_name_prefix="inspector-io")
        self.inferencer = Inferencer(bundle, threads=options.threads, contain_failures=True)
        self.claims = Claims(store, station=options.station, timeout=options.claim_timeout)
        self.model_id = store.model_record(
            bundle.fingerprint, bundle.pipeline.name, str(bundle.path), bundle.threshold)

    # -- the main loop ---------------------------------------------------------------------

    def run(self, install_signals: bool = True, max_idle: float | None = None) -> None:
        """Watch until SIGINT/SIGTERM (or `stop()`); the batch in hand is finished first."""
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.stop())
        observer = self._observer()
        observer.start()
        try:
            self.recover()
            self.scan()
            last_scan = last_summary = last_work = time.monotonic()
            while not self.stop_event.is_set():
                self._drain_events()
                now = time.monotonic()
                if now - last_scan >= self.options.rescan_every:
                    self.scan()
                    last_scan = now
                ready = self._ready()
                if ready:
                    try:
                        self.process(ready)
                    except Exception:  # e.g. a full disk: keep running, retry these files later
                        log.exception("batch failed; its %d files stay in the inbox and are retried", len(ready))
                        self.stop_event.wait(1.0)
                    last_work = time.monotonic()
                else:
                    # Files waiting to settle are looked at again soon; an idle inbox wakes on events.
                    self._wait_for_events(0.01 if self._tracked else 0.25)
                    if max_idle is not None and not self._tracked and time.monotonic() - last_work > max_idle:
                        break
                if time.monotonic() - last_summary >= self.options.summary_every:
                    log.warning(self.counters.line())
                    last_summary = time.monotonic()
        finally:
            observer.stop()
            observer.join()
            self._pool.shutdown(wait=True)
            self.inferencer.close()
            log.warning("stopped; %s", self.counters.line())

    def stop(self) -> None:
        self.stop_event.set()

    def _observer(self):
        if self.options.polling:
            from watchdog.observers.polling import PollingObserver

            observer = PollingObserver(timeout=0.5)
        else:
            from watchdog.observers import Observer

            observer = Observer()
        observer.schedule(_Events(self.inbox, self._events), str(self.inbox), recursive=False)
        observer.daemon = True
        return observer

    def _drain_events(self) -> None:
        while True:
            try:
                path = self._events.get_nowait()
            except queue.Empty:
                return
            self._track(path)

    def _wait_for_events(self, timeout: float) -> None:
        try:
            path = self._events.get(timeout=timeout)
        except queue.Empty:
            return
        self._track(path)

    def scan(self) -> None:
        """Look at everything in the inbox (start-up, and now and then in case an event was lost)."""
        try:
            entries = list(os.scandir(self.inbox))
        except OSError as exc:
            log.error("cannot list inbox %s: %s", self.inbox, exc)
            return
        for entry in sorted(entries, key=lambda e: e.name):
            self._track(Path(entry.path))

    def _track(self, path: Path) -> None:
        if is_temporary(path.name):
            return
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._tracked.pop(path, None)
            return
        if not (os.path.islink(path) or _is_regular(st)):
            return
        stamp = (st.st_size, st.st_mtime_ns)
        if self._kept.get(path) == stamp:
            return
        known = self._tracked.get(path)
        if known is None or (known.size, known.mtime_ns) != stamp:
            self._tracked[path] = Tracked(st.st_size, st.st_mtime_ns, time.monotonic())

    def _ready(self) -> list[tuple[Path, bytes | None]]:
        """Files that are complete now, read once, at most one batch of them.

        A PNG or JPEG is complete once it is unchanged for `quick_settle` and ends with its end
        marker; other formats once unchanged for `settle`. A PNG or JPEG that stays unfinished
        is taken (and rejected as truncated) after `incomplete_timeout`.
        """
        ready: list[tuple[Path, bytes | None]] = []
        now = time.monotonic()
        options = self.options
        for path, t in list(self._tracked.items()):
            if len(ready) >= options.batch:
                break
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                del self._tracked[path]
                continue
            stamp = (st.st_size, st.st_mtime_ns)
            if stamp != (t.size, t.mtime_ns):
                self._tracked[path] = Tracked(*stamp, now)
                continue
            age = now - t.changed_at
            checkable = path.suffix.lower() in CHECKABLE_SUFFIXES
            if os.path.islink(path) or st.st_size > MAX_FILE_BYTES or not checkable:
                if age >= options.settle:
                    ready.append((path, _read_no_follow(path) if _is_regular(st) and st.st_size <= MAX_FILE_BYTES else None))
                    del self._tracked[path]
                continue
            if age < options.quick_settle or t.checked == stamp and age < options.incomplete_timeout:
                continue
            data = _read_no_follow(path)
            if data is None:
                continue
            if looks_complete(data) or age >= options.incomplete_timeout:
                ready.append((path, data))
                del self._tracked[path]
            else:
                t.checked = stamp  # still being written, or truncated for good: look again later
        return ready

    # -- one batch -------------------------------------------------------------------------

    def process(self, files: list[tuple[Path, bytes | None]]) -> None:
        """Claim, score, record and move one batch of files."""
        started = time.perf_counter()
        work = self._claim(files)
        if not work:
            return
        readable = [w for w in work if w.error is None]
        judged = self.inferencer.judge([(w.path, w.data) for w in readable], self.options.batch, keep_maps=True)
        for w, result in zip(readable, judged):
            w.data = None  # free the file's bytes
            w.result, w.error = result, result.error
        elapsed_ms = (time.perf_counter() - started) * 1000 / len(work)
        updates: dict[int, dict] = {}
        heat_jobs = []
        for w in work:
            if w.error is None:
                heat, over = self._heat_paths(w)
                heat_jobs.append(self._pool.submit(self._write_heatmaps, w.result, heat, over))
                updates[w.row_id] = dict(
                    status="done", verdict=w.result.verdict, score=w.result.score, threshold=self.bundle.threshold,
                    heatmap_path=str(heat), overlay_path=str(over), model_id=self.model_id,
                    stored_path=str(self._destination(w, "archive")) if self.options.on_done == "move" else str(w.path),
                    width=w.result.width, height=w.result.height,
                )
            else:
                updates[w.row_id] = dict(status="error", verdict="error", error_reason=w.error,
                                         model_id=self.model_id,
                                         stored_path=str(self._destination(w, "rejected")))
        for job in heat_jobs:
            job.result()  # heatmaps are on disk before the row that names them
        now = utcnow()
        for values in updates.values():
            values.update(scored_at=now, processing_ms=elapsed_ms)
        lost = self.claims.commit(updates)
        for w in work:
            if w.row_id in lost:  # another worker took this claim over and owns the verdict
                log.warning("%s: inspection %d was taken over by another worker; result dropped", w.path.name, w.row_id)
                continue
            self._finish(w.path, updates[w.row_id])
            self._count(w.path, updates[w.row_id], w.row_id)

    def _claim(self, files: list[tuple[Path, bytes | None]]) -> list[Work]:
        """Claim each file's content (`claims`); files judged already are finished or set aside."""
        digests = self._pool.map(_content_key, [path for path, _ in files], [data for _, data in files])
        requests = [Request(str(path), digest, len(data) if data is not None else None)
                    for (path, data), digest in zip(files, digests)]
        claimed = []
        for (path, data), answer in zip(files, self.claims.claim(requests)):
            if answer.state == CLAIMED:
                reason = None if data is not None else self._unreadable_reason(path)
                claimed.append(Work(path=path, row_id=answer.row_id, received_at=answer.received_at, data=data,
                                    error=reason))
            elif answer.state == FINISH:
                self._finish(path, {"status": answer.status, "stored_path": answer.stored_path})
            elif answer.state == DUPLICATE:
                # A copy of a rejected file (say, a second empty file) is rejected too.
                folder = "rejected" if answer.status == "error" else "duplicates"
                self._move(path, self.out / folder / _day(utcnow()) / f"{answer.row_id}_dup_{path.name}")
                self.counters.duplicates += 1
                log.warning("%s has the same content as inspection %d (%s); moved to %s/",
                            path.name, answer.row_id, answer.first_name, folder)
            else:
                log.debug("%s is being judged by another worker", path.name)
        return claimed

    def _unreadable_reason(self, path: Path) -> str:
        if os.path.islink(path):
            target = os.path.realpath(path)
            if Path(target).parent != self.real_inbox:
                return f"symlink to a file outside the inbox ({os.readlink(path)}); not followed"
            return "symlink inside the inbox; only regular files are judged, the link was not followed"
        try:
            size = os.lstat(path).st_size
        except OSError as exc:
            return f"cannot read file: {exc.strerror}"
        if size > MAX_FILE_BYTES:
            return f"file too large ({size} bytes, limit {MAX_FILE_BYTES})"
        return "cannot read file (no permission, or it is not a regular file)"

    # -- files -----------------------------------------------------------------------------

    def _heat_paths(self, w: Work) -> tuple[Path, Path]:
        folder = self.out / "heatmaps" / _day(w.received_at)
        stem = f"{w.row_id}_{w.path.stem}"
        return folder / f"{stem}_heatmap.png", folder / f"{stem}_overlay.png"

    def _write_heatmaps(self, result: Result, heat: Path, over: Path) -> None:
        self.inferencer.write_pictures(result, heat, over)

    def _destination(self, w: Work, kind: str) -> Path:
        return self.out / kind / _day(w.received_at) / f"{w.row_id}_{w.path.name}"

    def _finish(self, path: Path, values: dict) -> None:
        """After the verdict is committed: move the file (rejects always), or remember it is kept."""
        if values["status"] == "error" or self.options.on_done == "move":
            self._move(path, Path(values["stored_path"]))
        else:
            try:
                st = os.lstat(path)
                self._kept[path] = (st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                pass

    def _move(self, source: Path, target: Path) -> None:
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

    def _count(self, path: Path, values: dict, row_id: int) -> None:
        self.counters.images += 1
        if values["status"] == "error":
            self.counters.errors += 1
            log.warning("%s: error: %s (inspection %d)", path.name, values["error_reason"], row_id)
        else:
            self.counters.defects += values["verdict"] == "defect"
            log.info("%s: %s score %.6g threshold %.6g (inspection %d)", path.name, values["verdict"],
                     values["score"], values["threshold"], row_id)

    def recover(self) -> None:
        """At start-up: close the abandoned claims whose file is gone (`Claims.recover`)."""
        pending, vanished = self.claims.recover()
        if pending:
            log.warning("resuming: %d inspections were in flight (%d of them lost their file)", pending, vanished)


def _is_regular(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISREG(st.st_mode)


def _read_no_follow(path: Path) -> bytes | None:
    """Read a regular file without following a symlink swapped in at the last moment."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def _content_key(path: Path, data: bytes | None) -> str:
    """SHA-256 of the content; for a file whose content is not read (a symlink, a huge or
    unreadable file), of its name, size, time and inode instead."""
    if data is not None:
        return hashlib.sha256(data).hexdigest()
    try:
        st = os.lstat(path)
        key = f"unread\0{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"
    except OSError:
        key = f"unread\0{path}\0{time.time_ns()}"
    return hashlib.sha256(key.encode()).hexdigest()


def _day(when) -> str:
    return when.strftime("%Y-%m-%d")

