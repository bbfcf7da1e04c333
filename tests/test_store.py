import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from inspector.store import Base, Inspection, Store


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "db.sqlite"))
    yield s
    s.close()


def test_migration_creates_exactly_the_models(store):
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_migrating_twice_is_harmless(tmp_path):
    Store(str(tmp_path / "db.sqlite")).close()
    again = Store(str(tmp_path / "db.sqlite"))
    assert again.inspections() == []
    again.close()


def test_sqlite_runs_in_wal_mode(store, tmp_path):
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


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


def test_database_level_check_refuses_a_bad_verdict(store, tmp_path):
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO inspections (source_path, source_name, content_hash, received_at, status, verdict)"
                     " VALUES ('a', 'a', 'x', '2026-01-01', 'done', 'maybe')")
    conn.close()
