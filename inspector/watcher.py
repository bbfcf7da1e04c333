"""`inspector watch`: judge every image that lands in an inbox exactly once.

The daemon loop: intake (complete files, read once) -> claim (a pending row per content hash)
-> infer (decode + preprocess in threads, one model batch, error maps, verdicts) -> heatmap and
overlay written -> commit (verdicts of rows still ours) -> move the files out of the inbox.

The database row is the truth and files follow it: a crash between two steps leaves a state
that the next start finishes. A pending row is scored again; a finished row whose file is still
in the inbox only has its file moved. Nothing is scored twice because the content hash is unique.

Between batches: SIGHUP reloads the model bundle (`--model`, a symlink resolved again), and each
batch's verdicts feed the drift monitor (`drift`), which logs when the line drifts and clears.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


from . import drift
from .bundle import Bundle, load_bundle
from .claims import CLAIMED, DUPLICATE, FINISH, Claims, Request
from .errors import ConfigError, DatabaseError
from .inference import Inferencer, Result, default_threads
from .intake import Arrival, Intake, content_key, copy_out, move_out
from .names import output_name, path_to_text, printable
from .pictures import picture_paths_bounded
from .store import Store, utcnow
from .timing import STAGE_TIMES

log = logging.getLogger("inspector.watch")


@dataclass
class WatchOptions:
    out: Path
    batch: int = 32
    on_done: str = "move"  # move | keep
    polling: bool = False
    settle: float = 0.5  # seconds a file's size and mtime must stay unchanged (formats we cannot check)
    quick_settle: float = 0.05  # the same for a PNG/JPEG that also has its end marker
    incomplete_timeout: float = 10.0  # an unfinished-looking file is judged after this long unchanged
    rescan_every: float = 10.0  # safety net for missed events
    heartbeat_every: float = 10.0  # how often the daemon's run record says it is still at work
    summary_every: float = 60.0
    threads: int = field(default_factory=default_threads)  # decoding, hashing, pictures
    station: str = field(default_factory=socket.gethostname)  # recorded with every inspection
    claim_timeout: float = 60.0  # a claim from another host older than this is taken over
    drift_window: int = drift.DEFAULT_WINDOW  # parts the drift monitor looks back on (0: off)
    drift_limit: float = drift.DEFAULT_LIMIT  # shift of passed scores, in calibration bands, that is drift


@dataclass
class Work:
    """One file claimed for this batch."""

    arrival: Arrival
    row_id: int
    received_at: datetime
    digest: str  # the content hash it was claimed by
    result: Result | None = None

    @property
    def path(self) -> Path:
        return self.arrival.path

    @property
    def error(self) -> str | None:
        return self.arrival.error if self.result is None else self.result.error


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


class Watcher:
    """`model_source`: where `reload` loads the bundle from (the --model path as given, maybe a
    symlink; default: the bundle's own path)."""

    def __init__(self, inbox: Path, bundle: Bundle, store: Store, options: WatchOptions,
                 model_source: Path | None = None):
        self.intake = Intake(inbox, options.polling, options.settle, options.quick_settle,
                             options.incomplete_timeout)
        self.out = Path(os.path.abspath(options.out))
        inbox = self.intake.inbox
        if self.out == inbox or inbox in self.out.parents:
            raise ConfigError("--out must not be inside the inbox")
        self.store, self.options = store, options
        self.model_source = Path(os.path.abspath(model_source or bundle.path))
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.counters = Counters()
        # Hashing files and writing pictures; decoding runs in the inferencer's own threads.
        self._pool = ThreadPoolExecutor(max_workers=options.threads, thread_name_prefix="inspector-io")
        self.claims = Claims(store, station=options.station, timeout=options.claim_timeout)
        self.inferencer = None
        reference = drift.Reference.of(bundle)
        inferencer = Inferencer(bundle, threads=options.threads, contain_failures=True)
        inferencer.warm_up(options.batch)  # the first part must not wait for graph tracing
        self._use(bundle, inferencer, reference)

    def _use(self, bundle: Bundle, inferencer: Inferencer, reference: drift.Reference) -> None:
        """Judge with `bundle` from now on: its model row, its drift reference (the window
        seeded with what this station's earlier daemons judged with it)."""
        model_id = self.store.model_record(bundle.fingerprint, bundle.pipeline.name, str(bundle.path),
                                           bundle.threshold)
        old = self.inferencer
        self.bundle, self.inferencer, self.model_id = bundle, inferencer, model_id
        if old is not None:
            old.close()
        window = self.options.drift_window
        self.drift = drift.Monitor(reference, window, self.options.drift_limit)
        if window:
            passed, outcomes = drift.recent(self.store, self.options.station, model_id, window)
            self.drift.passed.extend(passed)
            self.drift.outcomes.extend(outcomes)

    # -- the main loop ---------------------------------------------------------------------

    def run(self, install_signals: bool = True, max_idle: float | None = None) -> None:
        """Watch until SIGINT/SIGTERM (or `stop()`); the batch in hand is finished first."""
        previous = {}
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: self.stop())
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: self.request_reload())
        intake = self.intake
        intake.start()
        run_id = None
        try:
            self.recover()
            run_id = self.store.start_run(self.claims.worker, self.options.station, self.model_id)
            intake.scan()
            last_scan = last_summary = last_work = last_beat = time.monotonic()
            while not self.stop_event.is_set():
                if self.reload_requested.is_set():  # between batches: no part is judged by two models
                    self.reload_requested.clear()
                    if self.reload():
                        self.store.touch_run(run_id, stopped=True)  # runs are per model: stats' rates
                        run_id = self.store.start_run(self.claims.worker, self.options.station, self.model_id)
                intake.check_inbox()
                intake.drain()
                now = time.monotonic()
                if now - last_scan >= self.options.rescan_every:
                    self.store.check_file()
                    intake.scan()
                    last_scan = now
                if now - last_beat >= self.options.heartbeat_every:
                    self.store.touch_run(run_id)
                    last_beat = now
                released = intake.released()
                if released:
                    self.store.check_file()
                for path, (target, digest) in released:
                    move_out(path, target, digest)  # an unfinished file that stayed so: its copy is kept
                ready = intake.take(self.options.batch)
                if ready:
                    self._process_or_isolate(ready)
                    last_work = time.monotonic()
                else:
                    # Files waiting to settle are looked at again soon; an idle inbox wakes on events.
                    intake.wait(0.01 if intake.waiting else 0.25)
                    if max_idle is not None and not intake.waiting and time.monotonic() - last_work > max_idle:
                        break
                if time.monotonic() - last_summary >= self.options.summary_every:
                    log.info(self.counters.line())
                    last_summary = time.monotonic()
        except DatabaseError as exc:  # unreachable, or its file deleted or replaced: stop before moving files
            log.error("stopping: %s", exc)
            run_id = None
            raise
        finally:
            if run_id is not None:
                self.store.touch_run(run_id, stopped=True)
            intake.stop()
            self._pool.shutdown(wait=True)
            self.inferencer.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            log.info("stopped; %s", self.counters.line())

    def stop(self) -> None:
        self.stop_event.set()

    def request_reload(self) -> None:
        """Load the bundle again from `model_source` before the next batch (SIGHUP)."""
        self.reload_requested.set()

    def reload(self) -> bool:
        """Load and check the bundle `model_source` names now (a symlink is resolved again), run
        its model once, then judge with it; if any of that fails, an ERROR and the old model
        stays. Returns whether the model was switched."""
        source = self.model_source
        target = Path(os.path.realpath(source))
        old = self.bundle
        try:
            bundle = load_bundle(target)
            reference = drift.Reference.of(bundle)
            inferencer = Inferencer(bundle, threads=self.options.threads, contain_failures=True)
            try:
                inferencer.warm_up(self.options.batch)  # runs, and the parts after the switch need not wait
            except BaseException:
                inferencer.close()
                raise
        except Exception as exc:
            log.error("reload of %s failed, still judging with %s (%s): %s", source, old.path, old.fingerprint, exc)
            return False
        self._use(bundle, inferencer, reference)
        log.info("model switched on reload: %s (%s, threshold %.6g) -> %s (%s, threshold %.6g); model id %d",
                 old.path, old.fingerprint, old.threshold, bundle.path, bundle.fingerprint, bundle.threshold,
                 self.model_id)
        return True

    def recover(self) -> None:
        """At start-up: close the abandoned claims whose file is gone (`Claims.recover`)."""
        pending, vanished = self.claims.recover()
        if pending:
            log.warning("resuming: %d inspections were in flight (%d of them lost their file)", pending, vanished)

    # -- one batch -------------------------------------------------------------------------

    def _process_or_isolate(self, arrivals: list[Arrival]) -> None:
        """`process` a batch. When it fails for a reason that passes (a full disk, the database),
        its files stay in the inbox and are retried at the next scan; for any other reason, the
        files are processed one by one, and the one that fails alone gets an error row with the
        reason: one bad file (or a bug it triggers) cannot hold the line up."""
        try:
            self.process(arrivals)
            return
        except DatabaseError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.debug("batch failure", exc_info=True)
            if _passing(exc):
                log.error("batch failed (%s); its %d files stay in the inbox and are retried", reason, len(arrivals))
                self.stop_event.wait(1.0)
                return
        if len(arrivals) > 1:
            log.warning("batch failed (%s); judging its %d files one by one", reason, len(arrivals))
            for arrival in arrivals:
                self._process_or_isolate([arrival])
            return
        try:
            self.process(arrivals, failure=f"cannot process: {reason}")
        except DatabaseError:
            raise
        except Exception as again:
            log.error("%s: cannot record its failure (%s); retried at the next scan",
                      printable(arrivals[0].path.name), again)

    def process(self, arrivals: list[Arrival], failure: str | None = None) -> None:
        """Claim, judge, record and move one batch of files (with `failure`: record each as an
        error with that reason, without judging it)."""
        work = self._claim(arrivals)
        if not work:
            return
        readable = [w for w in work if w.error is None]
        if failure is None:
            judged = self.inferencer.judge([(w.path, w.arrival.data) for w in readable], self.options.batch,
                                           keep_maps=True)
        else:
            judged = [Result(w.path, "error", error=failure) for w in readable]
        for w, result in zip(readable, judged):
            w.result = result
        updates: dict[int, dict] = {}
        heat_jobs = {}
        for w in work:
            if w.error is None:
                heat, over, crop = self._heat_paths(w)
                heat_jobs[w.row_id] = self._pool.submit(self._write_heatmaps, w.result, heat, over, crop)
                updates[w.row_id] = dict(
                    status="done", verdict=w.result.verdict, score=w.result.score, threshold=self.bundle.threshold,
                    heatmap_path=str(heat), overlay_path=str(over), crop_overlay_path=str(crop),
                    model_id=self.model_id,
                    stored_path=str(self._destination(w, "archive")) if self.options.on_done == "move"
                    else path_to_text(str(w.path)),
                    width=w.result.width, height=w.result.height,
                )
            else:
                updates[w.row_id] = dict(status="error", verdict="error", error_reason=printable(w.error),
                                         model_id=self.model_id,
                                         stored_path=str(self._destination(w, "rejected")))
        now = utcnow()
        for w in work:
            # This image's own time: decoding, preprocessing, its share of the model call, its pictures.
            own = w.result.processing_ms if w.result is not None else None
            if w.row_id in heat_jobs:
                own = (own or 0.0) + heat_jobs[w.row_id].result()  # on disk before the row that names them
            updates[w.row_id].update(scored_at=now, processing_ms=own)
        with STAGE_TIMES.stage("commit", len(updates)):
            lost = self.claims.commit(updates)
            self.store.check_file()  # the verdicts really are in the database before any file moves
        for w in work:
            if w.row_id in lost:  # another worker took this claim over and owns the verdict
                log.warning("%s: inspection %d was taken over by another worker; result dropped",
                            printable(w.path.name), w.row_id)
                continue
            with STAGE_TIMES.stage("move"):
                self._finish(w.arrival, w.digest, updates[w.row_id])
            self._count(w.path, updates[w.row_id], w.row_id)
            values = updates[w.row_id]
            self.drift.add(values["verdict"], values.get("score"), values.get("error_reason"))
        self._check_drift()

    def _check_drift(self) -> None:
        change = self.drift.check()
        if change is None:
            return
        state, assessment = change
        where = f"station {self.options.station}, model {self.bundle.pipeline.name} ({self.bundle.fingerprint})"
        if state == "start":
            log.warning("drift: the line no longer looks like the calibration (%s): %s", where,
                        drift.summary(assessment))
        else:
            log.info("drift cleared (%s): %s", where, drift.summary(assessment))

    def _claim(self, arrivals: list[Arrival]) -> list[Work]:
        """Claim each file's content (`claims`); files judged already are finished or set aside."""
        with STAGE_TIMES.stage("hash", len(arrivals)):
            digests = list(self._pool.map(content_key, arrivals))
        requests = [Request(str(a.path), digest, len(a.data) if a.data is not None else None)
                    for a, digest in zip(arrivals, digests)]
        with STAGE_TIMES.stage("claim", len(arrivals)):
            answers = self.claims.claim(requests)
        self.store.check_file()
        claimed = []
        for arrival, digest, answer in zip(arrivals, digests, answers):
            path = arrival.path
            if answer.state == CLAIMED:
                claimed.append(Work(arrival, answer.row_id, answer.received_at, digest))
            elif answer.state == FINISH:
                self._finish(arrival, digest, {"status": answer.status, "stored_path": answer.stored_path})
            elif answer.state == DUPLICATE:
                # A copy of a rejected file (say, a second empty file) is rejected too.
                folder = "rejected" if answer.status == "error" else "duplicates"
                target = self.out / folder / _day(utcnow()) / output_name(f"{answer.row_id}_dup_", path.name)
                self._set_aside(arrival, digest, target)
                self.counters.duplicates += 1
                log.warning("%s has the same content as inspection %d (%s); moved to %s/",
                            printable(path.name), answer.row_id, answer.first_name, folder)
            else:
                log.debug("%s is being judged by another worker", printable(path.name))
        return claimed

    # -- files -----------------------------------------------------------------------------

    def _heat_paths(self, w: Work) -> tuple[Path, Path, Path]:
        """Where its heatmap, its overlay on the photo and its overlay on the upright part go."""
        folder = self.out / "heatmaps" / _day(w.received_at)
        return picture_paths_bounded(folder, f"{w.row_id}_", w.path.name)

    def _write_heatmaps(self, result: Result, heat: Path, over: Path, crop: Path) -> float:
        """Write the heatmap and the overlays; returns the milliseconds it took."""
        started = time.perf_counter()
        with STAGE_TIMES.stage("pictures"):
            self.inferencer.write_pictures(result, heat, over, crop)
        return (time.perf_counter() - started) * 1000

    def _destination(self, w: Work, kind: str) -> Path:
        return self.out / kind / _day(w.received_at) / output_name(f"{w.row_id}_", w.path.name)

    def _finish(self, arrival: Arrival, digest: str, values: dict) -> None:
        """After the verdict is committed: move the file (rejects always), or remember it is kept."""
        if values["status"] == "error" or self.options.on_done == "move":
            self._set_aside(arrival, digest, Path(values["stored_path"]))
        else:
            self.intake.keep(arrival.path)

    def _set_aside(self, arrival: Arrival, digest: str, target: Path) -> None:
        """Move a file out of the inbox to `target`, verified against the content it was judged by.

        A file rejected as unfinished may still be written (a writer pausing longer than
        --incomplete-timeout): a copy goes to `target` and the file stays in the inbox, held; if
        it changes, its new content is judged; if not, it is removed after another timeout.
        """
        verify = digest if arrival.data is not None else None
        if arrival.unfinished:
            if copy_out(arrival.path, target, verify):
                self.intake.hold(arrival.path, (target, verify))
        else:
            move_out(arrival.path, target, verify, arrival.stamp)

    def _count(self, path: Path, values: dict, row_id: int) -> None:
        self.counters.images += 1
        if values["status"] == "error":
            self.counters.errors += 1
            log.warning("%s: error: %s (inspection %d)", printable(path.name), values["error_reason"], row_id)
        else:
            self.counters.defects += values["verdict"] == "defect"
            log.debug("%s: %s score %.6g threshold %.6g (inspection %d)", printable(path.name), values["verdict"],
                     values["score"], values["threshold"], row_id)


# Errors of the machine rather than of a file: they pass (space freed, a share back) and the
# files are retried as they are.
_PASSING_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM, errno.EMFILE,
                   errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EBUSY, errno.ESTALE, errno.ETIMEDOUT,
                   errno.ENOTCONN, errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.ENETDOWN, errno.ENETUNREACH}


def _passing(exc: BaseException) -> bool:
    from sqlalchemy.exc import OperationalError

    return (isinstance(exc, (MemoryError, OperationalError))
            or isinstance(exc, OSError) and exc.errno in _PASSING_ERRNOS)


def _day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d")
