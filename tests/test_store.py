import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from inspector.store import Base, Inspection, Store


@pytest.fixture
def store(database_url):
    s = Store(database_url)
    yield s
    s.close()


def test_migration_creates_exactly_the_models(store):
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_migrating_twice_is_harmless(database_url):
    Store(database_url).close()
    again = Store(database_url)
    assert again.inspections() == []
    with again.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0008"
    again.close()


def test_migrations_downgrade_and_upgrade_again(database_url):
    from alembic import command

    store = Store(database_url)
    config = _alembic_config(store)
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    assert store.inspections() == []
    store.close()


def _alembic_config(store):
    from pathlib import Path

    from alembic.config import Config

    import inspector.store

    config = Config()
    config.set_main_option("script_location", str(Path(inspector.store.__file__).parent / "migrations"))
    return config


def test_sqlite_runs_in_wal_mode(tmp_path):
    store = Store(str(tmp_path / "db.sqlite"))
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()


def test_content_hash_is_unique(store):
    with store.session() as s, s.begin():
        s.add(Inspection(source_path="/in/a.png", source_name="a.png", content_hash="h" * 64, status="pending"))
    with pytest.raises(IntegrityError):
        with store.session() as s, s.begin():
            s.add(Inspection(source_path="/in/b.png", source_name="b.png", content_hash="h" * 64, status="pending"))


def test_reviews_and_filters(store):
    with store.session() as s, s.begin():
        for i, verdict in enumerate(["ok", "defect", "defect", "error"]):
            s.add(Inspection(source_path=f"/in/{i}.png", source_name=f"{i}.png", content_hash=str(i) * 64,
                             status="error" if verdict == "error" else "done", verdict=verdict, score=float(i)))
    flagged = store.inspections(flagged=True)
    assert [r.source_name for r in flagged] == ["2.png", "1.png"]  # newest first
    store.add_review(flagged[0].id, "ok", reviewer="qa1", note="false alarm")
    assert [r.source_name for r in store.inspections(flagged=True, reviewed=False)] == ["1.png"]
    assert store.get(flagged[0].id).reviews[0].note == "false alarm"
    with pytest.raises(LookupError):
        store.add_review(999, "ok")
    with pytest.raises(ValueError):
        store.add_review(flagged[0].id, "maybe")


def test_database_level_check_refuses_a_bad_verdict(store):
    from sqlalchemy import text

    with pytest.raises(IntegrityError):
        with store.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO inspections (source_path, source_name, content_hash, received_at, status, verdict)"
                " VALUES ('a', 'a', 'x', '2026-01-01', 'done', 'maybe')"))


def test_daemons_starting_together_share_one_model_row(database_url):
    """Several daemons loading the same bundle at once must not trip over the unique fingerprint."""
    import threading

    stores = [Store(database_url) for _ in range(4)]
    barrier, ids, errors = threading.Barrier(4), [], []

    def start(store):
        barrier.wait()
        try:
            ids.append(store.model_record("f" * 16, "screw", "/m", 0.5))
        except Exception as exc:  # the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert errors == [] and len(set(ids)) == 1


@pytest.mark.parametrize("url, says", [
    ("sqlite:////nonexistent/dir/x.db", "cannot open database sqlite:////nonexistent/dir/x.db"),
    ("postgresql+psycopg://qa:secret@no-such-host.invalid/inspector", "cannot open database postgresql+psycopg://qa:***@no-such-host.invalid/inspector"),
    ("foo://x/y", "unknown database type 'foo'"),
    ("mysql://qa@db/inspector", "its driver is not installed"),
])
def test_a_database_that_cannot_be_opened_fails_fast_with_one_line(url, says):
    """Unreachable is not locked: no retry for ever, no traceback."""
    import time

    from inspector.errors import DatabaseError

    started = time.monotonic()
    with pytest.raises(DatabaseError) as caught:
        Store(url)
    assert says in str(caught.value) and "\n" not in str(caught.value)
    assert "secret" not in str(caught.value)
    assert time.monotonic() - started < 20


