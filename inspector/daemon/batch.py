"""One batch of files through the daemon: claim -> judge -> prepare the outputs -> commit -> deliver.

`start` claims a batch and hands its files to the decoding threads; `finish` scores it, writes
its pictures, commits and delivers. The daemon starts the next batch before it finishes the one
in hand, so decoding overlaps the model, the pictures and the commit.

The database row is the truth and files follow it: each file's content is claimed first (`claims`),
its verdict committed with what the outputs must find (the pictures), and only then is it handed to
the outputs (the move out of the inbox, drift, the log, the line). A batch that fails for a reason
that passes (a full disk, the database) leaves its files in the inbox, taken again after a wait that
doubles with each try (`intake.retry_wait`); one that fails for any other reason is judged one file
at a time, and the file that fails alone gets an error row with the reason: one bad file cannot hold
the line up.
"""

from __future__ import annotations

import errno
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import DatabaseError
from ..inference import Inferencer, Loading, Result
from ..names import path_to_text, printable
from ..timing import STAGE_TIMES
from ..store import Store, utcnow
from .archive import Archive
from .claims import ALREADY_JUDGED, CLAIMED, DUPLICATE, IN_HAND, Claims, Request
from .intake import Arrival, content_key
from .outputs import Outputs, Verdict
from .part import ClaimedPart
from .standard_outputs import Counters

log = logging.getLogger("inspector.watch")


@dataclass
class Serving:
    """The model in service: its bundle, its inferencer and its row in the models table."""

    bundle: object
    inferencer: Inferencer
    model_id: int


# Errors of the machine rather than of a file: they pass (space freed, a share back) and the
# files are retried as they are.
_TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM, errno.EMFILE,
                     errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EBUSY, errno.ESTALE, errno.ETIMEDOUT,
                     errno.ENOTCONN, errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.ENETDOWN, errno.ENETUNREACH}


def is_transient(exc: BaseException) -> bool:
    """Whether a failure is of the machine (it passes, the files are retried as they are)."""
    from sqlalchemy.exc import OperationalError

    return (isinstance(exc, (MemoryError, OperationalError))
            or isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS)


@dataclass
class Started:
    """A batch claimed and being decoded (`Batches.start`), to be finished (`Batches.finish`) by
    the model that prepared it."""

    arrivals: list[Arrival]
    parts: list[ClaimedPart]
    serving: Serving
    loading: Loading | None  # None: nothing to decode, or every file recorded with `failure`
    failure: str | None = None
    # Files whose content a batch before this one had in hand when they were claimed (a copy, or a
    # file renamed meanwhile): looked at again once this batch is finished, as that one is then.
    waiting: list[Arrival] = field(default_factory=list)


