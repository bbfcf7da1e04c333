"""The QA page against a hostile browser or network, without a browser:
Flask's test client, and `inspector serve` as a process."""

import base64
import re
import subprocess
import sys

import pytest

from inspector.store import Inspection, Store
from inspector.web import create_app
from test_web import seeded  # noqa: F401  (the fixture: a database and --out with eight parts)

LOCAL = {"Host": "127.0.0.1:8765"}


@pytest.fixture
def app(seeded):  # noqa: F811
    db, out = seeded
    application = create_app(str(db), out)
    yield application
    application.config["STORE"].close()


@pytest.fixture
def client(app):
    return app.test_client()


def token_of(client) -> str:
    page = client.get("/inspections/5", headers=LOCAL).get_data(as_text=True)
    return re.search(r'name="token" value="([^"]+)"', page).group(1)


def test_dns_rebinding_a_foreign_host_header_is_refused(client):
    """A request naming another host (Host: evil.example, DNS rebinding) is refused."""
    for path in ("/", "/inspections/5", "/summary"):
        refused = client.get(path, headers={"Host": "evil.example"})
        assert refused.status_code == 400, path
        assert b'name="token"' not in refused.data
    posted = client.post("/inspections/5/review", headers={"Host": "evil.example:8765"},
                         data={"token": token_of(client), "label": "ok"})
    assert posted.status_code == 400
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "localhost"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host


def test_names_given_with_host_are_allowed(seeded):  # noqa: F811
    db, out = seeded
    app = create_app(str(db), out, host="qa-pc.plant.local", allowed_hosts=["qa.plant.local"])
    client = app.test_client()
    for host in ("qa-pc.plant.local:8765", "QA.plant.local", "10.1.2.3:8765"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    app.config["STORE"].close()


def test_posts_from_another_origin_are_refused(client):
    """The Origin (or Referer) of a post must be the page itself."""
    token = token_of(client)
    for header in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/attack.html"},
                   {"Origin": "null"}, {"Origin": "http://127.0.0.1:9999"}):
        response = client.post("/inspections/5/review", headers={**LOCAL, **header}, data={"token": token, "label": "ok"})
        assert response.status_code == 403, header
    ok = client.post("/inspections/5/review", headers={**LOCAL, "Origin": "http://127.0.0.1:8765"},
                     data={"token": token, "label": "defect"})
    assert ok.status_code == 303
    referred = client.post("/inspections/5/review", headers={**LOCAL, "Referer": "http://127.0.0.1:8765/inspections/5"},
                           data={"token": token, "label": "ok"})
    assert referred.status_code == 303


def _reject(db, out, name: str, content: bytes) -> int:
    path = out / "rejected" / "2026-11-23" / f"99_{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    store = Store(str(db))
    with store.session() as s, s.begin():
        row = Inspection(source_path=f"/inbox/{name}", source_name=name, content_hash=name.ljust(64, "z"),
                         status="error", verdict="error", error_reason="not a readable image", stored_path=str(path))
        s.add(row)
        s.flush()
        row_id = row.id
    store.close()
    return row_id


