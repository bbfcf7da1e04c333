"""The exactly-once protocol on its own: claim, commit by the owner only, take over, recover.

Plain calls on a store, on SQLite and PostgreSQL; no daemon, threads or files.
"""

import os
import socket
from datetime import timedelta

import pytest

from inspector.daemon.claims import (
    BUSY, CLAIMED, DUPLICATE, ALREADY_JUDGED, IN_HAND, Claims, Request, claim_abandoned, worker_identity,
)
from inspector.store import Inspection, Store, utcnow

ME = worker_identity()
DEAD_HERE = f"{socket.gethostname()}:999999999:1"  # no such process on this host
ELSEWHERE = "other-host:123:456"


@pytest.fixture
def store(database_url):
    s = Store(database_url)
    yield s
    s.close()


def row(store, row_id):
    with store.session() as s:
        return s.get(Inspection, row_id)


def pending(store, path, content, worker, claimed_seconds_ago=0.0):
    """A claim left by another worker."""
    with store.session() as s, s.begin():
        r = Inspection(source_path=path, source_name=os.path.basename(path), content_hash=content, status="pending",
                       received_at=utcnow(), worker=worker, station="old",
                       claimed_at=utcnow() - timedelta(seconds=claimed_seconds_ago))
        s.add(r)
        s.flush()
        return r.id


def test_claims_of_dead_workers_are_abandoned():
    assert not claim_abandoned(ME, utcnow(), 60)
    host = socket.gethostname()
    assert claim_abandoned(f"{host}:{os.getpid()}:not-my-start-time", utcnow(), 60)  # pid reused
    assert claim_abandoned(DEAD_HERE, utcnow(), 60)
    assert not claim_abandoned("other-host:1:1", utcnow(), 60)
    assert claim_abandoned("other-host:1:1", utcnow() - timedelta(seconds=61), 60)
    assert claim_abandoned(None, None, 60)


def test_new_content_is_claimed_once_per_batch(store):
    claims = Claims(store, worker=ME, station="line1")
    answers = claims.claim([Request("/in/a.png", "a" * 64, 10), Request("/in/b.png", "b" * 64, 20),
                            Request("/in/a copy.png", "a" * 64, 10)])
    assert [a.state for a in answers] == [CLAIMED, CLAIMED, DUPLICATE]
    assert answers[2].row_id == answers[0].row_id and answers[2].first_name == "a.png"
    first = row(store, answers[0].row_id)
    assert (first.status, first.worker, first.station, first.source_name, first.size_bytes) == (
        "pending", ME, "line1", "a.png", 10)
    # While the batch that claimed it is not finished, the same content again is in hand, under any
    # name (a file renamed meanwhile is told from a copy once that batch is finished).
    assert claims.claim([Request("/in/a.png", "a" * 64, 10)])[0].state == IN_HAND
    assert claims.claim([Request("/in/a again.png", "a" * 64, 10)])[0].state == IN_HAND
    # Our own claim from a batch that failed (and let its claims go) is ours again.
    claims.release([answers[0].row_id, answers[1].row_id])
    assert claims.claim([Request("/in/a.png", "a" * 64, 10)])[0].state == CLAIMED


def test_a_live_workers_claim_is_left_to_it(store):
    row_id = pending(store, "/in/a.png", "a" * 64, ELSEWHERE)
    claims = Claims(store, worker=ME, timeout=60)
    assert claims.claim([Request("/in/a.png", "a" * 64)])[0].state == BUSY
    assert claims.claim([Request("/in/other name.png", "a" * 64)])[0].state == DUPLICATE
    assert row(store, row_id).worker == ELSEWHERE


@pytest.mark.parametrize("worker, age", [(DEAD_HERE, 0.0), (ELSEWHERE, 120.0), (None, 0.0)])
def test_an_abandoned_claim_is_taken_over(store, worker, age):
    row_id = pending(store, "/old inbox/a.png", "a" * 64, worker, claimed_seconds_ago=age)
    [answer] = Claims(store, worker=ME, station="new", timeout=60).claim([Request("/in/a.png", "a" * 64)])
    assert (answer.state, answer.row_id) == (CLAIMED, row_id)
    taken = row(store, row_id)
    assert (taken.worker, taken.station, taken.source_path, taken.source_name) == (ME, "new", "/in/a.png", "a.png")


def test_only_the_owner_records_the_verdict(store):
    mine = Claims(store, worker=ME)
    [answer] = mine.claim([Request("/in/a.png", "a" * 64)])
    verdict = {answer.row_id: {"status": "done", "verdict": "ok", "score": 0.1}}
    assert Claims(store, worker=ELSEWHERE).commit(verdict) == {answer.row_id}
    assert row(store, answer.row_id).status == "pending"
    assert mine.commit(verdict) == set()
    done = row(store, answer.row_id)
    assert (done.status, done.verdict, done.score) == ("done", "ok", 0.1)
    assert mine.commit(verdict) == {answer.row_id}  # recorded once: not pending any more


