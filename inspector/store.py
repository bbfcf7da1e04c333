"""The database: SQLAlchemy 2 models, engine set-up, migrations and the queries the rooms need.

The inspections table is the truth about every part: a row is claimed (status `pending`) before
a file is scored, so a crash leaves a row that the next start finishes. `content_hash` is unique:
the same bytes are never scored twice, whatever their name. The claiming protocol itself is in
`claims`.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, TypeVar

from sqlalchemy import (
    JSON, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
    create_engine, delete, event, false, select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from .errors import DatabaseError
from .kinds import DEFAULT_KINDS, KIND_LENGTH, clean_kind, kind_list

log = logging.getLogger("inspector.store")

DEFAULT_DB = "sqlite:///inspector.db"
STATUSES = ("pending", "done", "error")
VERDICTS = ("ok", "defect", "error")
LABELS = ("defect", "ok")

T = TypeVar("T")
# How long a database that became unreachable while in use (a server restarting) is waited for
# before giving up; at open there is no wait: an unreachable database is an error at once.
OUTAGE_SECONDS = 60.0
# PostgreSQL errors that mean "locked or in conflict, try again": serialization failure,
# deadlock, lock not available, statement cancelled by a lock timeout.
_PG_RETRY = ("40001", "40P01", "55P03", "57014")


# The alembic scripts that bring a database to the newest schema.
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def utcnow() -> datetime:
    """Naive UTC: every timestamp in the database is UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class ModelRecord(Base):
    """A trained bundle that judged parts."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    threshold: Mapped[float] = mapped_column(Float)
    loaded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Inspection(Base):
    """One image that landed in the inbox, and what became of it."""

    __tablename__ = "inspections"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'done', 'error')", name="ck_inspections_status"),
        CheckConstraint("verdict IS NULL OR verdict IN ('ok', 'defect', 'error')", name="ck_inspections_verdict"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_path: Mapped[str] = mapped_column(Text)
    source_name: Mapped[str] = mapped_column(String(500))
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    size_bytes: Mapped[Optional[int]] = mapped_column(Integer)
    width: Mapped[Optional[int]] = mapped_column(Integer)
    height: Mapped[Optional[int]] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    scored_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    verdict: Mapped[Optional[str]] = mapped_column(String(16), index=True)
    score: Mapped[Optional[float]] = mapped_column(Float)
    threshold: Mapped[Optional[float]] = mapped_column(Float)
    error_reason: Mapped[Optional[str]] = mapped_column(Text)
    heatmap_path: Mapped[Optional[str]] = mapped_column(Text)
    overlay_path: Mapped[Optional[str]] = mapped_column(Text)  # the heat drawn on the photo
    crop_overlay_path: Mapped[Optional[str]] = mapped_column(Text)  # the heat on the upright part
    stored_path: Mapped[Optional[str]] = mapped_column(Text)  # where the image went afterwards
    model_id: Mapped[Optional[int]] = mapped_column(ForeignKey("models.id"))
    processing_ms: Mapped[Optional[float]] = mapped_column(Float)
    station: Mapped[Optional[str]] = mapped_column(String(200), index=True)  # which line / machine
    worker: Mapped[Optional[str]] = mapped_column(String(300))  # the daemon process holding the claim
    claimed_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    # The hot regions (`inspector.regions`): [{"box", "outline", "area_px", "area_mm2", "peak",
    # "mean"}] in the photo's pixels; None for an error or a row judged before they were kept.
    regions: Mapped[Optional[list]] = mapped_column(JSON)

    model: Mapped[Optional[ModelRecord]] = relationship()
    reviews: Mapped[list["Review"]] = relationship(back_populates="inspection", order_by="Review.id")


class Review(Base):
    """A QA decision on an inspection: a confirmed defect or a false alarm."""

    __tablename__ = "reviews"
    __table_args__ = (CheckConstraint("label IN ('defect', 'ok')", name="ck_reviews_label"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id"), index=True)
    label: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    kind: Mapped[Optional[str]] = mapped_column(String(KIND_LENGTH))  # what a confirmed defect is; None: not said

    inspection: Mapped[Inspection] = relationship(back_populates="reviews")


class DefectKind(Base):
    """One entry of a station's list of defect kinds, the choices QA is offered when confirming a
    defect (a picker, not a constraint: a review may name another kind)."""

    __tablename__ = "defect_kinds"

    station: Mapped[str] = mapped_column(String(200), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(KIND_LENGTH))


class Run(Base):
    """A daemon's time at work: from its start to its stop (or, after a crash, the last time it
    said it was alive). `inspector stats` divides images by the time daemons ran."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    worker: Mapped[str] = mapped_column(String(300))  # host:pid:start-time, as claims record it
    station: Mapped[Optional[str]] = mapped_column(String(200), index=True)
    model_id: Mapped[Optional[int]] = mapped_column(ForeignKey("models.id"))
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    stopped_at: Mapped[Optional[datetime]] = mapped_column(DateTime)


