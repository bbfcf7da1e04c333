import os
import signal
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data"
SHARED = REPO.parent / "shared" / "data" / "mvtec_screw"

# A pipeline small enough to train in seconds: the real code path with a tiny model.
TINY_PIPELINE = """
name = "tiny"
[preprocess]
size = 64
normalize = "standardize"
[model]
architecture = "compact"
filters = [4, 8]
latent_filters = 4
epochs = 2
batch_size = 8
[scoring]
error = "squared"
reduce = "smoothed_max"
[threshold]
policy = "mean_std"
k = 2.5
"""


def child_pids() -> set[int]:
    """Live (non-zombie) child processes of this process, read from /proc."""
    me, children = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z":
            children.add(int(entry))
    return children


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_TEST_RUN_HANDLERS = {sig: signal.getsignal(sig) for sig in _SIGNALS}


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    """`inspector watch` run in this process leaves SIGINT, SIGTERM and SIGHUP ignored (as a
    process that stopped and exits), maybe in a fixture set up before this one. Each test starts
    and ends with the test run's own handlers: an ignored signal would also be inherited by the
    processes a test starts, which then could not be terminated."""
    for sig, handler in _TEST_RUN_HANDLERS.items():
        signal.signal(sig, handler)
    yield
    for sig, handler in _TEST_RUN_HANDLERS.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="session", autouse=True)
def resource_tracker_running():
    """Multiprocessing's resource tracker: one process for the whole run, started by the first
    pool of decoding workers (`inspector.decode_workers`); started first here so that no test
    counts it as its own leaked child."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


@pytest.fixture(autouse=True)
def no_leaked_threads_or_processes():
    """Fail a test that leaves a thread or a child process running behind it."""
    threads_before = set(threading.enumerate())
    children_before = child_pids()
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leaked = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        children = child_pids() - children_before
        if not leaked and not children:
            return
        time.sleep(0.05)
    assert not leaked, f"test leaked threads: {[t.name for t in leaked]}"
    assert not children, f"test leaked child processes: {sorted(children)}"


@pytest.fixture(scope="session")
def tiny_pipeline_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pipelines") / "tiny.toml"
    path.write_text(TINY_PIPELINE)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_pipeline_file) -> Path:
    """A tiny model trained once on sample_data/train/good through the real CLI."""
    from click.testing import CliRunner

    from inspector.cli import cli

    out = tmp_path_factory.mktemp("models") / "tiny"
    result = CliRunner().invoke(cli, [
        "train", str(SAMPLE / "train" / "good"), "--out", str(out),
        "--pipeline", str(tiny_pipeline_file), "--seed", "1",
    ])
    assert result.exit_code == 0, result.output
    return out



def pytest_collection_modifyitems(config, items):
    """A test that asks for the default model must be marked slow: training it takes minutes,
    which the README's test command (`-m "not slow"`) leaves out."""
    unmarked = [item.nodeid for item in items
                if "default_bundle" in getattr(item, "fixturenames", ()) and item.get_closest_marker("slow") is None]
    if unmarked:
        raise pytest.UsageError(f"tests using default_bundle must be marked slow: {', '.join(unmarked)}")


@pytest.fixture(scope="session")
def default_bundle(tmp_path_factory) -> Path:
    """The default pipeline trained once per test run on the 40 sample screws, as `inspector
    train` does it with no options: minutes on two cores, so the tests using it are marked slow."""
    import json

    from click.testing import CliRunner

    from inspector.cli import cli

    out = tmp_path_factory.mktemp("default") / "m"
    result = CliRunner().invoke(cli, ["train", str(SAMPLE / "train" / "good"), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # 32 screws trained on: 900 epochs of 2 batches of 16 make the pipeline's 1,800 steps.
    assert summary["architecture"] == "denoising_autoencoder" and summary["epochs"] == 900
    return out


PG_URL = os.environ.get("INSPECTOR_TEST_PG")  # set by .ci/run, which starts a server


def _fresh_pg_database() -> tuple[str, callable]:
    """A new, empty database on the test server; returns its URL and a function that drops it."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The URL of an empty database: a SQLite file, and PostgreSQL when a test server is given."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite'}"
        return
    if not PG_URL:
        pytest.skip("no PostgreSQL test server (INSPECTOR_TEST_PG is not set; .ci/run starts one)")
    url, drop = _fresh_pg_database()
    yield url
    drop()
