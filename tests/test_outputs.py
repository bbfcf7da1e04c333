"""The outputs seam: an output added to the daemon is handed every committed verdict exactly
once, in commit order, also when it fails for a while and after a SIGKILL between the commit and
the output."""

import logging
import signal
import threading

import pytest

from sqlalchemy import create_engine, text

from helpers import reap, start_recording_daemon, wait_for, write_png
from inspector.bundle import load_bundle
from inspector.daemon import Output, WatchOptions, Watcher
from inspector.daemon import outputs as outputs_module
from inspector.daemon.claims import Claims, Request, worker_identity
from inspector.daemon.outputs import Outputs, Verdict
from inspector.store import Inspection, OutboxEntry, Store, utcnow


def rows(url: str, where: str = "1=1") -> list:
    """The inspections of the database at `url` (SQLite or PostgreSQL), by id."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(f"SELECT * FROM inspections WHERE {where} ORDER BY id")).mappings().all()
    except Exception:  # the schema is not there yet
        return []
    finally:
        engine.dispose()


def undelivered(watcher, output="recorder") -> int:
    """Outbox entries of `output` not yet marked delivered (marking follows the hand-over)."""
    with watcher.store.session() as s:
        return s.query(OutboxEntry).filter(OutboxEntry.output == output, OutboxEntry.delivered_at.is_(None)).count()


class Recorder(Output):
    """A throwaway output: remembers what it was handed; fails while `failures` is above 0;
    calls `during(verdicts)` first in each hand-over (what happens meanwhile elsewhere)."""

    durable = True

    def __init__(self, name="recorder", failures=0, during=None):
        self.name, self.failures, self.during = name, failures, during
        self.handed: list = []
        self.tries = 0

    def deliver(self, verdicts):
        self.tries += 1
        if self.during is not None:
            self.during(verdicts)
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("the line is down")
        self.handed.extend(verdicts)


@pytest.fixture
def watching(tiny_bundle, tmp_path, database_url):
    started = []

    def start(*outputs, **options):
        inbox = tmp_path / "inbox"
        inbox.mkdir(exist_ok=True)
        store = Store(database_url)
        watcher = Watcher(inbox, load_bundle(tiny_bundle), store,
                          WatchOptions(out=tmp_path / "out", batch=4, settle=0.2, rescan_every=1.0,
                                       retry_every=0.2, **options), outputs=outputs)
        thread = threading.Thread(target=watcher.run, kwargs={"install_signals": False}, name="watcher-under-test")
        thread.start()
        started.append((watcher, thread, store))
        return inbox, database_url, watcher

    yield start
    for watcher, thread, store in started:
        watcher.stop()
        thread.join(timeout=30)
        store.close()


def test_an_added_output_gets_every_committed_verdict_once_in_commit_order(watching):
    recorder = Recorder()
    inbox, db, watcher = watching(recorder)
    for i in range(10):
        write_png(inbox / f"part{i}.png", seed=200 + i)
    (inbox / "empty.png").write_bytes(b"")
    wait_for(lambda: len(recorder.handed) == 11 and undelivered(watcher) == 0, 60, "11 verdicts handed on")
    ids = [v.inspection_id for v in recorder.handed]
    committed = {r["id"]: r for r in rows(db)}
    assert sorted(ids) == sorted(committed) and len(set(ids)) == 11
    for v in recorder.handed:
        row = committed[v.inspection_id]
        assert (v.verdict, v.status, v.source_name, v.score) == (row["verdict"], row["status"], row["source_name"],
                                                                 row["score"])
    assert {v.verdict for v in recorder.handed if v.source_name == "empty.png"} == {"error"}
    with watcher.store.session() as s:
        entries = s.query(OutboxEntry).filter_by(output="recorder").all()
    assert len(entries) == 11 and all(e.delivered_at is not None for e in entries)


def test_a_failing_output_holds_its_verdicts_and_hands_them_on_in_order_when_it_works(watching, caplog):
    caplog.set_level(logging.INFO, logger="inspector.outputs")
    recorder = Recorder(failures=3)
    inbox, db, watcher = watching(recorder)
    for i in range(6):
        write_png(inbox / f"part{i}.png", seed=300 + i)
    wait_for(lambda: len(recorder.handed) == 6 and undelivered(watcher) == 0, 60,
             "6 verdicts handed on after the failures")
    assert recorder.tries >= 4
    assert len(rows(db, "status = 'done'")) == 6  # the daemon kept judging meanwhile
    ids = [v.inspection_id for v in recorder.handed]
    assert len(set(ids)) == 6
    with watcher.store.session() as s:
        order = [e.inspection_id for e in s.query(OutboxEntry).filter_by(output="recorder").order_by(OutboxEntry.id)]
    assert ids == order  # the outbox's order, which is commit order
    warnings = [r.getMessage() for r in caplog.records if "output recorder failed" in r.getMessage()]
    assert len(warnings) == 1, warnings  # one WARNING for the whole outage
    wait_for(lambda: any("output recorder works again" in r.getMessage() for r in caplog.records), 10,
             "the recovery logged")


def test_a_sender_outlives_an_outbox_it_cannot_mark_and_hands_the_verdicts_on_again(watching, monkeypatch,
                                                                                    caplog):
    from inspector.daemon.outputs import Outputs

    mark, broken = Outputs.mark, {"left": 2}

    def flaky_mark(self, *args, **kwargs):
        if broken["left"] > 0:
            broken["left"] -= 1
            raise RuntimeError("database is locked")
        return mark(self, *args, **kwargs)

    monkeypatch.setattr(Outputs, "mark", flaky_mark)
    recorder = Recorder()
    inbox, db, watcher = watching(recorder)
    for i in range(4):
        write_png(inbox / f"part{i}.png", seed=320 + i)
    wait_for(lambda: len(rows(db, "status = 'done'")) == 4 and undelivered(watcher) == 0, 60,
             "4 verdicts marked delivered once the outbox works")
    assert broken["left"] == 0
    ids = [v.inspection_id for v in recorder.handed]
    assert sorted(ids) == [r["id"] for r in rows(db)]  # each once: what was sent is not sent again
    assert any("the outbox: RuntimeError: database is locked" in r.getMessage() for r in caplog.records)


def test_outputs_need_distinct_names(tiny_bundle, tmp_path):
    store = Store(str(tmp_path / "db.sqlite"))
    try:
        with pytest.raises(ValueError, match="distinct names"):
            Watcher(tmp_path, load_bundle(tiny_bundle), store, WatchOptions(out=tmp_path.parent / "out2"),
                    outputs=[Recorder("log")])
    finally:
        store.close()


def test_verdicts_committed_before_a_sigkill_are_handed_on_once_after_the_restart(tiny_bundle, tmp_path, database_url):
    inbox, out, db, record = tmp_path / "inbox", tmp_path / "out", database_url, tmp_path / "record.txt"
    inbox.mkdir()
    log = open(tmp_path / "daemon.log", "wb")

    def daemon(*extra):
        return start_recording_daemon(inbox, tiny_bundle, db, out, record, log, *extra)

    process = daemon("--kill-at-first-delivery")
    try:
        for i in range(6):
            write_png(inbox / f"part{i}.png", seed=400 + i)
        assert process.wait(timeout=120) == -signal.SIGKILL  # killed itself after its first commit
        committed = rows(db, "status != 'pending'")
        assert committed and not record.exists()  # verdicts in the database that no output was handed
        process = daemon()
        for i in range(6, 10):
            write_png(inbox / f"part{i}.png", seed=400 + i)
        wait_for(lambda: len(rows(db, "status != 'pending'")) == 10 and record.exists()
                 and len(record.read_text().splitlines()) >= 10, 120, "10 verdicts recorded")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        reap(process)
        log.close()
    recorded = [int(line.split()[0]) for line in record.read_text().splitlines()]
    assert sorted(recorded) == sorted(r["id"] for r in rows(db)), (tmp_path / "daemon.log").read_text()[-3000:]
    assert len(recorded) == len(set(recorded)) == 10  # exactly once
    assert {r["id"] for r in committed} <= set(recorded)  # those committed before the kill were handed on


# The sender driven directly: verdicts committed as the daemon commits them, handed to `Outputs`
# as the daemon hands them, the interleavings set by the output under test.

def committed(store: Store, claims: Claims, name: str) -> list[Verdict]:
    """Claim and record one verdict as a daemon does (with its outbox entry for the output
    `recorder`); what the daemon then gives its outputs."""
    [claim] = claims.claim([Request(f"/inbox/{name}", f"content of {name}")])
    assert not claims.commit({claim.row_id: dict(status="done", verdict="ok", score=0.1, threshold=0.5,
                                                 scored_at=utcnow())}, ("recorder",))
    with store.session() as s:
        return [Verdict.of_row(s.get(Inspection, claim.row_id), None)]


@pytest.fixture
def sending(database_url):
    """`start(output, **options)`: the outputs of a daemon of station s1 on a fresh database,
    started; returns them with the store and the daemon's claims."""
    started = []

    def start(output, **options):
        store = Store(database_url)
        claims = Claims(store, worker_identity(), "s1")
        outputs = Outputs(store, claims.worker, "s1", [output], **options)
        started.append((outputs, store))
        return outputs, store, claims

    yield start
    for outputs, store in started:
        outputs.close(5)
        store.close()