@pytest.mark.parametrize("name, content", [
    ("x.html", b"<script>alert(document.cookie)</script>"),
    ("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
    ("x.js", b"alert(1)"),
    ("fake.png", b"<html><script>alert(1)</script></html>"),
])
def test_a_dropped_script_is_never_served_inline(seeded, client, name, content):  # noqa: F811
    """A .js, .html or .svg dropped into the inbox lands in rejected/ and is never served
    from /files/ as script or HTML."""
    db, out = seeded
    row_id = _reject(db, out, name, content)
    assert client.get(f"/files/rejected/2026-11-23/99_{name}", headers=LOCAL).status_code == 404
    response = client.get(f"/inspections/{row_id}/picture/input", headers=LOCAL)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert response.mimetype == "application/octet-stream"
    assert "sandbox" in response.headers["Content-Security-Policy"]


def test_pictures_the_database_points_to_are_served_as_images(client):
    for kind in ("input", "heatmap", "overlay"):
        response = client.get(f"/inspections/5/picture/{kind}", headers=LOCAL)
        assert response.status_code == 200 and response.mimetype == "image/png", kind
        assert "attachment" not in response.headers.get("Content-Disposition", "")
    assert client.get("/inspections/5/picture/database", headers=LOCAL).status_code == 404
    assert client.get("/files/heatmaps/2026-11-23/5_heatmap.png", headers=LOCAL).status_code == 404


def test_a_database_row_pointing_outside_out_is_not_served(seeded, client):  # noqa: F811
    db, out = seeded
    store = Store(str(db))
    with store.session() as s, s.begin():
        s.get(Inspection, 2).heatmap_path = "/etc/passwd"
    store.close()
    response = client.get("/inspections/2/picture/heatmap", headers=LOCAL)
    assert response.status_code == 404 and b"root:" not in response.data


def test_the_page_cannot_be_framed(client):
    """Clickjacking: the page refuses to be framed."""
    for path in ("/", "/inspections/5", "/summary"):
        response = client.get(path, headers=LOCAL)
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path, status", [
    ("/?since=99999999999d", 400),
    ("/?since=99999999999999999999999h", 400),
    ("/summary?days=99999999999", 400),
    ("/summary?days=0", 400),
    ("/summary/histogram.png?days=99999999999", 400),
    ("/summary/scores.png?days=0", 400),
    ("/inspections/" + "9" * 23, 404),
    ("/inspections/" + "9" * 23 + "/picture/input", 404),
    ("/files/%00", 404),
    ("/inspections/5/picture/%00", 404),
])
def test_absurd_parameters_are_400_or_404_never_500(client, path, status):
    """Absurd parameters are a 400 or a 404, never a 500."""
    assert client.get(path, headers=LOCAL).status_code == status


def test_a_review_post_for_an_absurd_id_is_404(client):
    response = client.post(f"/inspections/{'9' * 23}/review", headers=LOCAL,
                           data={"token": token_of(client), "label": "ok"})
    assert response.status_code == 404


def test_a_password_protects_every_page(seeded):  # noqa: F811
    """A shared secret for the page on the network (HTTP basic auth)."""
    db, out = seeded
    app = create_app(str(db), out, password="s3cret")
    client = app.test_client()
    refused = client.get("/", headers=LOCAL)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    for credentials in ("qa:wrong", "qa:"):
        auth = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
        assert client.get("/", headers={**LOCAL, **auth}).status_code == 401
    auth = {"Authorization": "Basic " + base64.b64encode(b"anyone:s3cret").decode()}
    assert client.get("/", headers={**LOCAL, **auth}).status_code == 200
    assert client.get("/inspections/5/picture/overlay", headers={**LOCAL, **auth}).status_code == 200
    assert client.get("/inspections/5/picture/overlay", headers=LOCAL).status_code == 401
    app.config["STORE"].close()


