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
  returns. What a crash or a failing output left undelivered is handed on again, oldest first:
  at start-up and every `retry_every` seconds, backing off to `MAX_BACKOFF` while it fails, and
  new verdicts wait behind it (order is kept). One WARNING when it starts failing, one INFO when
  it delivers again. At least once: a consumer that must not see a verdict twice dedupes by
  `Verdict.inspection_id`. Entries whose daemon died are taken over by a daemon of the same
  station (at once on the same host, after the claim timeout from another).
- `durable = False`: handed on once, in this process; a failure is logged and not repeated.
  Such an output has nothing to redo after a crash: the archive move is finished by the next
  scan of the inbox, the drift window is read back from the database at start.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Collection, Sequence

from sqlalchemy import func, select, update

from ..names import printable, text_to_path
from ..store import Inspection, ModelRecord, OutboxEntry, Store, utcnow
from .claims import claim_abandoned
from .part import ClaimedPart

log = logging.getLogger("inspector.outputs")

MAX_BACKOFF = 60.0  # seconds between tries of an output that keeps failing, at most
REDELIVERY_BATCH = 256  # undelivered entries handed on in one go


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

    @classmethod
    def of_row(cls, row: Inspection, model: ModelRecord | None, part: ClaimedPart | None = None) -> Verdict:
        return cls(row.id, row.station or "", row.source_name, text_to_path(row.source_path), row.status,
                   row.verdict or "error", row.score, row.threshold, row.error_reason, row.received_at,
                   row.scored_at, row.model_id, model.name if model else None, model.fingerprint if model else None,
                   row.stored_path, row.heatmap_path, row.overlay_path, row.crop_overlay_path, part)


class Output:
    """Something that follows every verdict; subclasses override what they need."""

    name: str = "output"  # names its outbox entries and its log lines: unique among a daemon's outputs
    durable: bool = False  # outbox entries, redelivered after a crash or a failure (module docstring)

    def prepare(self, parts: Sequence[ClaimedPart]) -> None:
        """Before the commit: what must exist when the rows naming it are committed."""

    def deliver(self, verdicts: Sequence[Verdict]) -> Collection[int] | None:
        """After the commit: the verdicts, in commit order. Raise to say they were not taken.
        May return the inspection ids it handed on late (after the line's deadline): their
        outbox entries say so."""

    def close(self) -> None:
        """The daemon stops: release what the output holds."""


@dataclass
class _Backoff:
    failing_since: float | None = None
    next_try: float = 0.0
    delay: float = 0.0


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
        self._backoff = {o.name: _Backoff() for o in self.outputs if o.durable}
        self._backlog = {o.name: True for o in self.outputs if o.durable}  # unknown at start: look first

    @property
    def durable_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs if o.durable)

    def prepare(self, parts: Sequence[ClaimedPart]) -> None:
        for output in self.outputs:
            output.prepare(parts)

    def deliver(self, verdicts: Sequence[Verdict]) -> None:
        """Hand each output the batch's committed verdicts. A durable output with a backlog gets
        them from the outbox, after the backlog (`redeliver`)."""
        if not verdicts:
            return
        for output in self.outputs:
            if output.durable and self._backlog[output.name]:
                continue
            self._hand(output, verdicts)

    def redeliver(self, force: bool = False) -> int:
        """Hand on what the durable outputs left undelivered, oldest first, where its time has come
        (`force`: now, as at start-up); returns how many verdicts were handed on."""
        handed, now = 0, time.monotonic()
        for output in self.outputs:
            if not output.durable or not self._backlog[output.name]:
                continue
            backoff = self._backoff[output.name]
            if not force and now < backoff.next_try:
                continue
            backoff.next_try = now + self.retry_every
            while True:
                verdicts = self._undelivered(output.name)
                if not verdicts:
                    self._backlog[output.name] = False
                    break
                if not self._hand(output, verdicts):
                    break
                handed += len(verdicts)
        return handed

    def waiting(self) -> dict[str, int]:
        """Undelivered entries of this station per durable output."""
        with self.store.session() as s:
            return {name: s.query(OutboxEntry).filter(OutboxEntry.output == name, OutboxEntry.station == self.station,
                                                      OutboxEntry.delivered_at.is_(None)).count()
                    for name in self.durable_names}

    def close(self) -> None:
        for output in self.outputs:
            try:
                output.close()
            except Exception as exc:  # one output failing to close must not keep the others open
                log.error("output %s: cannot close: %s", output.name, exc)

    def _hand(self, output: Output, verdicts: Sequence[Verdict]) -> bool:
        try:
            late = output.deliver(verdicts)
        except Exception as exc:
            self._failed(output, verdicts, exc)
            return False
        if output.durable:
            self._mark(output.name, [v.inspection_id for v in verdicts], delivered=True, late=set(late or ()))
            self._recovered(output)
        return True

    def _failed(self, output: Output, verdicts: Sequence[Verdict], exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        log.debug("output %s failed", output.name, exc_info=True)
        if not output.durable:
            log.error("output %s failed for %d verdicts (not retried): %s", output.name, len(verdicts), reason)
            return
        self._backlog[output.name] = True
        backoff = self._backoff[output.name]
        if backoff.failing_since is None:
            backoff.failing_since = time.monotonic()
            log.warning("output %s failed (%s); its verdicts wait in the outbox and are handed on in order "
                        "when it works again", output.name, reason)
        backoff.delay = min(max(backoff.delay * 2, self.retry_every), MAX_BACKOFF)
        backoff.next_try = time.monotonic() + backoff.delay
        self._mark(output.name, [v.inspection_id for v in verdicts], delivered=False, error=reason)

    def _recovered(self, output: Output) -> None:
        backoff = self._backoff[output.name]
        if backoff.failing_since is not None:
            log.info("output %s works again after %.0f s", output.name, time.monotonic() - backoff.failing_since)
        backoff.failing_since, backoff.delay = None, 0.0

    def _mark(self, name: str, ids: list[int], delivered: bool, error: str | None = None,
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

    def _undelivered(self, name: str) -> list[Verdict]:
        """The oldest undelivered verdicts of this station for output `name`, this daemon's own and
        those whose daemon is gone (taken over)."""
        waiting = (OutboxEntry.output == name, OutboxEntry.station == self.station, OutboxEntry.delivered_at.is_(None))

        def work() -> list[Verdict]:
            with self.store.session() as s, s.begin():
                # Entries of this station's daemons that are gone become this daemon's (the newest
                # entry of each says when its daemon was last at work).
                others = select(OutboxEntry.worker, func.max(OutboxEntry.created_at)).where(
                    *waiting, OutboxEntry.worker != self.worker).group_by(OutboxEntry.worker)
                for worker, last in s.execute(others).all():
                    if claim_abandoned(worker, last, self.takeover_after):
                        s.execute(update(OutboxEntry).where(*waiting, OutboxEntry.worker == worker)
                                  .values(worker=self.worker).execution_options(synchronize_session=False))
                query = (select(OutboxEntry, Inspection, ModelRecord)
                         .join(Inspection, OutboxEntry.inspection_id == Inspection.id)
                         .outerjoin(ModelRecord, Inspection.model_id == ModelRecord.id)
                         .where(*waiting, OutboxEntry.worker == self.worker)
                         .order_by(OutboxEntry.id).limit(REDELIVERY_BATCH))
                return [Verdict.of_row(row, model) for _, row, model in s.execute(query)]

        return self.store.retry(work, f"read what output {name} has to hand on")