class OutboxEntry(Base):
    """A verdict a durable output (`daemon.outputs`) still has to hand on, or has handed on:
    committed in the same transaction as the verdict, marked delivered once the output took it.
    Its id is the order in which entries are handed on."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("inspection_id", "output", name="uq_outbox_inspection_output"),
        Index("ix_outbox_waiting", "output", "station", "delivered_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id"))
    output: Mapped[str] = mapped_column(String(100))  # the output's name
    station: Mapped[Optional[str]] = mapped_column(String(200))
    worker: Mapped[str] = mapped_column(String(300))  # the daemon that hands it on (taken over when it died)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    delivered_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    # Handed on after the line's deadline (`watch --deadline-ms`): the reject gate had passed.
    late: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


def normalize_url(db: str) -> str:
    """Accept a plain file path as well as a SQLAlchemy URL."""
    return db if "://" in db else f"sqlite:///{db}"


def shown_url(url: str) -> str:
    """The URL for messages: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database or another kind."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    name = parsed.database
    if not parsed.drivername.startswith("sqlite") or not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def is_locked(exc: OperationalError) -> bool:
    """Whether a database error means "busy, try again" (locked, in conflict, full for a moment)
    rather than "cannot be reached" (no such file or host, refused, authentication failed)."""
    if getattr(exc.orig, "sqlstate", None) in _PG_RETRY:
        return True
    text = str(exc.orig).lower()
    return any(words in text for words in ("database is locked", "database table is locked", "busy",
                                           "database or disk is full"))