class Batches:
    """Judges batches of arrivals for one daemon (`loop.Watcher`)."""

    def __init__(self, store: Store, claims: Claims, outputs: Outputs, archive: Archive, counters: Counters,
                 pool: Executor, serving: Callable[[], Serving], options, pause: Callable[[float], None]):
        self.store, self.claims, self.outputs = store, claims, outputs
        self.archive, self.counters = archive, counters
        self.pool, self.serving, self.options, self.pause = pool, serving, options, pause
        self._look_again: list[Arrival] = []

    def look_again(self) -> list[Arrival]:
        """The files set back (`Started.waiting`) by the batches finished since the last call:
        the batch that had their content is finished now, so the intake takes them again."""
        arrivals, self._look_again = self._look_again, []
        return arrivals

    def process_or_isolate(self, arrivals: list[Arrival]) -> None:
        """`process` a batch; see the module's docstring for what a failure does."""
        started = self.begin(arrivals)
        if started is not None:
            self.complete(started)

    def begin(self, arrivals: list[Arrival]) -> Started | None:
        """`start` a batch; when that fails, the batch is dealt with now as a failure (module
        docstring) and there is nothing to complete."""
        try:
            return self.start(arrivals)
        except DatabaseError:
            raise
        except Exception as exc:
            self._failed(arrivals, exc)
            return None

    def complete(self, started: Started) -> None:
        """`finish` a batch begun by `begin`; a failure is dealt with as the module's docstring says."""
        try:
            self.finish(started)
        except DatabaseError:
            raise
        except Exception as exc:
            self._failed(started.arrivals, exc)

    def _failed(self, arrivals: list[Arrival], exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        log.debug("batch failure", exc_info=True)
        if is_transient(exc):
            log.error("batch failed (%s); its %d files stay in the inbox and are retried", reason, len(arrivals))
            self.pause(1.0)
            return
        if len(arrivals) > 1:
            log.warning("batch failed (%s); judging its %d files one by one", reason, len(arrivals))
            for arrival in arrivals:
                self.claims.refresh()  # the next batch, claimed already, waits meanwhile
                self.process_or_isolate([arrival])
            return
        try:
            self.process(arrivals, failure=f"cannot process: {reason}")
        except DatabaseError:
            raise
        except Exception as again:
            log.error("%s: cannot record its failure (%s); tried again",
                      printable(arrivals[0].path.name), again)

    def process(self, arrivals: list[Arrival], failure: str | None = None) -> None:
        """Claim, judge, record and hand on one batch of files (with `failure`: record each as an
        error with that reason, without judging it)."""
        self.finish(self.start(arrivals, failure))

    def start(self, arrivals: list[Arrival], failure: str | None = None) -> Started:
        """Claim a batch's files and start decoding and preparing them on the decoding threads:
        the daemon finishes the batch before (`finish`) meanwhile."""
        parts, waiting = self._claim(arrivals)
        try:
            serving = self.serving()
            readable = [p for p in parts if p.error is None]
            loading = None
            if failure is None and readable:
                loading = serving.inferencer.load([(p.path, p.arrival.data) for p in readable], keep_maps=True)
        except BaseException:
            self.claims.release([p.row_id for p in parts])  # claimed again when the batch is retried
            self._look_again.extend(waiting)
            raise
        return Started(arrivals, parts, serving, loading, failure, waiting)

    def finish(self, started: Started) -> None:
        """Judge a started batch, write its pictures, commit its verdicts and hand them on; its
        claims are let go whatever happens (a failed batch is claimed again when retried)."""
        try:
            self._finish(started)
        finally:
            self.claims.release([p.row_id for p in started.parts])
            self._look_again.extend(started.waiting)

    def _finish(self, started: Started) -> None:
        parts, serving = started.parts, started.serving
        if not parts:
            return
        readable = [p for p in parts if p.error is None]
        if started.loading is not None:
            judged = serving.inferencer.score(started.loading, self.options.batch)
        else:
            judged = [Result(p.path, "error", error=started.failure) for p in readable]
        for part, result in zip(readable, judged):
            part.result = result
        judged_at = utcnow()  # scored_at: when the verdict was made, before its pictures are written
        self.outputs.prepare(parts)
        updates = {p.row_id: self._row_values(p, serving, judged_at) for p in parts}
        with STAGE_TIMES.stage("commit", len(updates)):
            lost = self.claims.commit(updates, self.outputs.durable_names)
            self.store.check_file()  # the verdicts really are in the database before any file moves
        verdicts = []
        for part in parts:
            if part.row_id in lost:  # another worker took this claim over and owns the verdict
                log.warning("%s: inspection %d was taken over by another worker; result dropped",
                            printable(part.path.name), part.row_id)
                continue
            verdicts.append(self._verdict(part, updates[part.row_id], serving))
        self.outputs.deliver(verdicts)

    def _row_values(self, part: ClaimedPart, serving: Serving, judged_at) -> dict:
        """The row's columns once judged: the verdict, or the error and where the file goes."""
        if part.error is not None:
            return dict(status="error", verdict="error", error_reason=printable(part.error), model_id=serving.model_id,
                        stored_path=str(self.archive.destination(part, "rejected")), scored_at=judged_at,
                        processing_ms=part.result.processing_ms if part.result is not None else None)
        pictures = part.pictures  # what the pictures output wrote for it (`Pictures.prepare`)
        heat, over, crop = (None if path is None else str(path) for path in pictures) if pictures is not None else (None, None, None)
        result = part.result
        return dict(
            status="done", verdict=result.verdict, score=result.score, threshold=serving.bundle.threshold,
            heatmap_path=heat, overlay_path=over, crop_overlay_path=crop, model_id=serving.model_id,
            stored_path=str(self.archive.destination(part, "archive")) if self.options.on_done == "move"
            else path_to_text(str(part.path)),
            width=result.width, height=result.height, scored_at=judged_at, regions=serving.inferencer.regions(result),
            # This image's own time: decoding, preprocessing, its share of the model call, its pictures.
            processing_ms=(result.processing_ms or 0.0) + part.pictures_ms,
        )

    def _verdict(self, part: ClaimedPart, values: dict, serving: Serving) -> Verdict:
        bundle = serving.bundle
        return Verdict(
            part.row_id, self.options.station, printable(part.path.name), str(part.path), values["status"],
            values["verdict"], values.get("score"), values.get("threshold"), values.get("error_reason"),
            part.received_at, values["scored_at"], serving.model_id, bundle.pipeline.name, bundle.fingerprint,
            values["stored_path"], values.get("heatmap_path"), values.get("overlay_path"),
            values.get("crop_overlay_path"), part, values.get("regions"))

    def _renamed(self, arrival: Arrival, digest: str, answer) -> None:
        """A judged file renamed inside the inbox before its move: its row takes the new name
        (the bytes judged are at the row's stored path already), and the file leaves the inbox."""
        kept = not self.archive.moves(answer.status)
        self.claims.rename(answer.row_id, str(arrival.path), stored_path=str(arrival.path) if kept else None)
        log.warning("%s was renamed to %s in the inbox before it was moved; inspection %d now names it",
                    answer.first_name, printable(arrival.path.name), answer.row_id)
        if kept:
            self.archive.intake.keep(arrival.path)
        else:
            self.archive.set_aside(arrival, digest, Path(answer.stored_path), answer.row_id)

    def _claim(self, arrivals: list[Arrival]) -> tuple[list[ClaimedPart], list[Arrival]]:
        """Claim each file's content (`claims`); files judged already are finished or set aside.
        Returns the parts claimed and the files whose content is in a batch still in hand."""
        with STAGE_TIMES.stage("hash", len(arrivals)):
            digests = list(self.pool.map(content_key, arrivals))
        requests = [Request(str(a.path), digest, len(a.data) if a.data is not None else None)
                    for a, digest in zip(arrivals, digests)]
        with STAGE_TIMES.stage("claim", len(arrivals)):
            answers = self.claims.claim(requests)
        try:
            return self._sort(arrivals, digests, answers)
        except BaseException:
            self.claims.release([answer.row_id for answer in answers if answer.state == CLAIMED])
            raise

    def _sort(self, arrivals: list[Arrival], digests: list[str],
              answers: list) -> tuple[list[ClaimedPart], list[Arrival]]:
        """The parts claimed, and the files whose content is in hand; files judged already are
        finished or set aside."""
        self.store.check_file()
        claimed, waiting = [], []
        for arrival, digest, answer in zip(arrivals, digests, answers):
            if answer.state == CLAIMED:
                claimed.append(ClaimedPart(arrival, answer.row_id, answer.received_at, digest))
            elif answer.state == ALREADY_JUDGED:
                if self.archive.refound(arrival, digest, answer.status, answer.stored_path, answer.row_id,
                                        answer.first_name):
                    self.counters.duplicates += 1
            elif answer.state == DUPLICATE and self.archive.renamed(arrival, digest, answer.row_id):
                self._renamed(arrival, digest, answer)
            elif answer.state == DUPLICATE:
                self.archive.duplicate(arrival, digest, answer.row_id, answer.first_name, answer.status == "error")
                self.counters.duplicates += 1
            elif answer.state == IN_HAND:
                waiting.append(arrival)
            else:
                log.debug("%s is being judged by another worker", printable(arrival.path.name))
        return claimed, waiting

