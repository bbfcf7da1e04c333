"""Defect kinds: QA says what a confirmed defect is (a kind from the station's list, or any other,
or none), and the kinds come back per station as a Pareto table in `stats`, on the summary page,
in `report` and in the JSON."""

import json
import re
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner

from inspector.cli import cli
from inspector.kinds import DEFAULT_KINDS
from inspector.store import Inspection, Store, utcnow

LOCAL = {"Host": "127.0.0.1"}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def add_parts(store, count: int, station: str = "line1", start: datetime | None = None) -> list[int]:
    """`count` flagged parts of `station`, received a minute apart from `start` (now - count minutes)."""
    start = start or utcnow() - timedelta(minutes=count)
    with store.session() as s, s.begin():
        base = s.query(Inspection).count()
        rows = [Inspection(source_path=f"/in/{station}/{i}.png", source_name=f"{i}.png",
                           content_hash=f"{station}{base + i:060d}"[-64:], status="done", verdict="defect", score=0.9,
                           threshold=0.5, station=station, received_at=start + timedelta(minutes=i),
                           scored_at=start + timedelta(minutes=i))
                for i in range(count)]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "db.sqlite"
    store = Store(str(path))
    add_parts(store, 3)
    store.close()
    return path


def test_a_review_keeps_its_kind_stripped_and_only_with_the_label_defect(tmp_path):
    store = Store(str(tmp_path / "db.sqlite"))
    first, second, third = add_parts(store, 3)
    assert store.add_review(first, "defect", kind="  thread  ").kind == "thread"
    assert store.add_review(second, "defect", kind="   ").kind is None  # blank: no kind given
    assert store.add_review(third, "defect").kind is None
    with pytest.raises(ValueError, match="a defect kind \\('dust'\\) goes with the label defect only, not 'ok'"):
        store.add_review(third, "ok", kind="dust")
    with pytest.raises(ValueError, match="at most 100 characters, got 101"):
        store.add_review(third, "defect", kind="x" * 101)
    assert store.add_review(third, "defect", kind="y" * 100).kind == "y" * 100
    assert [r.kind for r in store.get(first).reviews] == ["thread"]
    store.close()


def test_a_station_has_its_own_list_of_kinds_or_the_default(tmp_path):
    store = Store(str(tmp_path / "db.sqlite"))
    assert store.defect_kinds("line1") == list(DEFAULT_KINDS) == store.defect_kinds(None)
    assert store.set_defect_kinds("line1", [" scratch on the head ", "thread", "tip"]) == [
        "scratch on the head", "thread", "tip"]
    assert store.defect_kinds("line1") == ["scratch on the head", "thread", "tip"]
    assert store.defect_kinds("line2") == list(DEFAULT_KINDS)
    with pytest.raises(ValueError, match="kinds named twice: tip"):
        store.set_defect_kinds("line1", ["tip", "thread", "tip"])
    with pytest.raises(ValueError, match="at most 9 kinds .* got 10"):
        store.set_defect_kinds("line1", [f"k{i}" for i in range(10)])
    assert store.defect_kinds("line1") == ["scratch on the head", "thread", "tip"]  # a refused list changes nothing
    store.set_defect_kinds("line1", [])
    assert store.defect_kinds("line1") == list(DEFAULT_KINDS) and store.defect_kinds("line1", default=False) == []
    store.close()


def test_review_kinds_sets_and_shows_a_stations_list(db):
    assert ", ".join(DEFAULT_KINDS) in " ".join(run("review", "kinds", "--help").output.split())  # help names them
    shown = run("review", "kinds", "line1", "--db", db)
    assert shown.exit_code == 0, shown.output
    assert "defect kinds at line1 (the default: the station has no list of its own):" in shown.output
    assert "  1  scratch\n" in shown.output and "  6  other\n" in shown.output
    result = run("review", "kinds", "line1", "scratch on the head", "thread", "tip", "neck", "other", "--db", db)
    assert result.exit_code == 0, result.output
    assert "defect kinds at line1:\n  1  scratch on the head\n  2  thread\n" in result.output
    data = json.loads(run("review", "kinds", "line1", "--db", db, "--json").stdout)
    assert data == {"station": "line1", "kinds": ["scratch on the head", "thread", "tip", "neck", "other"],
                    "default": False}
    twice = run("review", "kinds", "line1", "tip", "tip", "--db", db)
    assert twice.exit_code == 1 and "kinds named twice: tip" in twice.output
    back = json.loads(run("review", "kinds", "line1", "--default", "--db", db, "--json").stdout)
    assert back == {"station": "line1", "kinds": list(DEFAULT_KINDS), "default": True}