def _reason(exc: Exception) -> str:
    """The first line of a driver's message."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def make_engine(db: str) -> Engine:
    """An engine for a database URL; an unknown database type or a missing driver is a
    `DatabaseError` saying so."""
    url = normalize_url(db)
    try:
        return _engine(url)
    except (ArgumentError, NoSuchModuleError):
        kind = url.split("://", 1)[0]
        raise DatabaseError(f"cannot use database {shown_url(url)}: unknown database type {kind!r} "
                            "(use a SQLite file or postgresql+psycopg://...)") from None
    except ImportError as exc:
        raise DatabaseError(f"cannot use database {shown_url(url)}: its driver is not installed "
                            f"({exc.name or exc}); for PostgreSQL install inspector[postgres] and use "
                            "postgresql+psycopg://...") from None


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # A generous busy timeout: another writer holding the lock makes us wait, not fail.
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # a verdict is on disk before its file moves
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


# PostgreSQL advisory lock taken while migrating: any fixed number shared by every daemon.
MIGRATION_LOCK = 0x1A5E_C702


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest alembic revision, under a lock: daemons starting at once
    on an empty database migrate one after the other (the later finds the schema current).
    PostgreSQL: an advisory lock held to the end of the transaction; SQLite: its write lock
    (BEGIN IMMEDIATE)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # no chatter at every start
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        elif engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Store:
    """Sessions on one database, migrated on open, with retries while it is locked.

    Opening fails at once (`DatabaseError`, one line) when the database cannot be reached or
    used; with `must_exist`, when a SQLite file is missing (read-only commands never create one).
    Once open, a locked database is waited for as long as it takes; one that became unreachable
    for `outage` seconds.
    """

    def __init__(self, db: str = DEFAULT_DB, migrate_schema: bool = True, must_exist: bool = False,
                 outage: float = OUTAGE_SECONDS):
        self.url = normalize_url(db)
        self.file = sqlite_file(self.url)
        if must_exist and self.file is not None and not self.file.is_file():
            raise DatabaseError(f"no database at {self.file} (give --db or set INSPECTOR_DB; "
                                "`inspector watch` creates one)")
        self.engine = make_engine(self.url)
        self.outage = 0.0
        try:
            self.retry(lambda: migrate(self.engine) if migrate_schema else self._ping(), "open")
        except BaseException:
            self.engine.dispose()
            raise
        self.outage = outage
        self._identity = self._file_identity()
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self.sessions()

    def _ping(self) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    def _file_identity(self) -> tuple[int, int] | None:
        if self.file is None:
            return None
        st = os.stat(self.file)
        return st.st_dev, st.st_ino

    def check_file(self) -> None:
        """For SQLite: raise `DatabaseError` when the file opened was deleted or replaced since
        (the connections would go on writing into the old, unlinked file, and be lost)."""
        if self._identity is None:
            return
        try:
            st = os.stat(self.file)
        except FileNotFoundError:
            raise DatabaseError(f"the database file {self.file} was deleted while in use; verdicts written "
                                "since are lost with it") from None
        if (st.st_dev, st.st_ino) != self._identity:
            raise DatabaseError(f"the database file {self.file} was replaced by another file while in use")

    def retry(self, work: Callable[[], T], what: str) -> T:
        """Run `work`, retrying while the database is locked (for ever) or unreachable (for
        `outage` seconds; then, and at open at once, `DatabaseError`)."""
        delay, started = 0.1, time.monotonic()
        while True:
            try:
                return work()
            except OperationalError as exc:
                locked = is_locked(exc)
                if not locked and time.monotonic() - started >= self.outage:
                    raise DatabaseError(f"cannot open database {shown_url(self.url)}: {_reason(exc)}"
                                        if what == "open" else
                                        f"database {shown_url(self.url)} unreachable for {self.outage:.0f} s "
                                        f"during {what}: {_reason(exc)}") from None
                log.warning("database %s during %s (%s); retrying in %.1fs", "busy" if locked else "unreachable",
                            what, _reason(exc), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def model_record(self, fingerprint: str, name: str, path: str, threshold: float) -> int:
        def work() -> int:
            with self.session() as s, s.begin():
                record = s.scalar(select(ModelRecord).where(ModelRecord.fingerprint == fingerprint))
                if record is None:
                    record = ModelRecord(fingerprint=fingerprint, name=name, path=path, threshold=threshold)
                    s.add(record)
                else:
                    record.threshold, record.path, record.loaded_at = threshold, path, utcnow()
                s.flush()
                return record.id

        try:
            return self.retry(work, "record model")
        except IntegrityError:  # another daemon starting with the same model inserted it first
            return self.retry(work, "record model")

    def start_run(self, worker: str, station: str | None, model_id: int | None) -> int:
        """Record that a daemon started; returns the run's id for `touch_run`."""
        def work() -> int:
            with self.session() as s, s.begin():
                run = Run(worker=worker, station=station, model_id=model_id, started_at=utcnow(), last_seen_at=utcnow())
                s.add(run)
                s.flush()
                return run.id

        return self.retry(work, "record the daemon's start")

    def touch_run(self, run_id: int, stopped: bool = False) -> None:
        """The daemon is still at work (now and then), or has stopped."""
        def work() -> None:
            with self.session() as s, s.begin():
                run = s.get(Run, run_id)
                if run is not None:
                    run.last_seen_at = utcnow()
                    if stopped:
                        run.stopped_at = run.last_seen_at

        self.retry(work, "record the daemon's time")

    def get(self, inspection_id: int) -> Inspection | None:
        with self.session() as s:
            return s.get(Inspection, inspection_id, options=[_with_reviews()])

    def add_review(self, inspection_id: int, label: str, reviewer: str = "", note: str = "",
                   kind: str | None = None) -> Review:
        """QA's decision; `kind` (only with label defect; blank is none) says what the defect is."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
        kind = clean_kind(kind) if kind and kind.strip() else None
        if kind is not None and label != "defect":
            raise ValueError(f"a defect kind ({kind!r}) goes with the label defect only, not {label!r}")

        def work() -> Review:
            with self.session() as s, s.begin():
                row = s.get(Inspection, inspection_id)
                if row is None:
                    raise LookupError(f"no inspection with id {inspection_id}")
                if row.status != "done":  # an error or a part still being judged has no verdict to confirm
                    why = row.error_reason if row.status == "error" else "it is still being judged"
                    raise ValueError(f"inspection {inspection_id} was not judged ({why}): "
                                     "only a verdict can be confirmed or called a false alarm")
                review = Review(inspection_id=inspection_id, label=label, reviewer=reviewer, note=note, kind=kind)
                s.add(review)
                return review

        return self.retry(work, "add review")

    def defect_kinds(self, station: str | None, default: bool = True) -> list[str]:
        """The kinds QA picks from at `station`, in order: its own list, else DEFAULT_KINDS (or
        [] when not `default`)."""
        query = select(DefectKind.name).where(DefectKind.station == station).order_by(DefectKind.position)
        with self.session() as s:
            kinds = list(s.scalars(query)) if station else []
        return kinds or (list(DEFAULT_KINDS) if default else [])

    def set_defect_kinds(self, station: str, kinds: list[str]) -> list[str]:
        """Replace `station`'s list of kinds (empty: back to the default); returns what is stored."""
        if not station or not station.strip():
            raise ValueError("a station name is needed")
        kinds = kind_list(kinds)

        def work() -> None:
            with self.session() as s, s.begin():
                s.execute(delete(DefectKind).where(DefectKind.station == station))
                s.add_all(DefectKind(station=station, position=i, name=kind) for i, kind in enumerate(kinds, 1))

        self.retry(work, "set defect kinds")
        return kinds

    def inspections(
        self,
        flagged: bool = False,
        verdict: str | None = None,
        since: datetime | None = None,
        reviewed: bool | None = None,
        limit: int | None = None,
        label: str | None = None,
        offset: int = 0,
    ) -> list[Inspection]:
        """Inspections newest first; `flagged` keeps verdict defect only; `label` ("defect" or
        "ok") those whose newest review says so; `offset` skips that many (a page's start)."""
        query = select(Inspection).options(_with_reviews()).order_by(Inspection.received_at.desc(), Inspection.id.desc())
        if label is not None:
            newest = (select(Review.label).where(Review.inspection_id == Inspection.id)
                      .order_by(Review.id.desc()).limit(1).correlate(Inspection).scalar_subquery())
            query = query.where(newest == label)
        if flagged:
            query = query.where(Inspection.verdict == "defect")
        if verdict:
            query = query.where(Inspection.verdict == verdict)
        if since:
            query = query.where(Inspection.received_at >= since)
        if reviewed is not None:
            has_review = Inspection.reviews.any()
            query = query.where(has_review if reviewed else ~has_review)
        if offset:
            query = query.offset(offset)
        if limit:
            query = query.limit(limit)
        with self.session() as s:
            return list(s.scalars(query))


def _with_reviews():
    from sqlalchemy.orm import selectinload

    return selectinload(Inspection.reviews)
