"""Running on a line PC: `watch --config`, `inspector doctor`, the systemd unit and its files in deploy/."""

import configparser
import json
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from inspector.cli import cli, watch
from inspector.store import Store
from conftest import REPO
from helpers import rows, write_png

DEPLOY = REPO / "deploy"


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@pytest.fixture
def keep_signal_handlers():
    """`watch` run in-process installs SIGINT/SIGTERM handlers; put pytest's back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def station(tmp_path, tiny_bundle):
    """An inbox with two images and a config file naming it, the model, a database and an out folder."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(2):
        write_png(inbox / f"part{i}.png", seed=i)
    config = tmp_path / "watch.toml"
    config.write_text(f'inbox = "{inbox}"\nmodel = "{tiny_bundle}"\ndb = "{tmp_path / "db.sqlite"}"\n'
                      f'out = "{tmp_path / "out"}"\nstation = "from-file"\nexit_when_idle = 0.5\n'
                      'summary-every = 30\n')
    return config


def test_watch_takes_its_options_from_a_config_file_and_the_command_line_wins(station, tmp_path,
                                                                              keep_signal_handlers):
    result = run("watch", "--config", station, "--out", tmp_path / "other")
    assert result.exit_code == 0, result.output
    judged = rows(tmp_path / "db.sqlite")
    assert len(judged) == 2 and {r["station"] for r in judged} == {"from-file"}
    assert all(r["stored_path"].startswith(str(tmp_path / "other" / "archive")) for r in judged)
    assert not (tmp_path / "out").exists()


def test_the_environment_overrides_the_config_file(station, tmp_path, keep_signal_handlers):
    result = run("watch", "--config", station, env={"INSPECTOR_STATION": "from-env"})
    assert result.exit_code == 0, result.output
    assert {r["station"] for r in rows(tmp_path / "db.sqlite")} == {"from-env"}


def test_a_config_file_with_an_unknown_key_is_refused_naming_it(station):
    station.write_text(station.read_text() + "treshold = 0.5\n")
    result = run("watch", "--config", station)
    assert result.exit_code == 2
    assert "unknown key 'treshold'" in result.output and "summary-every" in result.output


def test_doctor_passes_a_ready_station(station, tmp_path):
    Store(str(tmp_path / "db.sqlite")).close()  # created and migrated, as after the daemon's first start
    result = run("doctor", "--config", station, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    statuses = {(c["name"], c["status"]) for c in report["checks"]}
    assert {("model", "OK"), ("database", "OK"), ("inbox", "OK"), ("out", "OK")} <= statuses
    assert not any(c["status"] == "FAIL" for c in report["checks"])
    text = run("doctor", "--config", station).stdout
    assert "schema migrated" in text and "GB free" in text and "on " in text
    assert not (tmp_path / "out").exists()  # reported as "created by the daemon", not created


def test_doctor_names_what_is_wrong_and_fails(tmp_path):
    db = tmp_path / "missing.db"
    result = run("doctor", tmp_path / "no-inbox", "--model", tmp_path / "no-model", "--db", db,
                 "--out", tmp_path / "out", "--min-free", "1e12")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("FAIL  model") and "no such model directory" in line for line in lines)
    assert any(line.startswith("WARN  database") and "does not exist yet" in line for line in lines)
    assert any(line.startswith("FAIL  inbox") and "does not exist" in line for line in lines)
    assert any(line.startswith("FAIL  out") and "below the" in line for line in lines)  # 1e12 GB free: no
    assert not db.exists()  # a doctor does not create the database


def test_doctor_reports_an_unreadable_database_and_an_out_folder_inside_the_inbox(tmp_path, tiny_bundle):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "db.sqlite").write_text("not a database")
    result = run("doctor", inbox, "--model", tiny_bundle, "--db", tmp_path / "db.sqlite", "--out", inbox / "out")
    assert result.exit_code == 1
    assert "FAIL  database" in result.stdout and "FAIL  out" in result.stdout and "inside the inbox" in result.stdout


def unit():
    parser = configparser.ConfigParser(strict=True, interpolation=None, comment_prefixes=("#",))
    parser.optionxform = str
    parser.read(DEPLOY / "inspector-watch.service")
    return parser


def test_the_systemd_unit_runs_watch_with_options_it_has(tmp_path, tiny_bundle):
    service = unit()["Service"]
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "on-failure" and service["User"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # systemctl reload: the daemon loads its bundle again
    program, command, *args = shlex.split(service["ExecStart"])
    assert program.endswith("/bin/inspector") and command == "watch"
    # Parse the unit's arguments with the real command, its --config pointing at the sample
    # watch.toml with the paths made real here: every option and key must exist and hold a valid value.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sample = (DEPLOY / "watch.toml").read_text()
    sample = (sample.replace("/srv/line1/inbox", str(inbox)).replace("/srv/line1/models/current", str(tiny_bundle))
              .replace("/srv/line1/out", str(tmp_path / "out")))
    (tmp_path / "watch.toml").write_text(sample)
    args = [str(tmp_path / "watch.toml") if a == "/etc/inspector/watch.toml" else a for a in args]
    assert str(tmp_path / "watch.toml") in args
    context = watch.make_context("watch", args)
    assert context.params["inbox"] == inbox and context.params["model_dir"] == tiny_bundle
    assert context.params["log_format"] == "json" and context.params["on_done"] == "move"
    # The environment file sets only variables the CLI reads.
    env_names = {name for param in watch.params for name in ([param.envvar] if isinstance(param.envvar, str)
                                                                else param.envvar or [])}
    lines = [line for line in (DEPLOY / "inspector.env").read_text().splitlines() if line and line[0] != "#"]
    assert lines and {line.split("=", 1)[0] for line in lines} <= env_names
    assert service["EnvironmentFile"] == "/etc/inspector/inspector.env"


def test_serve_started_with_the_environment_file_serves_the_daemons_out_folder(monkeypatch):
    import tomllib

    serve = cli.commands["serve"]
    lines = [line for line in (DEPLOY / "inspector.env").read_text().splitlines() if line and line[0] != "#"]
    for line in lines:
        monkeypatch.setenv(*line.split("=", 1))
    daemon_out = tomllib.loads((DEPLOY / "watch.toml").read_text())["out"]
    # Under the group's context, as `inspector serve` runs: its help option names stay -h and --help.
    context = serve.make_context("serve", [], parent=cli.make_context("inspector", ["serve"]))
    assert context.params["out"] == Path(daemon_out) and context.params["db"] == "/srv/line1/inspector.db"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    """With ExecStart pointing at an installed inspector: systemd finds nothing to say about it."""
    installed = str(Path(sys.executable).parent / "inspector")  # this venv's
    copy = tmp_path / "inspector-watch.service"
    copy.write_text((DEPLOY / "inspector-watch.service").read_text().replace("/opt/inspector/bin/inspector",
                                                                              installed))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert copy.name not in result.stderr + result.stdout, result.stderr  # unknown keys are only warned about
