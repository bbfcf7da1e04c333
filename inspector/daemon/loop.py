"""`inspector watch`: judge every image that lands in an inbox exactly once.

The daemon loop: intake (complete files, read once: `intake`, `events`) -> a batch (`batch`):
claim (a pending row per content hash: `claims`) -> judge (decode + preprocess in threads, one
model batch, error maps, verdicts) -> the outputs prepare (pictures) -> commit (verdicts of rows
still ours, with their outbox entries) -> the outputs deliver (`outputs`: the move out of the
inbox, drift, the log, and any other output given to the daemon). Two batches are in hand: the
next is claimed and decoded (`Batches.start`) while the one before is finished (`Batches.finish`).

The database row is the truth and files follow it: a crash between two steps leaves a state
that the next start finishes. A pending row is scored again; a finished row whose file is still
in the inbox only has its file moved. Nothing is scored twice because the content hash is unique.

Between batches: SIGHUP reloads the model bundle (`--model`, a symlink resolved again). The
durable outputs send on threads of their own, first what they still owe (`Outputs.start`).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from .. import drift
from ..bundle import Bundle, load_bundle
from ..errors import ConfigError, DatabaseError
from ..inference import Inferencer
from ..store import Store
from .batch import Batches, Serving, Started
from .claims import Claims
from .intake import Intake
from .moves import move_out
from .options import WatchOptions
from .outputs import Output, Outputs
from .archive import Archive
from .standard_outputs import Counters, DriftWatch, LogLines, Pictures

log = logging.getLogger("inspector.watch")

__all__ = ["Watcher", "WatchOptions"]


def _inferencer(bundle: Bundle, options: WatchOptions) -> Inferencer:
    return Inferencer(bundle, threads=options.threads, contain_failures=True, processes=options.decode_processes)


class Watcher:
    """The daemon on one inbox. `model_source`: where `reload` loads the bundle from (the --model
    path as given, maybe a symlink; default: the bundle's own path). `outputs`: more outputs,
    handed every verdict after the daemon's own (pictures, archive, drift, log)."""

    def __init__(self, inbox: Path, bundle: Bundle, store: Store, options: WatchOptions,
                 model_source: Path | None = None, outputs: Sequence[Output] = ()):
        self.intake = Intake(inbox, options.polling, options.settle, options.quick_settle,
                             options.incomplete_timeout, retry_longest=options.rescan_every)
        self.out = Path(os.path.abspath(options.out))
        inbox = self.intake.inbox
        if self.out == inbox or inbox in self.out.parents:
            raise ConfigError("--out must not be inside the inbox")
        self.store, self.options = store, options
        self.model_source = Path(os.path.abspath(model_source or bundle.path))
        # Set by signal handlers, so plain flags: a handler that took a lock (Event.set does)
        # could wait for ever on a lock its own thread holds when the signal came.
        self.stopping = False
        self.reload_wanted = False
        self.counters = Counters()
        # Hashing files and writing pictures; decoding runs in the inferencer's own threads.
        self._pool = ThreadPoolExecutor(max_workers=options.threads, thread_name_prefix="inspector-io")
        self.claims = Claims(store, station=options.station, timeout=options.claim_timeout)
        self.serving: Serving | None = None
        self.pictures = Pictures(self.out, self._pool, lambda: self.serving.inferencer, options)
        self.archive = Archive(self.out, options.on_done, self.intake)
        self.drift = DriftWatch(store, options.station, options.drift_window, options.drift_limit)
        self.outputs = Outputs(store, self.claims.worker, options.station,
                               [self.pictures, self.archive, self.drift, LogLines(self.counters), *outputs],
                               retry_every=options.retry_every, takeover_after=options.claim_timeout)
        self.batches = Batches(store, self.claims, self.outputs, self.archive, self.counters,
                               self._pool, lambda: self.serving, options, self._pause)
        reference = drift.Reference.of(bundle)
        inferencer = _inferencer(bundle, options)
        inferencer.warm_up(options.batch)  # the first part must not wait for graph tracing
        self._use(bundle, inferencer, reference)

    @property
    def bundle(self) -> Bundle:
        return self.serving.bundle

    @property
    def inferencer(self) -> Inferencer:
        return self.serving.inferencer

    @property
    def model_id(self) -> int:
        return self.serving.model_id

    def _use(self, bundle: Bundle, inferencer: Inferencer, reference: drift.Reference) -> None:
        """Judge with `bundle` from now on: its model row, its drift reference."""
        model_id = self.store.model_record(bundle.fingerprint, bundle.pipeline.name, str(bundle.path),
                                           bundle.threshold)
        old = self.serving
        self.serving = Serving(bundle, inferencer, model_id)
        if old is not None:
            old.inferencer.close()
        self.drift.use(reference, model_id, bundle.pipeline.name, bundle.fingerprint)

    def process(self, arrivals) -> None:
        """Judge one batch of arrivals (`batch.Batches.process`)."""
        try:
            self.batches.process(arrivals)
        finally:
            self.intake.finished(arrivals)
            self.intake.look_again(self.batches.look_again())

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
        in_flight = None  # a batch begun and not finished
        try:
            self.recover()
            run_id = self.store.start_run(self.claims.worker, self.options.station, self.model_id)
            intake.scan()
            last_scan = last_summary = last_work = last_beat = time.monotonic()
            self.counters.mark()
            while not self.stopping:
                if self.reload_wanted:  # between batches: no part is judged by two models
                    self._finish(in_flight)  # judged by the model that prepared it
                    in_flight = None
                    self.reload_wanted = False  # a SIGHUP during the reload asks for one more
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
                # Two batches in hand: this one is claimed and its files decoded on the decoding
                # threads while the one before is scored, pictured, committed and moved here.
                ready = intake.take(self.options.batch)
                started = self.batches.begin(ready) if ready else None
                if ready and started is None:
                    intake.finished(ready)  # failed to start: dealt with already
                self._finish(in_flight)
                in_flight = started
                if ready:
                    last_work = time.monotonic()
                else:
                    # Files settling or to be tried again are looked at when due; an idle inbox wakes on events.
                    intake.wait()
                    if max_idle is not None and not intake.waiting and time.monotonic() - last_work > max_idle:
                        break
                if time.monotonic() - last_summary >= self.options.summary_every:
                    summary = self.counters.interval_line()
                    if summary:
                        log.info(summary)
                    last_summary = time.monotonic()
            self._finish(in_flight)  # the batch in hand is finished before stopping
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
            self.outputs.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            log.info("stopped; %s", self.counters.line())

    def _finish(self, started: Started | None) -> None:
        """Finish a batch begun (`Batches.complete`) and let the intake know its files are done."""
        if started is not None:
            try:
                self.batches.complete(started)
            finally:
                self.intake.finished(started.arrivals)
        self.intake.look_again(self.batches.look_again())  # the batches that had their content are finished

    def stop(self) -> None:
        """Finish the batch in hand, then stop (SIGINT, SIGTERM; safe in a signal handler)."""
        self.stopping = True

    def request_reload(self) -> None:
        """Load the bundle from `model_source` before the next batch (SIGHUP; sets a flag only)."""
        self.reload_wanted = True

    def _pause(self, seconds: float) -> None:
        """Wait up to `seconds`, less when asked to stop."""
        end = time.monotonic() + seconds
        while not self.stopping and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))

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
            inferencer = _inferencer(bundle, self.options)
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
        """At start-up: close the abandoned claims whose file is gone (`Claims.recover`), and hand
        on what the durable outputs still owe from before a crash."""
        pending, vanished = self.claims.recover()
        if pending:
            log.warning("resuming: %d inspections were in flight (%d of them lost their file)", pending, vanished)
        self.outputs.start()