def test_review_label_with_a_kind_and_show_and_list_say_it(db):
    labelled = run("review", "label", "2", "defect", "--kind", "thread", "--reviewer", "qa1", "--db", db)
    assert labelled.exit_code == 0, labelled.output
    assert "inspection 2 labelled defect (thread)" in labelled.output
    assert run("review", "label", "3", "defect", "--db", db).exit_code == 0  # no kind: stored as such
    shown = run("review", "show", "2", "--db", db).output
    assert re.search(r"kind +thread\n", shown) and " defect (thread) by qa1: " in shown
    data = json.loads(run("review", "show", "2", "--db", db, "--json").stdout)
    assert data["kind"] == "thread" and data["reviews"][0]["kind"] == "thread"
    assert json.loads(run("review", "show", "3", "--db", db, "--json").stdout)["kind"] is None
    listed = run("review", "list", "--db", db).output.splitlines()
    assert "kind" in listed[0].split()
    assert re.search(r"confirmed +thread +1\.png", listed[2]) and re.search(r"confirmed +- +2\.png", listed[1])
    by_id = {d["id"]: d["kind"] for d in json.loads(run("review", "list", "--db", db, "--json").stdout)}
    assert by_id == {1: None, 2: "thread", 3: None}
    refused = run("review", "label", "1", "ok", "--kind", "thread", "--db", db)
    assert refused.exit_code == 1 and "goes with the label defect only" in refused.output
    assert json.loads(run("review", "show", "1", "--db", db, "--json").stdout)["reviews"] == []


