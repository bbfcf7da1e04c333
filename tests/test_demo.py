"""The demo runs on sample_data and ends with the command that shows its results in a browser."""

import os
import re
import shlex
import subprocess
import sys
import urllib.request

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # it judges with the default model (trained once per run: conftest.default_bundle)


def test_the_demo_ends_with_a_serve_command_that_shows_its_results(tmp_path, default_bundle):
    # The demo's own training step is `inspector train` as the default_bundle fixture runs it: the
    # demo is handed that model instead of training it again.
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
           "INSPECTOR_DEMO_MODEL": str(default_bundle)}
    demo = subprocess.run(["bash", "scripts/demo.sh", str(tmp_path / "demo")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert f"Using the model trained in {default_bundle}" in demo.stdout
    last = demo.stdout.strip().splitlines()[-1].strip()
    command = shlex.split(last)
    assert command[0].endswith("inspector") and command[1] == "serve", last
    assert command[command.index("--db") + 1] == str(tmp_path / "demo" / "inspector.db")
    server = subprocess.Popen([*command, "--port", "0"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", server.stderr.readline()).group(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            page = response.read().decode()
        assert "defect_000.png" in page and "good_000.png" in page
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stderr.close()