def test_locked_is_retried_for_ever_unreachable_only_for_the_outage(tmp_path):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from inspector.errors import DatabaseError

    store = Store(str(tmp_path / "db.sqlite"), outage=0.3)
    calls = []

    def locked_three_times():
        calls.append(1)
        if len(calls) <= 3:
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        return "written"

    assert store.retry(locked_three_times, "test") == "written"

    def unreachable():
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("unable to open database file"))

    with pytest.raises(DatabaseError, match="unreachable for 0 s during test: unable to open database file"):
        store.retry(unreachable, "test")
    store.close()


def test_read_only_opening_never_creates_a_database(tmp_path):
    """A missing SQLite file is an error naming the path looked at."""
    from inspector.errors import DatabaseError

    missing = tmp_path / "inspector.db"
    with pytest.raises(DatabaseError, match=f"no database at {missing}"):
        Store(str(missing), must_exist=True)
    assert not missing.exists()


def test_a_deleted_or_replaced_sqlite_file_is_noticed(tmp_path):
    """The file's identity (device and inode) is checked."""
    from inspector.errors import DatabaseError

    db = tmp_path / "db.sqlite"
    store = Store(str(db))
    store.check_file()
    other = Store(str(tmp_path / "other.sqlite"))
    other.close()
    os.replace(tmp_path / "other.sqlite", db)
    with pytest.raises(DatabaseError, match="was replaced"):
        store.check_file()
    db.unlink()
    with pytest.raises(DatabaseError, match="was deleted"):
        store.check_file()
    store.close()


def _database_at(database_url, revision: str, *insert_sql: str) -> None:
    """A database migrated to `revision` only, holding the rows the `insert_sql` statements add."""
    from alembic import command
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    config = _alembic_config(None)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        for statement in insert_sql:
            connection.execute(text(statement))
    engine.dispose()


def _downgrade(store, revision: str) -> None:
    from alembic import command

    config = _alembic_config(None)
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_migration_0003_adds_daemon_runs_and_keeps_the_rows(database_url):
    """The runs table (when each daemon ran) is added to a database at 0002."""
    from sqlalchemy import create_engine, inspect, text

    _database_at(database_url, "0002", "INSERT INTO inspections (source_path, source_name, content_hash, received_at,"
                 " status) VALUES ('/in/a.png', 'a.png', 'a', '2026-11-23 08:00:00', 'done')")
    engine = create_engine(database_url)
    assert "runs" not in inspect(engine).get_table_names()
    engine.dispose()
    store = Store(database_url)  # migrates to the head
    assert [r.source_name for r in store.inspections()] == ["a.png"]
    run_id = store.start_run("host:1:2", "line1", None)
    store.touch_run(run_id, stopped=True)
    with store.engine.connect() as connection:
        row = connection.execute(text("SELECT worker, station, started_at, last_seen_at, stopped_at FROM runs")).one()
    assert row.worker == "host:1:2" and row.station == "line1" and row.stopped_at >= row.started_at
    _downgrade(store, "0002")
    assert "runs" not in inspect(store.engine).get_table_names()
    store.close()


def test_migration_0004_adds_the_upright_overlay_and_keeps_the_rows(database_url):
    """The overlay on the upright part is kept beside the overlay on the photo."""
    from sqlalchemy import create_engine, inspect

    def columns(engine) -> set[str]:
        return {c["name"] for c in inspect(engine).get_columns("inspections")}

    _database_at(database_url, "0003", "INSERT INTO inspections (source_path, source_name, content_hash, received_at,"
                 " status, overlay_path) VALUES ('/in/a.png', 'a.png', 'a', '2026-11-23 08:00:00', 'done',"
                 " '/out/1_overlay.png')")
    engine = create_engine(database_url)
    assert "crop_overlay_path" not in columns(engine)
    engine.dispose()
    store = Store(database_url)
    [row] = store.inspections()
    assert row.overlay_path == "/out/1_overlay.png" and row.crop_overlay_path is None
    _downgrade(store, "0003")
    assert "crop_overlay_path" not in columns(store.engine)
    store.close()


