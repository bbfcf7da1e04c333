"""The exactly-once protocol: which worker judges which image, kept in the database.

An image is claimed as a `pending` row keyed by its content hash (unique), owned by the worker
(`host:pid:start-time`) that claimed it. Only the worker still owning a claim records its
verdict. A claim whose worker is gone is taken over: at once when that worker ran on this host
(its process is gone), after `timeout` seconds when it ran on another. At start-up, a pending
row whose file vanished and whose worker is gone is closed as an error.

Plain methods on a `Store`, without threads or files; the daemon's batches (`batch`) call them.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..names import path_to_text, printable, text_to_path
from ..store import Inspection, OutboxEntry, Store, utcnow

log = logging.getLogger("inspector.claims")

# What became of a request to claim a file's content.
CLAIMED = "claimed"  # ours to judge: a new row, our own earlier claim, or one taken over
BUSY = "busy"  # another worker, alive, is judging this file
IN_HAND = "in hand"  # this worker claimed this content for a batch not finished yet
ALREADY_JUDGED = "already judged"  # this file was judged already; only moving it out of the inbox is left
DUPLICATE = "duplicate"  # the same content, under another name, was (or is being) judged

# Values in one IN (...) list at most: well under any database's limit on parameters.
_IN_LIMIT = 500


def worker_identity() -> str:
    """host:pid:start-time of this process; the start time tells a reused pid apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def _process_start(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def claim_abandoned(worker: str | None, claimed_at: datetime | None, timeout: float) -> bool:
    """Whether a pending claim's worker is gone: a dead process on this host, or, for another
    host, a claim older than `timeout` seconds."""
    if not worker:
        return True
    host, _, rest = worker.partition(":")
    pid, _, start = rest.partition(":")
    if host == socket.gethostname() and pid.isdigit():
        return _process_start(int(pid)) != start
    return claimed_at is None or (utcnow() - claimed_at).total_seconds() > timeout


@dataclass(frozen=True)
class Request:
    """A file to claim: where it is, the hash of its content, its size if it was read."""

    path: str
    content_hash: str
    size_bytes: int | None = None


@dataclass(frozen=True)
class Claim:
    """The answer to a `Request`: its state and the row that holds its content."""

    state: str  # CLAIMED, BUSY, IN_HAND, ALREADY_JUDGED or DUPLICATE
    row_id: int | None = None  # None when another worker claimed the content at the same moment
    status: str | None = None  # the row's status when it was read
    stored_path: str | None = None
    received_at: datetime | None = None
    first_name: str | None = None  # the name the row's content first came under


class Claims:
    """One worker's side of the protocol on a store; every method is one transaction, retried
    while the database is locked."""

    def __init__(self, store: Store, worker: str | None = None, station: str = "", timeout: float = 60.0):
        self.store = store
        self.worker = worker or worker_identity()
        self.station = station
        self.timeout = timeout
        # Rows this worker claimed for a batch not finished yet: the same content again meanwhile
        # (the daemon claims a batch while it finishes the one before) is busy, not claimed twice.
        self.in_hand: set[int] = set()

    def release(self, row_ids: list[int]) -> None:
        """The batch that claimed these rows is finished (or failed): they are no longer in hand."""
        self.in_hand.difference_update(row_ids)

    def refresh(self) -> None:
        """Date the claims in hand now: a batch that waits behind a slow one (judged one file at a
        time after a failure) must not look abandoned to the workers on other hosts."""
        rows = sorted(self.in_hand)
        if not rows:
            return

        def work() -> None:
            with self.store.session() as s, s.begin():
                for start in range(0, len(rows), _IN_LIMIT):
                    s.execute(update(Inspection)
                              .where(Inspection.id.in_(rows[start:start + _IN_LIMIT]),
                                     Inspection.status == "pending", Inspection.worker == self.worker)
                              .values(claimed_at=utcnow())
                              .execution_options(synchronize_session=False))

        self.store.retry(work, "refresh claims")

    def claim(self, requests: list[Request]) -> list[Claim]:
        """Claim each request's content, in one transaction; the answers are in request order.

        New content gets a pending row owned by this worker. A pending row whose worker is gone
        is taken over; one whose worker is alive is left to it. A finished row for this same
        path means only the move is left to do; anything else is a duplicate.
        """
        try:
            answers = self.store.retry(lambda: self._claim(requests), "claim")
        except IntegrityError:  # another worker claimed some of this content at the same moment
            if len(requests) == 1:
                return [Claim(BUSY)]  # theirs; the file is taken again later (intake.retry_wait) if they fail
            return [answer for request in requests for answer in self.claim([request])]
        self.in_hand.update(answer.row_id for answer in answers if answer.state == CLAIMED)
        return answers

    def _claim(self, requests: list[Request]) -> list[Claim]:
        # One query for the rows already there and one flush for the new ones (one INSERT where the
        # database gives ids back in order, PostgreSQL): a batch's claims took a query and a flush
        # per file (a millisecond each, the line waiting).
        with self.store.session() as s, s.begin():
            rows = self._rows_by_hash(s, [request.content_hash for request in requests])
            decided: list[tuple[str, Inspection]] = []
            taken: set[int] = set()  # the rows (by identity) claimed in this transaction
            for request in requests:
                row = rows.get(request.content_hash)
                now, path = utcnow(), path_to_text(request.path)
                if row is None:
                    row = Inspection(source_path=path, source_name=printable(os.path.basename(request.path)),
                                     content_hash=request.content_hash, size_bytes=request.size_bytes,
                                     received_at=now, status="pending", station=self.station,
                                     worker=self.worker, claimed_at=now)
                    s.add(row)
                    rows[request.content_hash] = row  # the same content again in this batch: a duplicate
                    state = CLAIMED
                elif row.status == "pending" and row.id in self.in_hand:
                    # In a batch of ours not finished: the file is looked at again once it is, when
                    # a file renamed meanwhile is known for what it is, not taken for a copy.
                    state = IN_HAND
                elif row.status == "pending" and id(row) not in taken:
                    if row.worker == self.worker:  # our own claim from a batch that failed: dated anew
                        row.claimed_at, state = now, CLAIMED
                    elif claim_abandoned(row.worker, row.claimed_at, self.timeout):
                        state = CLAIMED if self._take_over(s, row, request.path, now) else BUSY
                    else:
                        state = BUSY if row.source_path == path else DUPLICATE
                elif row.source_path == path and row.status != "pending":
                    state = ALREADY_JUDGED
                else:
                    state = DUPLICATE
                if state == CLAIMED:
                    taken.add(id(row))
                decided.append((state, row))
            s.flush()  # the new rows get their ids (or another worker's same content: IntegrityError)
            return [Claim(state, row.id, row.status, row.stored_path, row.received_at, row.source_name)
                    for state, row in decided]

    @staticmethod
    def _rows_by_hash(session, hashes: list[str]) -> dict[str, Inspection]:
        rows: dict[str, Inspection] = {}
        unique = sorted(set(hashes))
        for start in range(0, len(unique), _IN_LIMIT):
            part = unique[start:start + _IN_LIMIT]
            rows.update((row.content_hash, row)
                        for row in session.scalars(select(Inspection).where(Inspection.content_hash.in_(part))))
        return rows

    def _take_over(self, session, row: Inspection, path: str, now: datetime) -> bool:
        """Claim a pending row from a gone worker; false if another worker got there first."""
        result = session.execute(
            update(Inspection)
            .where(Inspection.id == row.id, Inspection.status == "pending", _equals(Inspection.worker, row.worker))
            .values(worker=self.worker, claimed_at=now, source_path=path_to_text(path),
                    source_name=printable(os.path.basename(path)), station=self.station)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            log.warning("%s: taking over inspection %d from %s", printable(os.path.basename(path)), row.id,
                        row.worker or "an old run")
            return True
        return False

    def commit(self, verdicts: dict[int, dict], outbox: tuple[str, ...] = ()) -> set[int]:
        """Record the values of each row this worker still owns (row id -> column values), in one
        transaction; returns the ids it no longer owns (taken over: their verdict is not ours).

        `outbox`: the names of the durable outputs; each recorded verdict gets an outbox entry per
        name in the same transaction, so a verdict is never committed without them."""
        def work() -> set[int]:
            with self.store.session() as s, s.begin():
                connection = s.connection()
                lost = set()
                # Through the connection, one compiled statement for the rows that set the same
                # columns: the session's own execute costs several times as much per row.
                statements: dict[tuple[str, ...], object] = {}
                for row_id, values in verdicts.items():
                    columns = tuple(sorted(values))
                    if columns not in statements:
                        statements[columns] = (update(Inspection)
                                               .where(Inspection.id == bindparam("row_id_"),
                                                      Inspection.status == "pending", Inspection.worker == self.worker)
                                               .values({c: bindparam(f"value_{c}") for c in columns}))
                    result = connection.execute(statements[columns],
                                                {"row_id_": row_id, **{f"value_{c}": values[c] for c in columns}})
                    if result.rowcount != 1:  # no longer ours, or recorded already
                        lost.add(row_id)
                entries = [{"inspection_id": row_id, "output": name, "station": self.station, "worker": self.worker,
                            "created_at": utcnow()}
                           for row_id in verdicts if row_id not in lost for name in outbox]
                if entries:
                    connection.execute(insert(OutboxEntry), entries)
                return lost

        return self.store.retry(work, "record verdicts")

    def rename(self, row_id: int, path: str, stored_path: str | None = None) -> None:
        """A judged file was renamed in the inbox: its row names it by its new path (and, for a
        file kept in the inbox, stores it there)."""
        values = dict(source_path=path_to_text(path), source_name=printable(os.path.basename(path)))
        if stored_path is not None:
            values["stored_path"] = path_to_text(stored_path)

        def work() -> None:
            with self.store.session() as s, s.begin():
                s.execute(update(Inspection).where(Inspection.id == row_id).values(**values)
                          .execution_options(synchronize_session=False))

        self.store.retry(work, "rename")

    def recover(self, exists: Callable[[str], bool] = os.path.lexists) -> tuple[int, int]:
        """At start-up: an abandoned pending row whose file is gone can never be judged; close it
        as an error. Returns (pending rows, rows closed). Rows whose file `exists` are left to
        the scan of the inbox (or to their live worker)."""
        def work() -> tuple[int, int]:
            vanished = 0
            with self.store.session() as s, s.begin():
                rows = s.scalars(select(Inspection).where(Inspection.status == "pending")).all()
                for row in rows:
                    if exists(text_to_path(row.source_path)) or not claim_abandoned(row.worker, row.claimed_at, self.timeout):
                        continue
                    result = s.execute(
                        update(Inspection)
                        .where(Inspection.id == row.id, Inspection.status == "pending",
                               _equals(Inspection.claimed_at, row.claimed_at))
                        .values(status="error", verdict="error", scored_at=utcnow(),
                                error_reason="file disappeared from the inbox before it was scored")
                        .execution_options(synchronize_session=False)
                    )
                    vanished += result.rowcount
                return len(rows), vanished

        return self.store.retry(work, "recover")


def _equals(column, value):
    """SQL equality that also matches NULL: the row is still as it was read."""
    return column.is_(None) if value is None else column == value