def test_a_claim_taken_over_meanwhile_loses_its_verdict(store):
    slow = Claims(store, worker=DEAD_HERE)  # a worker that stalled and is thought dead
    [answer] = slow.claim([Request("/in/a.png", "a" * 64)])
    assert Claims(store, worker=ME).claim([Request("/in/a.png", "a" * 64)])[0].state == CLAIMED
    assert slow.commit({answer.row_id: {"status": "done", "verdict": "defect"}}) == {answer.row_id}
    assert row(store, answer.row_id).worker == ME and row(store, answer.row_id).status == "pending"


def test_judged_content_is_finished_or_a_duplicate(store):
    claims = Claims(store, worker=ME)
    [answer] = claims.claim([Request("/in/a.png", "a" * 64)])
    claims.commit({answer.row_id: {"status": "error", "verdict": "error", "stored_path": "/out/rejected/a.png"}})
    [again, copy] = claims.claim([Request("/in/a.png", "a" * 64), Request("/in/b.png", "a" * 64)])
    assert (again.state, again.status, again.stored_path) == (ALREADY_JUDGED, "error", "/out/rejected/a.png")
    assert (copy.state, copy.status, copy.row_id) == (DUPLICATE, "error", answer.row_id)


def test_recover_closes_only_abandoned_claims_whose_file_is_gone(store):
    gone = pending(store, "/in/gone.png", "g" * 64, DEAD_HERE)
    still_there = pending(store, "/in/here.png", "h" * 64, DEAD_HERE)
    alive = pending(store, "/in/theirs.png", "t" * 64, ELSEWHERE)
    old_other_host = pending(store, "/in/old.png", "o" * 64, ELSEWHERE, claimed_seconds_ago=120)
    claims = Claims(store, worker=ME, timeout=60)
    assert claims.recover(exists=lambda path: path == "/in/here.png") == (4, 2)
    for row_id in (gone, old_other_host):
        closed = row(store, row_id)
        assert (closed.status, closed.verdict) == ("error", "error") and "disappeared" in closed.error_reason
        assert closed.scored_at is not None
    assert row(store, still_there).status == "pending"  # the scan of the inbox takes it
    assert row(store, alive).status == "pending"  # its worker may still move it
    assert claims.recover(exists=lambda path: False) == (2, 1)  # the live one stays pending


def test_a_name_that_is_not_utf8_is_claimed_stored_losslessly_and_finished(store):
    """On every backend, though the drivers cannot encode lone surrogates."""
    from inspector.names import text_to_path

    path = os.fsdecode(b"/in/bad\xff\xfe.png")
    claims = Claims(store, worker=ME)
    [answer] = claims.claim([Request(path, "b" * 64)])
    assert answer.state == CLAIMED and claims.claim([Request(path, "b" * 64)])[0].state == IN_HAND
    r = row(store, answer.row_id)
    assert text_to_path(r.source_path) == path and r.source_name == "bad\\xff\\xfe.png"
    assert claims.commit({answer.row_id: {"status": "done", "verdict": "ok"}}) == set()
    assert claims.claim([Request(path, "b" * 64)])[0].state == ALREADY_JUDGED
    assert claims.recover(exists=lambda p: p == path) == (0, 0)


def test_one_commit_records_verdicts_and_errors_of_a_batch_and_reports_only_the_rows_lost(store):
    mine = Claims(store, worker=ME)
    a, b, c = mine.claim([Request(f"/in/{n}.png", n * 64) for n in "abc"])
    assert mine.commit({c.row_id: {"status": "done", "verdict": "ok", "score": 0.3}}) == set()
    lost = mine.commit({a.row_id: {"status": "done", "verdict": "defect", "score": 2.5},
                        b.row_id: {"status": "error", "verdict": "error", "error_reason": "not an image"},
                        c.row_id: {"status": "done", "verdict": "defect", "score": 9.0}})
    assert lost == {c.row_id}  # recorded already: its first verdict stands
    assert (row(store, a.row_id).status, row(store, a.row_id).score) == ("done", 2.5)
    assert (row(store, b.row_id).status, row(store, b.row_id).error_reason) == ("error", "not an image")
    assert (row(store, c.row_id).verdict, row(store, c.row_id).score) == ("ok", 0.3)


def test_claims_in_hand_refreshed_are_not_taken_over_by_another_host(store):
    from sqlalchemy import update

    mine = Claims(store, worker="station-2:77:88", timeout=60)  # as the other host sees it
    [answer] = mine.claim([Request("/in/a.png", "a" * 64)])

    def age(seconds):
        with store.session() as s, s.begin():
            s.execute(update(Inspection).where(Inspection.id == answer.row_id)
                      .values(claimed_at=utcnow() - timedelta(seconds=seconds)))

    age(120)  # the batch waited two minutes behind one judged file by file
    mine.refresh()
    other = Claims(store, worker=ELSEWHERE, timeout=60)
    assert other.claim([Request("/in/a.png", "a" * 64)])[0].state == BUSY
    mine.release([answer.row_id])  # its batch failed; the file is claimed again alone, later
    age(120)
    assert mine.claim([Request("/in/a.png", "a" * 64)])[0].state == CLAIMED  # and dated anew
    assert other.claim([Request("/in/a.png", "a" * 64)])[0].state == BUSY
    age(120)  # not refreshed: abandoned, taken over
    assert other.claim([Request("/in/a.png", "a" * 64)])[0].state == CLAIMED
    assert row(store, answer.row_id).worker == ELSEWHERE