def test_the_report_page_and_its_json_carry_the_kind(db, tmp_path):
    run("review", "label", "2", "defect", "--kind", "scratch on the head", "--db", db)
    run("review", "label", "1", "defect", "--kind", "tip", "--db", db)
    run("review", "label", "1", "ok", "--note", "it was dust", "--db", db)  # the newest review counts
    result = run("report", "--db", db, "--out", tmp_path / "report", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["page"] == str(tmp_path / "report" / "index.html")
    assert {p["id"]: p["kind"] for p in data["parts"]} == {1: None, 2: "scratch on the head", 3: None}
    page = (tmp_path / "report" / "index.html").read_text()
    assert 'confirmed: <span class="kind">scratch on the head</span>' in page
    assert "<li>defect (tip) by" in page and "dismissed</p>" in page


def test_stats_prints_a_pareto_table_of_confirmed_kinds_per_station(database_url):
    store = Store(database_url)
    old = add_parts(store, 2, start=utcnow() - timedelta(days=3))  # before --since
    line1 = add_parts(store, 10)
    line2 = add_parts(store, 2, station="line2")
    for part, kind in zip(line1, ["thread"] * 4 + ["tip"] * 3 + [None] * 2 + ["neck"]):
        store.add_review(part, "defect", kind=kind)
    store.add_review(old[0], "defect", kind="neck")
    store.add_review(old[1], "defect", kind="neck")
    store.add_review(line2[0], "defect", kind="tip")
    store.add_review(line2[1], "defect", kind="thread")
    store.add_review(line2[1], "ok")  # dismissed after all: not a defect
    store.close()
    result = run("stats", "--db", database_url, "--since", "1d")
    assert result.exit_code == 0, result.output
    assert ("line1: defects QA confirmed by kind (10 parts)\n"
            "  kind                             count   share  cumulative\n"
            "  thread                               4     40%         40%\n"
            "  tip                                  3     30%         70%\n"
            "  (no kind)                            2     20%         90%\n"
            "  neck                                 1     10%        100%\n"
            "line2: defects QA confirmed by kind (1 part)\n"
            "  kind                             count   share  cumulative\n"
            "  tip                                  1    100%        100%\n") in result.output
    rows = {r["station"]: r for r in json.loads(run("stats", "--db", database_url, "--since", "1d", "--json").stdout)}
    assert rows["line1"]["kinds"] == [
        {"kind": "thread", "count": 4, "share": 0.4, "cumulative": 0.4},
        {"kind": "tip", "count": 3, "share": 0.3, "cumulative": 0.7},
        {"kind": None, "count": 2, "share": 0.2, "cumulative": 0.9},
        {"kind": "neck", "count": 1, "share": 0.1, "cumulative": 1.0}]
    everything = {r["station"]: r for r in json.loads(run("stats", "--db", database_url, "--json").stdout)}
    assert everything["line1"]["kinds"][0] == {"kind": "thread", "count": 4, "share": 1 / 3, "cumulative": 1 / 3}
    assert {k["kind"]: k["count"] for k in everything["line1"]["kinds"]}["neck"] == 3


@pytest.fixture
def app(tmp_path):
    from inspector.web import create_app

    store = Store(str(tmp_path / "db.sqlite"))
    add_parts(store, 4)
    store.close()
    application = create_app(str(tmp_path / "db.sqlite"), tmp_path)
    yield application
    application.config["STORE"].close()


def token_of(client) -> str:
    page = client.get("/inspections/1", headers=LOCAL).get_data(as_text=True)
    return re.search(r'name="token" value="([^"]+)"', page).group(1)


def test_the_review_form_takes_an_optional_kind(app):
    client, store = app.test_client(), app.config["STORE"]
    token = token_of(client)
    posted = client.post("/inspections/1/review", headers=LOCAL,
                         data={"token": token, "label": "defect", "kind": "thread", "reviewer": "ana"})
    assert posted.status_code == 303
    as_today = client.post("/inspections/2/review", headers=LOCAL, data={"token": token, "label": "defect"})
    assert as_today.status_code == 303
    empty = client.post("/inspections/3/review", headers=LOCAL, data={"token": token, "label": "ok", "kind": ""})
    assert empty.status_code == 303
    refused = client.post("/inspections/4/review", headers=LOCAL, data={"token": token, "label": "ok", "kind": "tip"})
    assert refused.status_code == 400 and "goes with the label defect only" in refused.get_data(as_text=True)
    assert [(r.label, r.kind) for i in (1, 2, 3, 4) for r in store.get(i).reviews] == [
        ("defect", "thread"), ("defect", None), ("ok", None)]


def test_the_summary_shows_a_pareto_chart_and_table_per_station(app):
    client, store = app.test_client(), app.config["STORE"]
    for part, kind in zip((1, 2, 3, 4), ("thread", "thread", "tip", None)):
        store.add_review(part, "defect", kind=kind)
    page = client.get("/summary?days=2", headers=LOCAL).get_data(as_text=True)
    assert "<h2>Defect kinds QA confirmed, last 2 days</h2>" in page and "<h3>line1</h3>" in page
    assert 'src="/summary/kinds.png?days=2&amp;station=line1"' in page
    assert re.sub(r"\s+", " ", page).count("<tr><td>thread</td><td>2</td><td>50%</td><td>50%</td></tr>") == 1
    assert "<tr><td>(no kind)</td><td>1</td><td>25%</td><td>100%</td></tr>" in page
    chart = client.get("/summary/kinds.png?days=2&station=line1", headers=LOCAL)
    assert chart.status_code == 200 and chart.mimetype == "image/png" and chart.data.startswith(b"\x89PNG")
    none = client.get("/summary/kinds.png?station=line9", headers=LOCAL)
    assert none.status_code == 200 and none.data.startswith(b"\x89PNG")
    assert client.get("/summary/kinds.png?station=" + "x" * 201, headers=LOCAL).status_code == 400
    store.add_review(4, "ok")
    assert "(no kind)" not in client.get("/summary", headers=LOCAL).get_data(as_text=True)
    # A kind is anyone's text: matplotlib's "$...$" markup is drawn as it is, not parsed.
    store.add_review(4, "defect", kind=r"$\oops$")
    for query in ("days=2&station=line1", "station=$x^$"):
        drawn = client.get(f"/summary/kinds.png?{query}", headers=LOCAL)
        assert drawn.status_code == 200 and drawn.data.startswith(b"\x89PNG"), query


def test_the_summary_says_when_no_defect_was_confirmed(app):
    page = app.test_client().get("/summary", headers=LOCAL).get_data(as_text=True)
    assert "No defects confirmed by QA." in page
