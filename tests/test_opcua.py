"""OPC UA: a PLC logs in with asyncua's own client and reads the station's last verdict and
counters, which change as parts are judged; nobody else gets in, nobody writes."""

import json

import pytest
from asyncua.sync import Client, ThreadLoop
from asyncua.ua.uaerrors import UaStatusCodeError
from click.testing import CliRunner

from helpers import wait_for, write_png
from inspector.cli import cli
from inspector.line.opcua import NAMESPACE, OpcUaOutput, node_id
from test_line import free_port
from test_outputs import rows, watching  # noqa: F401


class Plc:
    """A line controller reading the station's nodes."""

    def __init__(self, port: int, station: str, user: str | None = None, password: str | None = None):
        self.loop = ThreadLoop(10)
        self.loop.start()
        self.client = Client(f"opc.tcp://127.0.0.1:{port}", timeout=10, tloop=self.loop)
        if user is not None:
            self.client.set_user(user)
            self.client.set_password(password)
        try:
            self.client.connect()
        except BaseException:
            self.loop.stop()
            raise
        self.ns = self.client.get_namespace_index(NAMESPACE)
        self.station = station

    def node(self, name: str):
        return self.client.get_node(f"ns={self.ns};s={node_id(self.station, name)}")

    def read(self, name: str):
        return self.node(name).read_value()

    def close(self):
        try:
            self.client.disconnect()
        finally:
            self.loop.stop()


@pytest.fixture
def serving():
    started = []

    def start(station: str, **login):
        port = free_port()
        output = OpcUaOutput(f"opc.tcp://127.0.0.1:{port}", station, **login)
        started.append(output)
        return port, output

    yield start
    for output in started:
        output.close()


def test_a_plc_reads_the_last_verdict_and_the_counters_change_as_parts_are_judged(watching, serving):  # noqa: F811
    port, output = serving("line7", username="plc", password="s3cret")
    inbox, db, watcher = watching(output, station="line7")
    plc = Plc(port, "line7", "plc", "s3cret")
    try:
        assert (plc.read("Judged"), plc.read("LastVerdict"), plc.read("LastId")) == (0, "", 0)
        write_png(inbox / "first.png", seed=900)
        wait_for(lambda: plc.read("Judged") == 1, 60, "the first verdict on the nodes")
        [row] = rows(db)
        assert (plc.read("LastId"), plc.read("LastSource"), plc.read("LastVerdict")) == \
            (row["id"], "first.png", row["verdict"])
        assert plc.read("LastScore") == pytest.approx(row["score"])
        for i in range(5):
            write_png(inbox / f"next{i}.png", seed=901 + i)
        (inbox / "empty.png").write_bytes(b"")
        wait_for(lambda: plc.read("Judged") == 7, 60, "seven verdicts counted")
        committed = rows(db)
        assert len(committed) == 7
        assert plc.read("Errors") == 1 == sum(r["verdict"] == "error" for r in committed)
        assert plc.read("Defects") == sum(r["verdict"] == "defect" for r in committed)
        assert plc.read("LastId") == max(r["id"] for r in committed)
        assert plc.read("Late") == 0
        with pytest.raises(UaStatusCodeError):  # the line reads; it cannot set a verdict
            plc.node("LastVerdict").write_value("ok")
        assert plc.read("LastVerdict") == next(r["verdict"] for r in committed if r["id"] == plc.read("LastId"))
    finally:
        plc.close()


def test_only_the_given_user_gets_in_unless_anonymous_access_is_asked_for(serving):
    port, _ = serving("line8", username="plc", password="s3cret")
    for user, password in ((None, None), ("plc", "wrong"), ("admin", "s3cret")):
        with pytest.raises(UaStatusCodeError):
            Plc(port, "line8", user, password)
    Plc(port, "line8", "plc", "s3cret").close()
    port, _ = serving("line9", anonymous=True)
    plc = Plc(port, "line9")
    try:
        assert plc.read("Judged") == 0
    finally:
        plc.close()


def test_watch_refuses_an_open_endpoint_nobody_asked_for(tiny_bundle, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    result = CliRunner().invoke(cli, ["watch", str(inbox), "--model", str(tiny_bundle), "--db",
                                       str(tmp_path / "db.sqlite"), "--out", str(tmp_path / "out"),
                                       "--opcua", f"opc.tcp://127.0.0.1:{free_port()}", "--exit-when-idle", "1"])
    assert result.exit_code == 1 and "anonymous access is off" in result.output, result.output
    assert "Traceback" not in result.output


def test_doctor_logs_in_to_the_serving_daemon_or_finds_the_address_free(serving, tmp_path, monkeypatch):
    port, _ = serving("line10", username="plc", password="s3cret")
    (tmp_path / "pw").write_text("s3cret\n")
    base = ["doctor", "--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "--json", "--station", "line10"]

    def check(*options):
        result = CliRunner().invoke(cli, base + list(options))
        return {c["name"]: c for c in json.loads(result.output)["checks"]}["opcua"]

    served = check("--opcua", f"opc.tcp://127.0.0.1:{port}", "--opcua-user", "plc",
                   "--opcua-password-file", str(tmp_path / "pw"))
    assert served["status"] == "OK" and "serving station line10" in served["detail"], served
    monkeypatch.setenv("INSPECTOR_OPCUA_PASSWORD", "wrong")
    refused = check("--opcua", f"opc.tcp://127.0.0.1:{port}", "--opcua-user", "plc")
    assert refused["status"] == "FAIL" and "refused" in refused["detail"] and "wrong" not in refused["detail"]
    free = check("--opcua", f"opc.tcp://127.0.0.1:{free_port()}", "--opcua-user", "plc")
    assert free["status"] == "OK" and "nothing serves there yet" in free["detail"], free


def test_a_login_in_the_endpoint_url_is_refused_without_repeating_it():
    from inspector.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        OpcUaOutput(f"opc.tcp://plc:s3cret@127.0.0.1:{free_port()}", "line12", username="plc", password="x")
    assert "--opcua-user" in str(refused.value) and "s3cret" not in str(refused.value)
