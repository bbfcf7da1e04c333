"""Verdicts reach the line: MQTT against a real Mosquitto broker, and a webhook against a local
server; every committed verdict arrives, each id once after dedupe, in commit order, also when
the broker or the server was away for a while."""

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from helpers import wait_for, write_png
from inspector.cli import cli
from inspector.line.mqtt import BrokerAddress, MqttOutput
from inspector.line.payload import SCHEMA_FILE
from inspector.line.webhook import WebhookOutput
from test_outputs import rows, watching  # noqa: F401

SCHEMA = json.loads(SCHEMA_FILE.read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A Mosquitto of the test's own on 127.0.0.1 (persistence on), stoppable and startable."""

    def __init__(self, folder: Path, password: str | None = None):
        self.folder, self.port = folder, free_port()
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {folder}/"]
        if os.getuid() == 0:  # else mosquitto drops to its own user, who cannot read the test's folder
            lines.append("user root")
        if password is None:
            lines.append("allow_anonymous true")
        else:
            pw = folder / "passwords"
            pw.write_text("")
            subprocess.run(["mosquitto_passwd", "-b", str(pw), "line", password], check=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        (folder / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(["mosquitto", "-c", str(self.folder / "mosquitto.conf")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._listening, 10, "mosquitto listening")

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def broker(tmp_path):
    if shutil.which("mosquitto") is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is missing in CI (.ci/run installs the Debian package)")
        pytest.skip("no mosquitto broker here (Debian package mosquitto; .ci/run installs it)")
    folder = tmp_path / "broker"
    folder.mkdir()
    started = []

    def start(password=None):
        b = Broker(folder, password)
        started.append(b)
        return b

    yield start
    for b in started:
        if b.process.poll() is None:
            b.stop()


class Subscriber:
    """What a consumer on the line receives (paho, QoS 1)."""

    def __init__(self, port: int, topic: str, client_id: str = "line-consumer"):
        import paho.mqtt.client as mqtt

        self.messages: list[dict] = []
        self.retained: dict[str, bytes] = {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe([(topic, 1), ("inspector/+/status", 1),
                                                            ("inspector/+/last", 1)])
        self.subscribed = threading.Event()
        self.refused: list = []
        self.client.on_subscribe = self._on_subscribe
        # paho's default waits up to 120 s between tries: a restarted broker would be found long after the test's wait
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.topic = topic
        # A broker stopped before it acknowledged the subscription keeps a session without it, and what the
        # daemon publishes after the restart would never reach this consumer.
        if not self.subscribed.wait(10) or self.refused:
            self.close()
            raise AssertionError("the consumer's subscription was not acknowledged within 10 s"
                                 if not self.refused else f"the broker refused the subscription: {self.refused}")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        # SUBACK carries a code per topic: a refused one (0x80 and up) is not a subscription.
        self.refused = [code for code in reason_codes if code.is_failure]
        self.subscribed.set()

    def _on_message(self, client, userdata, message):
        if message.topic == self.topic:
            self.messages.append(json.loads(message.payload))
        else:
            self.retained[message.topic] = message.payload

    def ids(self) -> list[int]:
        """Each id once, in the order first received (what a consumer deduping by id keeps)."""
        return list(dict.fromkeys(m["id"] for m in self.messages))

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_every_verdict_reaches_the_broker_once_in_commit_order_and_survives_the_broker_going_away(
        broker, watching, tmp_path):  # noqa: F811
    mosquitto = broker()
    consumer = Subscriber(mosquitto.port, "inspector/line1/verdict")
    output = MqttOutput(BrokerAddress.parse(f"mqtt://127.0.0.1:{mosquitto.port}"), "line1", tmp_path / "out")
    try:
        inbox, db, watcher = watching(output, station="line1")
        wait_for(lambda: consumer.retained.get("inspector/line1/status") == b"online", 10, "status online")
        for i in range(20):
            write_png(inbox / f"a{i:03d}.png", seed=400 + i)
        (inbox / "empty.png").write_bytes(b"")
        wait_for(lambda: len(consumer.ids()) == 21, 60, "21 verdicts received")
        mosquitto.stop()  # the line's broker goes away: the daemon goes on judging
        for i in range(20):
            write_png(inbox / f"b{i:03d}.png", seed=500 + i)
        wait_for(lambda: len(rows(db, "status != 'pending'")) == 41, 60, "41 judged without the broker")
        assert len(consumer.ids()) == 21
        wait_for(lambda: outbox_waiting(db) == 20, 10, "20 verdicts waiting in the outbox")
        stats = CliRunner().invoke(cli, ["stats", "--db", db, "--json"])
        assert stats.exit_code == 0, stats.output
        [waiting] = json.loads(stats.output)[0]["outbox"]
        assert (waiting["output"], waiting["waiting"]) == ("mqtt", 20) and waiting["oldest"]
        doctor = CliRunner().invoke(cli, ["doctor", "--db", db, "--json", "--station", "line1",
                                          "--mqtt", f"mqtt://127.0.0.1:{mosquitto.port}"])
        checks = {c["name"]: c for c in json.loads(doctor.output)["checks"]}
        assert checks["outbox"]["status"] == "WARN" and "line1 -> mqtt: 20 waiting" in checks["outbox"]["detail"]
        assert checks["mqtt"]["status"] == "FAIL" and "cannot connect" in checks["mqtt"]["detail"]
        mosquitto.start()
        wait_for(lambda: len(consumer.ids()) == 41, 90, "41 verdicts received after the broker came back")
        committed = rows(db)
        assert consumer.ids() == [r["id"] for r in committed]  # commit order
        by_id = {m["id"]: m for m in consumer.messages}
        for row in committed:
            message = by_id[row["id"]]
            jsonschema.validate(message, SCHEMA)
            assert (message["verdict"], message["source_name"], message["score"]) == \
                (row["verdict"], row["source_name"], row["score"])
        assert by_id[committed[20]["id"]]["verdict"] == "error" and by_id[committed[20]["id"]]["error"]
        last = json.loads(consumer.retained["inspector/line1/last"])
        assert last["id"] == committed[-1]["id"]
    finally:
        consumer.close()


def outbox_waiting(db: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")).scalar()
    finally:
        engine.dispose()


def test_the_settings_file_names_the_broker_in_an_outputs_table(broker, tmp_path):
    mosquitto = broker(password="right")
    (tmp_path / "pw").write_text("right\n")
    config = tmp_path / "watch.toml"
    config.write_text(f'station = "line4"\n[outputs.mqtt]\nurl = "mqtt://line@127.0.0.1:{mosquitto.port}"\n'
                      f'password-file = "{tmp_path / "pw"}"\n')
    result = CliRunner().invoke(cli, ["doctor", "--config", str(config), "--db", str(tmp_path / "db.sqlite"), "--json"])
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert checks["mqtt"]["status"] == "OK", checks["mqtt"]
    (tmp_path / "pw").write_text("wrong\n")
    result = CliRunner().invoke(cli, ["doctor", "--config", str(config), "--db", str(tmp_path / "db.sqlite"), "--json"])
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert checks["mqtt"]["status"] == "FAIL" and "refused" in checks["mqtt"]["detail"]
    assert "wrong" not in result.output and result.exit_code == 1


def test_the_status_topic_says_offline_when_the_daemon_dies(broker, tmp_path):
    mosquitto = broker()
    consumer = Subscriber(mosquitto.port, "inspector/line2/verdict")
    code = (f"from inspector.line.mqtt import BrokerAddress, MqttOutput; import time;"
            f"MqttOutput(BrokerAddress.parse('mqtt://127.0.0.1:{mosquitto.port}'), 'line2', '.'); time.sleep(60)")
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_for(lambda: consumer.retained.get("inspector/line2/status") == b"online", 20, "status online")
        process.kill()  # no goodbye: the broker publishes the last will
        process.wait(10)
        wait_for(lambda: consumer.retained.get("inspector/line2/status") == b"offline", 90, "status offline")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        consumer.close()


def test_a_wrong_mqtt_password_is_one_clear_line_and_exit_code_1(broker, tiny_bundle, tmp_path, monkeypatch):
    mosquitto = broker(password="right")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("INSPECTOR_MQTT_PASSWORD", "wrong-secret")
    result = CliRunner().invoke(cli, ["watch", str(inbox), "--model", str(tiny_bundle), "--db",
                                       str(tmp_path / "db.sqlite"), "--out", str(tmp_path / "out"),
                                       "--mqtt", f"mqtt://line@127.0.0.1:{mosquitto.port}", "--exit-when-idle", "1"])
    assert result.exit_code == 1, result.output
    assert "refused the connection" in result.output and "Traceback" not in result.output
    assert "wrong-secret" not in result.output


class FlakyEndpoint(http.server.BaseHTTPRequestHandler):
    answers: list[int] = []
    received: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status = self.answers.pop(0) if self.answers else 200
        if status == 200:
            self.received.append(body)
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    """A local webhook server (`FlakyEndpoint`) for the test; yields its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyEndpoint)
    thread = threading.Thread(target=server.serve_forever, name="webhook-endpoint")
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_webhook_gets_every_verdict_in_order_after_failing_its_first_answers(watching, endpoint,  # noqa: F811
                                                                                  tmp_path):
    FlakyEndpoint.answers, FlakyEndpoint.received = [500, 503, 500], []
    output = WebhookOutput(f"http://127.0.0.1:{endpoint}/verdicts", tmp_path / "out", timeout=2)
    inbox, db, watcher = watching(output, station="line3")
    for i in range(8):
        write_png(inbox / f"w{i}.png", seed=600 + i)
    wait_for(lambda: len(FlakyEndpoint.received) >= 8, 60, "8 verdicts posted")
    ids = list(dict.fromkeys(m["id"] for m in FlakyEndpoint.received))
    assert ids == [r["id"] for r in rows(db)]
    for message in FlakyEndpoint.received:
        jsonschema.validate(message, SCHEMA)


def test_a_verdict_sent_after_the_deadline_says_late_and_is_counted(watching, endpoint, tmp_path,  # noqa: F811
                                                                     caplog):
    FlakyEndpoint.answers, FlakyEndpoint.received = [], []
    # 1 ms from a complete file to the message: no verdict can make it
    late = WebhookOutput(f"http://127.0.0.1:{endpoint}/", tmp_path / "out", deadline_ms=1)
    inbox, db, watcher = watching(late, station="line5")
    for i in range(3):
        write_png(inbox / f"l{i}.png", seed=700 + i)
    wait_for(lambda: len(FlakyEndpoint.received) == 3 and outbox_waiting(db) == 0, 60, "3 verdicts posted")
    assert all(m["late"] for m in FlakyEndpoint.received)
    assert sum("the reject gate has passed" in r.getMessage() for r in caplog.records) == 3
    stats = CliRunner().invoke(cli, ["stats", "--db", db])
    assert "line5: 3 verdicts delivered to webhook after the line's deadline" in stats.output, stats.output
    [entry] = json.loads(CliRunner().invoke(cli, ["stats", "--db", db, "--json"]).output)[0]["outbox"]
    assert (entry["waiting"], entry["late"]) == (0, 3)


def test_verdicts_committed_while_the_broker_was_away_reach_it_after_a_sigkill_and_a_restart(broker, tiny_bundle,
                                                                                             tmp_path):
    mosquitto = broker()
    mosquitto.stop()  # the broker is away while the parts are judged
    inbox, out, db = tmp_path / "inbox", tmp_path / "out", f"sqlite:///{tmp_path / 'db.sqlite'}"
    inbox.mkdir()
    for i in range(5):
        write_png(inbox / f"k{i}.png", seed=800 + i)
    command = [sys.executable, "-m", "inspector.cli", "watch", str(inbox), "--model", str(tiny_bundle), "--db", db,
               "--out", str(out), "--station", "line6", "--mqtt", f"mqtt://127.0.0.1:{mosquitto.port}"]
    daemon = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(rows(db, "status = 'done'")) == 5, 60, "5 verdicts committed")
        assert outbox_waiting(db) == 5
    finally:
        daemon.kill()  # SIGKILL: no goodbye, nothing delivered
        daemon.wait(10)
    mosquitto.start()
    consumer = Subscriber(mosquitto.port, "inspector/line6/verdict")
    try:
        subprocess.run(command + ["--exit-when-idle", "2"], check=True, stderr=subprocess.DEVNULL, timeout=120)
        wait_for(lambda: len(consumer.ids()) == 5, 20, "5 verdicts received after the restart")
        assert consumer.ids() == [r["id"] for r in rows(db)]
        wait_for(lambda: outbox_waiting(db) == 0, 30, "the outbox marked delivered")
    finally:
        consumer.close()


@pytest.mark.slow
def test_two_hundred_parts_reach_the_line_once_each_in_order_across_a_30_s_broker_outage(broker, tiny_bundle,
                                                                                        tmp_path):
    mosquitto = broker()
    consumer = Subscriber(mosquitto.port, "inspector/line11/verdict")
    inbox, out, db = tmp_path / "inbox", tmp_path / "out", f"sqlite:///{tmp_path / 'db.sqlite'}"
    inbox.mkdir()
    log = open(tmp_path / "daemon.log", "wb")
    daemon = subprocess.Popen([sys.executable, "-m", "inspector.cli", "watch", str(inbox), "--model",
                               str(tiny_bundle), "--db", db, "--out", str(out), "--station", "line11",
                               "--mqtt", f"mqtt://127.0.0.1:{mosquitto.port}"], stderr=log)
    try:
        wait_for(lambda: consumer.retained.get("inspector/line11/status") == b"online", 60, "status online")
        for i in range(100):
            write_png(inbox / f"p{i:03d}.png", seed=1000 + i)
        wait_for(lambda: len(consumer.ids()) == 100, 120, "100 verdicts received")
        mosquitto.stop()
        away = time.monotonic()
        for i in range(100, 200):
            write_png(inbox / f"p{i:03d}.png", seed=1000 + i)
        wait_for(lambda: len(rows(db, "status = 'done'")) == 200, 120, "200 judged while the broker is away")
        time.sleep(max(0.0, 30 - (time.monotonic() - away)))
        assert len(consumer.ids()) == 100 and outbox_waiting(db) == 100
        mosquitto.start()
        wait_for(lambda: len(consumer.ids()) == 200, 120, "200 verdicts received after the outage")
        assert consumer.ids() == [r["id"] for r in rows(db)]  # each id once, in commit order
        wait_for(lambda: outbox_waiting(db) == 0, 30, "the outbox marked delivered (after the PUBACKs)")
        daemon.terminate()
        assert daemon.wait(60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        consumer.close()
    warnings = [line for line in (tmp_path / "daemon.log").read_text().splitlines() if "WARNING" in line]
    assert len([line for line in warnings if "mqtt" in line.lower()]) == 1, warnings  # one, not one per retry


def test_stations_sharing_a_database_each_deliver_their_own_verdicts(broker, tiny_bundle, tmp_path):
    mosquitto = broker()
    consumers = {station: Subscriber(mosquitto.port, f"inspector/{station}/verdict", f"consumer-{station}")
                 for station in ("east", "west")}  # subscribed before: the broker keeps their sessions
    mosquitto.stop()  # both stations judge while the broker is away: their outboxes fill
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    daemons, logs = {}, {}
    for station in ("east", "west"):
        inbox = tmp_path / station / "inbox"
        inbox.mkdir(parents=True)
        for i in range(4):
            write_png(inbox / f"{station}{i}.png", seed=(1300 if station == "east" else 1400) + i)
        logs[station] = open(tmp_path / f"{station}.log", "wb")
        daemons[station] = subprocess.Popen(
            [sys.executable, "-m", "inspector.cli", "watch", "-v", str(inbox), "--model", str(tiny_bundle), "--db", db,
             "--out", str(tmp_path / station / "out"), "--station", station,
             "--mqtt", f"mqtt://127.0.0.1:{mosquitto.port}"], stderr=logs[station])
    try:
        wait_for(lambda: len(rows(db, "status = 'done'")) == 8, 90, "both stations' parts judged")
        assert outbox_waiting(db) == 8
        mosquitto.start()
        try:
            wait_for(lambda: all(len(c.ids()) == 4 for c in consumers.values()), 90,
                     "4 verdicts on each station's topic")
        except AssertionError as exc:
            told = {s: (c.ids(), (tmp_path / f"{s}.log").read_text()[-3000:]) for s, c in consumers.items()}
            raise AssertionError(f"{exc}; outbox waiting {outbox_waiting(db)}; received and daemon logs: {told}")
        for station, consumer in consumers.items():
            assert consumer.ids() == [r["id"] for r in rows(db, f"station = '{station}'")]
    finally:
        for daemon in daemons.values():
            daemon.terminate()
            daemon.wait(60)
        for log in logs.values():
            log.close()
        for consumer in consumers.values():
            consumer.close()


def test_picture_paths_in_a_message_are_relative_to_out_as_relpath_makes_them(tmp_path):
    from inspector.line.payload import _relative

    out = tmp_path / "out"
    inside = [f"{out}/heatmaps/2026-12-05/1_a.png", f"{out}/archive/d/.hidden.png", f"{out}/./heatmaps/x.png",
              f"{out}/a/../b.png", f"{out}/a/.../b.png"]
    for path in inside:
        assert _relative(path, out) == Path(os.path.relpath(path, out)).as_posix(), path
    for path in ("/elsewhere/a.png", f"{out}x/a.png", f"{out}//a.png"):
        assert _relative(path, out) == (path if not path.startswith(f"{out}/") else "a.png"), path
    assert _relative(None, out) is None and _relative("", out) is None