def undelivered_of(store: Store) -> int:
    with store.session() as s:
        return s.query(OutboxEntry).filter(OutboxEntry.delivered_at.is_(None)).count()


def test_a_verdict_read_from_the_outbox_before_the_daemon_gives_it_is_not_sent_again(sending):
    recorder = Recorder()
    outputs, store, claims = sending(recorder, retry_every=0.2)
    sender = outputs._senders["recorder"]
    first = committed(store, claims, "a.png")  # waiting at start: the sender reads the outbox
    meanwhile: list[Verdict] = []

    def commit_while_the_first_is_sent(verdicts):  # the daemon commits b, and is slow to give it
        if not meanwhile:
            meanwhile.extend(committed(store, claims, "b.png"))

    recorder.during = commit_while_the_first_is_sent
    outputs.start()
    wait_for(lambda: not sender.backlog, 10, "the sender done with the outbox")
    assert [v.source_name for v in recorder.handed] == ["a.png", "b.png"]  # b from the outbox
    outputs.deliver(meanwhile)  # only now does the daemon give b
    last = committed(store, claims, "c.png")
    outputs.deliver(last)
    wait_for(lambda: undelivered_of(store) == 0 and len(recorder.handed) >= 3, 10, "c handed on")
    outputs.close(5)
    ids = [v.inspection_id for v in recorder.handed]
    assert ids == [v.inspection_id for v in first + meanwhile + last], [v.source_name for v in recorder.handed]