def test_migration_0005_adds_the_outbox_and_keeps_the_rows(database_url):
    """The outbox (what durable outputs still have to hand on) is added to a database at 0004; an
    entry names its inspection and output once."""
    import pytest
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.exc import IntegrityError

    from inspector.store import OutboxEntry, utcnow

    _database_at(database_url, "0004", "INSERT INTO inspections (source_path, source_name, content_hash, received_at,"
                 " status) VALUES ('/in/a.png', 'a.png', 'a', '2026-11-23 08:00:00', 'done')")
    engine = create_engine(database_url)
    assert "outbox" not in inspect(engine).get_table_names()
    engine.dispose()
    store = Store(database_url)
    [row] = store.inspections()
    with store.session() as s, s.begin():
        s.add(OutboxEntry(inspection_id=row.id, output="line", station="line1", worker="host:1:2", created_at=utcnow()))
    with store.session() as s:
        [entry] = s.query(OutboxEntry).all()
        assert (entry.output, entry.attempts, entry.delivered_at, entry.late) == ("line", 0, None, False)
    with pytest.raises(IntegrityError), store.session() as s, s.begin():
        s.add(OutboxEntry(inspection_id=row.id, output="line", station="line1", worker="host:1:2", created_at=utcnow()))
    _downgrade(store, "0004")
    assert "outbox" not in inspect(store.engine).get_table_names()
    store.close()


def test_migration_0007_adds_defect_kinds_and_keeps_the_reviews(database_url):
    """A review made before defect kinds existed has none; a station's list of kinds is stored in order."""
    from sqlalchemy import create_engine, inspect

    from inspector.kinds import DEFAULT_KINDS

    _database_at(database_url, "0006", "INSERT INTO inspections (source_path, source_name, content_hash, received_at,"
                 " status, verdict) VALUES ('/in/a.png', 'a.png', 'a', '2026-11-23 08:00:00', 'done', 'defect')",
                 "INSERT INTO reviews (inspection_id, label, reviewer, note, created_at)"
                 " VALUES (1, 'defect', 'ana', 'thread damaged', '2026-11-23 09:00:00')")
    engine = create_engine(database_url)
    assert "defect_kinds" not in inspect(engine).get_table_names()
    engine.dispose()
    store = Store(database_url)
    [row] = store.inspections()
    [review] = row.reviews
    assert (review.label, review.note, review.kind) == ("defect", "thread damaged", None)
    assert store.defect_kinds("line1") == list(DEFAULT_KINDS)
    store.set_defect_kinds("line1", ["thread", "tip"])
    assert store.defect_kinds("line1") == ["thread", "tip"]
    _downgrade(store, "0006")
    assert "defect_kinds" not in inspect(store.engine).get_table_names()
    assert "kind" not in {c["name"] for c in inspect(store.engine).get_columns("reviews")}
    store.close()


def test_migration_0008_adds_hot_regions_and_keeps_the_rows(database_url):
    """A verdict stored before hot regions were kept has none; a new one keeps its list."""
    from sqlalchemy import inspect

    _database_at(database_url, "0007", "INSERT INTO inspections (source_path, source_name, content_hash, received_at,"
                 " status, verdict, score) VALUES ('/in/a.png', 'a.png', 'a', '2026-11-23 08:00:00', 'done', 'defect',"
                 " 2.5)")
    store = Store(database_url)
    [row] = store.inspections()
    assert (row.verdict, row.score, row.regions) == ("defect", 2.5, None)
    region = {"box": [10, 20, 30, 40], "outline": [[10, 20], [40, 20], [40, 60]], "area_px": 812.5,
              "area_mm2": None, "peak": 3.25, "mean": 2.75}
    with store.session() as s, s.begin():
        s.get(Inspection, row.id).regions = [region]
    assert store.get(row.id).regions == [region]
    _downgrade(store, "0007")
    assert "regions" not in {c["name"] for c in inspect(store.engine).get_columns("inspections")}
    store.close()


OPEN_AT = """
import sys, time
from inspector.store import Store
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
Store(sys.argv[1]).close()
print("opened")
"""


def test_daemons_opening_an_empty_database_at_once_migrate_it_one_after_the_other(database_url):
    """Each process migrates an empty database on open; at once, they must not trip over each
    other's tables (the migration runs under a lock)."""
    import subprocess
    import sys
    import time

    start = f"{time.time() + 4.0:.3f}"  # after every process has imported what it needs
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_AT, database_url, start], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in processes]
    assert all(code == 0 and out.strip() == "opened" for out, _, code in results), [err for _, err, _ in results]
    store = Store(database_url)
    try:
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
    finally:
        store.close()
