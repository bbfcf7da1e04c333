"""What follows a verdict: outputs, each one class, handed every batch's verdicts once committed.

The daemon judges a batch, commits its verdicts (the row is the truth), then hands them to each
output in turn (`Outputs.deliver`). An output (`Output`) has up to two parts:

- `prepare(parts)`, before the commit: what the row names and must find on disk once committed
  (the pictures). A failure here fails the batch like a failure to judge (`batch`): its files
  stay in the inbox and are retried, or are judged one by one.
- `deliver(verdicts)`, after the commit, in commit order.

How a failing output is retried is decided here, once, by what the output declares:

- `durable = True`: the verdict's outbox entry for this output is committed in the same
  transaction as the verdict (`claims.Claims.commit`) and marked delivered when `deliver`
  returns. Each durable output is handed its verdicts by a sender thread of its own (`_Sender`),
  so that its round trips do not hold up the judging. What a crash or a failing output left
  undelivered is handed on again, oldest first: at start-up and every `retry_every` seconds,
  backing off to `MAX_BACKOFF` while it fails, and new verdicts wait behind it (order is kept). One WARNING when it starts failing, one INFO when
  it delivers again. At least once: a consumer that must not see a verdict twice dedupes by
  `Verdict.inspection_id`. Entries whose daemon died are taken over by a daemon of the same
  station (at once on the same host, after the claim timeout from another; while such entries
  wait, a sender looks every `retry_every` seconds whether their daemon is gone).
- `durable = False`: handed on once, in this process; a failure is logged and not repeated.
  Such an output has nothing to redo after a crash: the archive move is finished when the file,
  left in the inbox, is taken again, the drift window is read back from the database at start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Collection, Sequence

from sqlalchemy import func, select, update

from ..names import printable, text_to_path
from ..store import Inspection, ModelRecord, OutboxEntry, Store, utcnow
from .claims import claim_abandoned
from .part import ClaimedPart

log = logging.getLogger("inspector.outputs")

MAX_BACKOFF = 60.0  # seconds between tries of an output that keeps failing, at most
REDELIVERY_BATCH = 256  # undelivered entries handed on in one go
QUEUE_LIMIT = 4 * REDELIVERY_BATCH  # verdicts waiting in memory for a sender; beyond, it reads the outbox
STOP_WAIT = 10.0  # seconds a stopping daemon gives its senders to hand on what they hold


@dataclass(frozen=True)
class Verdict:
    """One committed inspection, as outputs are handed it."""

    inspection_id: int  # the key a consumer dedupes on
    station: str
    source_name: str  # the file's name in the inbox, printable
    source_path: str
    status: str  # "done" or "error"
    verdict: str  # "ok", "defect" or "error"
    score: float | None
    threshold: float | None
    error_reason: str | None
    received_at: datetime | None  # naive UTC: when the daemon took the complete file
    scored_at: datetime | None  # naive UTC: when it was judged
    model_id: int | None
    model_name: str | None
    model_fingerprint: str | None
    stored_path: str | None  # where the image went (archive/, rejected/), or the inbox (--on-done keep)
    heatmap_path: str | None
    overlay_path: str | None
    crop_overlay_path: str | None
    # What only the daemon that judged it holds (the file read, its maps); None when handed on
    # again after a crash.
    part: ClaimedPart | None = None
    regions: list[dict] | None = None  # the hot regions, in the photo's pixels (`inspector.regions`)

    @classmethod
    def of_row(cls, row: Inspection, model: ModelRecord | None, part: ClaimedPart | None = None) -> Verdict:
        return cls(row.id, row.station or "", row.source_name, text_to_path(row.source_path), row.status,
                   row.verdict or "error", row.score, row.threshold, row.error_reason, row.received_at,
                   row.scored_at, row.model_id, model.name if model else None, model.fingerprint if model else None,
                   row.stored_path, row.heatmap_path, row.overlay_path, row.crop_overlay_path, part, row.regions)


class Output:
    """Something that follows every verdict; subclasses override what they need."""

    name: str = "output"  # names its outbox entries and its log lines: unique among a daemon's outputs
    durable: bool = False  # outbox entries, redelivered after a crash or a failure (module docstring)
    # Set by the daemon on a durable output: call it when the output works again (a broker
    # reconnected) so that what waits is sent now, not after the back-off.
    wake: Callable[[], None] | None = None

    def prepare(self, parts: Sequence[ClaimedPart]) -> None:
        """Before the commit: what must exist when the rows naming it are committed."""

    def deliver(self, verdicts: Sequence[Verdict]) -> Collection[int] | None:
        """After the commit: the verdicts, in commit order. Raise to say they were not taken.
        May return the inspection ids it handed on late (after the line's deadline): their
        outbox entries say so."""

    def close(self) -> None:
        """The daemon stops: release what the output holds."""


class _Sender:
    """Hands one durable output its verdicts, in commit order, on a thread of its own, so that a
    broker's round trip never holds up the daemon's loop. Every verdict it is given is already in
    the outbox: the in-memory queue only spares reading it back. While the output fails (or the
    queue grows past `QUEUE_LIMIT`) the queue is dropped and the outbox read instead, oldest
    first, when the back-off allows."""

    def __init__(self, outputs: Outputs, output: Output):
        self.outputs, self.output = outputs, output
        self.queue: deque[Verdict] = deque()
        self.given = 0  # batches given so far
        self.woken = False  # the output said it works again since the current send began
        self.backlog = True  # unknown at start: look in the outbox first
        # Verdicts were sent from the outbox: the first ones given after that read may be among
        # them (committed before it, given after it), so the outbox is asked before they are sent.
        self.unsure = False
        # Other daemons of the station whose entries waited at the last read (when each was last
        # at work): looked at every `retry_every`, the outbox read again when one is gone.
        self.peers: dict[str, datetime | None] = {}
        # Sent, not yet recorded as delivered (the outbox failed): recorded before it is read again,
        # which would send them once more. Each: the inspection ids and those of them sent late.
        self.unmarked: deque[tuple[list[int], set[int]]] = deque()
        self.failing_since: float | None = None
        self.next_try = 0.0
        self.delay = 0.0
        self.stopping = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=f"output-{output.name}", daemon=True)
        output.wake = self.wake

    def wake(self) -> None:
        """The output says it works again: end the back-off now (also one a failing send in
        progress is about to start)."""
        with self.cond:
            self.woken = True
            self.next_try = 0.0
            self.cond.notify()

    def give(self, verdicts: Sequence[Verdict]) -> None:
        """Committed verdicts to send (their outbox entries are in the database already)."""
        with self.cond:
            self.given += 1
            if not self.backlog:
                # What only the judging daemon holds (the image, its maps) is not sent on: let it go.
                self.queue.extend(replace(v, part=None) for v in verdicts)
                if len(self.queue) > QUEUE_LIMIT:
                    self.queue.clear()
                    self.backlog, self.next_try = True, 0.0
            self.cond.notify()

    def _ready(self) -> bool:
        return bool(self.queue) or (self.backlog and time.monotonic() >= self.next_try) or self._peer_gone()

    def _peer_gone(self) -> bool:
        """Whether another daemon's entries may be taken over now (while sending from the queue;
        reading the outbox takes them over anyway)."""
        return not self.backlog and not self.stopping and any(
            claim_abandoned(worker, last, self.outputs.takeover_after) for worker, last in self.peers.items())

    def _timeout(self) -> float | None:
        if self.backlog:
            return max(0.01, self.next_try - time.monotonic())
        return self.outputs.retry_every if self.peers else None

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self._ready() and not self.stopping:
                    self.cond.wait(self._timeout())
                if not self._ready():  # stopping, and nothing can be sent now
                    break
                if self._peer_gone():
                    # Its entries are read in order with this daemon's own, the queue's among them.
                    self.backlog, self.next_try = True, 0.0
                batch = [self.queue.popleft() for _ in range(min(len(self.queue), REDELIVERY_BATCH))] \
                    if not self.backlog else None
            try:
                if batch is None:
                    self._redeliver()
                    continue
                if self.unsure:
                    batch = self._not_yet_sent(batch)
                if batch:
                    self._hand(batch)
            except Exception as exc:  # the outbox cannot be read or marked: its entries wait there
                log.debug("output %s: outbox failed", self.output.name, exc_info=True)
                self._back_off(f"the outbox: {type(exc).__name__}: {exc}")
        try:
            self._record_sent()  # else the next start sends them again
        except Exception:
            log.debug("output %s: outbox failed", self.output.name, exc_info=True)

    def _not_yet_sent(self, batch: list[Verdict]) -> list[Verdict]:
        """The verdicts of the queue's `batch` that the outbox does not say were delivered. The
        daemon gives its verdicts in commit order, and the outbox read last saw every one committed
        before it: once one is found not yet sent, those given after it were committed after
        that read too, and are not looked up."""
        delivered = self.outputs.delivered(self.output.name, [v.inspection_id for v in batch])
        if len(delivered) < len(batch):
            self.unsure = False
        return [v for v in batch if v.inspection_id not in delivered]

    def _redeliver(self) -> None:
        self.next_try = time.monotonic() + self.outputs.retry_every
        while not self.stopping or self.failing_since is None:
            self._record_sent()
            with self.cond:
                self.queue.clear()  # all of it is in the outbox, read below in order
                given = self.given
            verdicts, self.peers = self.outputs.undelivered(self.output.name)
            if not verdicts:
                with self.cond:
                    # Verdicts given since the read began may have been committed after it: read
                    # again until a read starts after the last of them.
                    if self.given == given:
                        self.backlog = False
                        return
                continue
            if not self._hand(verdicts):
                return
            self.unsure = True

    def _hand(self, verdicts: Sequence[Verdict]) -> bool:
        output = self.output
        with self.cond:
            self.woken = False  # a wake from here on ends the back-off this send may start
        try:
            late = output.deliver(verdicts)
        except Exception as exc:
            self._failed(verdicts, exc)
            return False
        self.unmarked.append(([v.inspection_id for v in verdicts], set(late or ())))
        self._record_sent()
        if self.failing_since is not None:
            log.info("output %s works again after %.0f s", output.name, time.monotonic() - self.failing_since)
        self.failing_since, self.delay = None, 0.0
        return True

    def _record_sent(self) -> None:
        while self.unmarked:
            ids, late = self.unmarked[0]
            self.outputs.mark(self.output.name, ids, delivered=True, late=late)
            self.unmarked.popleft()

    def _failed(self, verdicts: Sequence[Verdict], exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        log.debug("output %s failed", self.output.name, exc_info=True)
        self._back_off(reason)
        try:
            self.outputs.mark(self.output.name, [v.inspection_id for v in verdicts], delivered=False, error=reason)
        except Exception:  # only the attempt's count and error go unrecorded; one back-off for one failure
            log.debug("output %s: cannot record the failure in the outbox", self.output.name, exc_info=True)

    def _back_off(self, reason: str) -> None:
        """Read from the outbox from now on, after a delay doubling up to MAX_BACKOFF; say it once."""
        with self.cond:
            self.backlog = True
            self.queue.clear()
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.warning("output %s failed (%s); its verdicts wait in the outbox and are handed on in order "
                        "when it works again", self.output.name, reason)
        with self.cond:
            self.delay = min(max(self.delay * 2, self.outputs.retry_every), MAX_BACKOFF)
            self.next_try = 0.0 if self.woken else time.monotonic() + self.delay
            self.woken = False

    def stopping_now(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()

    def stop(self, wait: float) -> None:
        """Send what can be sent now (not waiting out a back-off), for at most `wait` seconds."""
        self.stopping_now()
        if self.thread.is_alive():
            self.thread.join(wait)
            if self.thread.is_alive():
                log.warning("output %s still sending after %.0f s; what it has not handed on stays in the "
                            "outbox for the next start", self.output.name, wait)


class Outputs:
    """A daemon's outputs, in order, and the outbox of the durable ones."""

    def __init__(self, store: Store, worker: str, station: str, outputs: Sequence[Output],
                 retry_every: float = 1.0, takeover_after: float = 60.0):
        names = [o.name for o in outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"outputs must have distinct names: {names}")
        self.store, self.worker, self.station = store, worker, station
        self.outputs = list(outputs)
        self.retry_every, self.takeover_after = retry_every, takeover_after
        self._senders = {o.name: _Sender(self, o) for o in self.outputs if o.durable}

    @property
    def durable_names(self) -> tuple[str, ...]:
        return tuple(self._senders)

    def start(self) -> None:
        """The durable outputs start sending: first what the outbox still holds (a crash, an output
        that was away), then each batch as it is committed."""
        for sender in self._senders.values():
            if not sender.thread.is_alive():
                sender.thread.start()

    def prepare(self, parts: Sequence[ClaimedPart]) -> None:
        for output in self.outputs:
            output.prepare(parts)

    def deliver(self, verdicts: Sequence[Verdict]) -> None:
        """Hand each output the batch's committed verdicts: the others here and now, in order; the
        durable ones through their senders (after any backlog of theirs)."""
        if not verdicts:
            return
        for output in self.outputs:
            if output.durable:
                self._senders[output.name].give(verdicts)
                continue
            try:
                output.deliver(verdicts)
            except Exception as exc:
                log.debug("output %s failed", output.name, exc_info=True)
                log.error("output %s failed for %d verdicts (not retried): %s", output.name, len(verdicts),
                          f"{type(exc).__name__}: {exc}")

    def waiting(self) -> dict[str, int]:
        """Undelivered entries of this station per durable output."""
        with self.store.session() as s:
            return {name: s.query(OutboxEntry).filter(OutboxEntry.output == name, OutboxEntry.station == self.station,
                                                      OutboxEntry.delivered_at.is_(None)).count()
                    for name in self.durable_names}

    def close(self, wait: float = STOP_WAIT) -> None:
        """Let the senders hand on what they can now, then close every output."""
        deadline = time.monotonic() + wait  # one wait for all of them, not one each
        for sender in self._senders.values():
            sender.stopping_now()
        for sender in self._senders.values():
            sender.stop(max(0.0, deadline - time.monotonic()))
        for output in self.outputs:
            try:
                output.close()
            except Exception as exc:  # one output failing to close must not keep the others open
                log.error("output %s: cannot close: %s", output.name, exc)

    def mark(self, name: str, ids: list[int], delivered: bool, error: str | None = None,
              late: set[int] = frozenset()) -> None:
        def work() -> None:
            with self.store.session() as s, s.begin():
                for start in range(0, len(ids), 500):
                    chunk = ids[start:start + 500]
                    values: dict[str, Any] = ({"delivered_at": utcnow(), "last_error": None} if delivered else
                                              {"attempts": OutboxEntry.attempts + 1, "last_error": printable(error or "")})
                    s.execute(update(OutboxEntry)
                              .where(OutboxEntry.output == name, OutboxEntry.inspection_id.in_(chunk))
                              .values(**values).execution_options(synchronize_session=False))
                if late:
                    s.execute(update(OutboxEntry)
                              .where(OutboxEntry.output == name, OutboxEntry.inspection_id.in_(sorted(late)))
                              .values(late=True).execution_options(synchronize_session=False))

        self.store.retry(work, f"record what output {name} handed on")

    def delivered(self, name: str, ids: list[int]) -> set[int]:
        """Which of these inspection ids output `name` has been marked as having handed on."""
        def work() -> set[int]:
            with self.store.session() as s, s.begin():
                found: set[int] = set()
                for start in range(0, len(ids), 500):
                    found.update(s.scalars(select(OutboxEntry.inspection_id).where(
                        OutboxEntry.output == name, OutboxEntry.inspection_id.in_(ids[start:start + 500]),
                        OutboxEntry.delivered_at.isnot(None))))
                return found

        return self.store.retry(work, f"read what output {name} has handed on")

    def undelivered(self, name: str) -> tuple[list[Verdict], dict[str, datetime | None]]:
        """The oldest undelivered verdicts of this station for output `name`, this daemon's own and
        those whose daemon is gone (taken over); and the other daemons whose entries still wait,
        with when each was last at work."""
        waiting = (OutboxEntry.output == name, OutboxEntry.station == self.station, OutboxEntry.delivered_at.is_(None))

        def work() -> tuple[list[Verdict], dict[str, datetime | None]]:
            with self.store.session() as s, s.begin():
                # Entries of this station's daemons that are gone become this daemon's (the newest
                # entry of each says when its daemon was last at work).
                others = select(OutboxEntry.worker, func.max(OutboxEntry.created_at)).where(
                    *waiting, OutboxEntry.worker != self.worker).group_by(OutboxEntry.worker)
                peers: dict[str, datetime | None] = {}
                for worker, last in s.execute(others).all():
                    if claim_abandoned(worker, last, self.takeover_after):
                        s.execute(update(OutboxEntry).where(*waiting, OutboxEntry.worker == worker)
                                  .values(worker=self.worker).execution_options(synchronize_session=False))
                    else:
                        peers[worker] = last
                query = (select(OutboxEntry, Inspection, ModelRecord)
                         .join(Inspection, OutboxEntry.inspection_id == Inspection.id)
                         .outerjoin(ModelRecord, Inspection.model_id == ModelRecord.id)
                         .where(*waiting, OutboxEntry.worker == self.worker)
                         .order_by(OutboxEntry.id).limit(REDELIVERY_BATCH))
                return [Verdict.of_row(row, model) for _, row, model in s.execute(query)], peers

        return self.store.retry(work, f"read what output {name} has to hand on")