def test_entries_of_a_daemon_that_died_on_another_host_are_taken_over_while_the_output_works(sending, monkeypatch):
    peer = "elsewhere:4242:1"
    gone = {peer: False}  # the peer's entries are young: they may not be taken over yet
    real = outputs_module.claim_abandoned
    monkeypatch.setattr(outputs_module, "claim_abandoned",
                        lambda worker, at, timeout: gone[worker] if worker in gone else real(worker, at, timeout))
    recorder = Recorder()
    outputs, store, claims = sending(recorder, retry_every=0.1, takeover_after=60.0)
    sender = outputs._senders["recorder"]
    theirs = committed(store, Claims(store, peer, "s1"), "p.png")  # its daemon dies right after
    outputs.start()
    wait_for(lambda: not sender.backlog, 10, "the sender done with the outbox")
    first = committed(store, claims, "a.png")
    outputs.deliver(first)
    wait_for(lambda: len(recorder.handed) == 1, 10, "a handed on")
    assert [v.inspection_id for v in recorder.handed] == [first[0].inspection_id]  # the peer's wait
    gone[peer] = True  # its claim timeout is over
    wait_for(lambda: len(recorder.handed) == 2, 10, "the peer's verdict taken over and handed on")
    last = committed(store, claims, "b.png")
    outputs.deliver(last)
    wait_for(lambda: undelivered_of(store) == 0 and len(recorder.handed) >= 3, 10, "b handed on")
    outputs.close(5)
    assert [v.inspection_id for v in recorder.handed] == [v.inspection_id for v in first + theirs + last]
    with store.session() as s:
        assert {e.worker for e in s.query(OutboxEntry)} == {claims.worker}