def _banner(*args, env=None) -> str:
    """What `inspector serve` prints before it serves (its first stderr lines)."""
    import os

    process = subprocess.Popen([sys.executable, "-m", "inspector.cli", "serve", *args, "--port", "0"],
                               stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    try:
        lines = []
        while not lines or "QA page on" not in lines[-1]:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
        return "".join(lines)
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()


def test_serving_on_the_network_warns_and_offers_a_password(seeded):  # noqa: F811
    """--host 0.0.0.0 warns that the page is reachable from the network, unless a password is set."""
    db, out = seeded
    common = ["--db", str(db), "--out", str(out)]
    open_page = _banner(*common, "--host", "0.0.0.0")
    assert "warning" in open_page.lower() and "anyone who can reach" in open_page
    assert "--password" in open_page and "INSPECTOR_SERVE_PASSWORD" in open_page
    protected = _banner(*common, "--host", "0.0.0.0", env={"INSPECTOR_SERVE_PASSWORD": "s3cret"})
    assert "password" in protected and "anyone who can reach" not in protected
    local = _banner(*common)
    assert "warning" not in local.lower() and "http://127.0.0.1:" in local


def test_wrong_passwords_make_a_client_wait_longer_and_longer(seeded):  # noqa: F811
    from inspector.web import security

    db, out = seeded
    app = create_app(str(db), out, password="s3cret")
    now = [1000.0]
    app.config["FAILED_LOGINS"].clock = lambda: now[0]
    client = app.test_client()

    def get(password, addr="10.0.0.7"):
        auth = {"Authorization": "Basic " + base64.b64encode(f"qa:{password}".encode()).decode()}
        return client.get("/", headers={**LOCAL, **auth}, environ_base={"REMOTE_ADDR": addr})

    assert [get("guess").status_code for _ in range(security.FREE_FAILURES)] == [401] * security.FREE_FAILURES
    waiting = get("s3cret")  # even the right password waits: a guess is not even looked at
    assert waiting.status_code == 429 and waiting.headers["Retry-After"] == "1"
    assert get("s3cret", addr="10.0.0.8").status_code == 200  # another client is not slowed
    waits = []
    for _ in range(8):
        now[0] += 61
        assert get("guess").status_code == 401
        waits.append(int(get("guess").headers["Retry-After"]))
    assert waits == [2, 4, 8, 16, 32, 60, 60, 60]
    now[0] += 61
    assert get("s3cret").status_code == 200  # the right password clears the record
    assert get("guess").status_code == 401 and get("guess").status_code == 401
    app.config["STORE"].close()


def test_a_note_cut_to_the_limit_is_said_to_the_reviewer(client, app):
    from inspector.web.parts import NOTE_LIMIT

    posted = client.post("/inspections/5/review", headers=LOCAL,
                         data={"token": token_of(client), "label": "ok", "reviewer": "qa", "note": "n" * 10_000})
    assert posted.status_code == 303 and "cut=10000" in posted.headers["Location"]
    page = client.get(posted.headers["Location"], headers=LOCAL).get_data(as_text=True)
    assert f"Your note had 10,000 characters; only its first {NOTE_LIMIT:,} were kept." in page
    assert len(app.config["STORE"].get(5).reviews[-1].note) == NOTE_LIMIT
    plain = client.get("/inspections/5?cut=12", headers=LOCAL).get_data(as_text=True)
    assert "Your note had" not in plain  # no notice for a note that was not cut


def test_the_list_is_paged_and_filtered_in_the_database(client, app, monkeypatch):
    from inspector.web import parts

    monkeypatch.setattr(parts, "LIST_LIMIT", 3)
    ids = lambda html: [int(i) for i in re.findall(r'data-id="(\d+)"', html)]  # noqa: E731
    pages = [client.get(f"/?page={n}", headers=LOCAL).get_data(as_text=True) for n in (1, 2, 3)]
    assert [len(ids(p)) for p in pages] == [3, 3, 2]
    assert sorted(sum((ids(p) for p in pages), [])) == list(range(1, 9))
    assert 'id="next-page"' in pages[0] and 'id="next-page"' not in pages[2] and 'id="previous-page"' in pages[2]
    store = app.config["STORE"]
    for row_id, labels in ((1, ["defect"]), (2, ["defect", "ok"]), (3, ["ok"]), (4, ["ok", "defect"])):
        for label in labels:
            store.add_review(row_id, label, reviewer="qa")
    dismissed = client.get("/?review=dismissed", headers=LOCAL).get_data(as_text=True)
    confirmed = client.get("/?review=confirmed", headers=LOCAL).get_data(as_text=True)
    from inspector.review import review_state

    states = {r.id: review_state(r) for r in store.inspections()}  # the newest review counts
    assert {2, 3} <= set(ids(dismissed)) and {1, 4} <= set(ids(confirmed))
    assert sorted(ids(dismissed)) == sorted(i for i, s in states.items() if s == "dismissed")
    assert sorted(ids(confirmed)) == sorted(i for i, s in states.items() if s == "confirmed")
    assert client.get("/?page=0", headers=LOCAL).status_code == 400
    assert client.get("/?page=x", headers=LOCAL).status_code == 400