def test_an_outbox_that_cannot_record_a_failed_send_does_not_double_the_back_off(sending, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="inspector.outputs")
    mark = Outputs.mark

    def mark_fails_after_a_failed_send(self, name, ids, delivered, **kwargs):
        if not delivered:
            raise RuntimeError("database is locked")
        return mark(self, name, ids, delivered, **kwargs)

    monkeypatch.setattr(Outputs, "mark", mark_fails_after_a_failed_send)
    recorder = Recorder(failures=1)
    outputs, store, claims = sending(recorder, retry_every=5.0)
    sender = outputs._senders["recorder"]
    committed(store, claims, "a.png")
    outputs.start()
    wait_for(lambda: recorder.tries == 1, 10, "the first try")
    outputs.close(5)  # no second try: the back-off is not over
    assert not sender.thread.is_alive() and recorder.tries == 1
    assert sender.delay == 5.0  # one failure, one step of the back-off
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ConnectionError: the line is down" in warnings[0], warnings


def test_verdicts_sent_while_the_outbox_could_not_record_it_are_not_sent_again(sending, monkeypatch):
    mark, broken = Outputs.mark, {"left": 2}

    def mark_fails_twice(self, *args, **kwargs):
        if broken["left"] > 0:
            broken["left"] -= 1
            raise RuntimeError("database is locked")
        return mark(self, *args, **kwargs)

    monkeypatch.setattr(Outputs, "mark", mark_fails_twice)
    recorder = Recorder()
    outputs, store, claims = sending(recorder, retry_every=0.1)
    first = committed(store, claims, "a.png")
    outputs.start()
    wait_for(lambda: undelivered_of(store) == 0, 10, "a marked delivered once the outbox works")
    last = committed(store, claims, "b.png")
    outputs.deliver(last)
    wait_for(lambda: len(recorder.handed) >= 2 and undelivered_of(store) == 0, 10, "b handed on")
    outputs.close(5)
    assert broken["left"] == 0
    assert [v.inspection_id for v in recorder.handed] == [v.inspection_id for v in first + last]


def test_a_stopping_sender_records_what_it_sent_while_the_outbox_could_not(sending, monkeypatch):
    mark, broken = Outputs.mark, {"left": 1}

    def mark_fails_once(self, *args, **kwargs):
        if broken["left"] > 0:
            broken["left"] -= 1
            raise RuntimeError("database is locked")
        return mark(self, *args, **kwargs)

    monkeypatch.setattr(Outputs, "mark", mark_fails_once)
    recorder = Recorder()
    outputs, store, claims = sending(recorder, retry_every=5.0)
    committed(store, claims, "a.png")
    outputs.start()
    wait_for(lambda: broken["left"] == 0, 10, "a sent, and the outbox failing to record it")
    outputs.close(5)  # within the back-off: the outbox is not read again
    assert len(recorder.handed) == 1 and undelivered_of(store) == 0  # the next start does not send it again
