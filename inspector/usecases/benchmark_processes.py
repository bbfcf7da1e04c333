"""The processes `inspector benchmark` measures: the real daemon as a child process, and a
consumer on the line that notes when each verdict message arrived."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InspectorError


class Daemon:
    """The real `inspector watch` as a child process, for end-to-end measurements."""

    def __init__(self, model_dir: Path, work: Path, extra: list[str] = ()):
        self.inbox, self.out, self.db = work / "inbox", work / "out", work / "inspector.db"
        self.inbox.mkdir(parents=True)
        self.log_path = work / "daemon.log"
        self.log = open(self.log_path, "wb")
        # Only the options given here: an INSPECTOR_* variable of the caller's (a line's broker, its
        # pictures setting) would change what is measured, or publish to a real station. The
        # broker's password is kept: --mqtt may need it.
        env = {name: value for name, value in os.environ.items()
               if not name.startswith("INSPECTOR_") or name == "INSPECTOR_MQTT_PASSWORD"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inspector.cli", "watch", str(self.inbox), "--model", str(model_dir),
             "--db", str(self.db), "--out", str(self.out), "--summary-every", "3600", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + 120
        while b"watching" not in self.log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()  # not left running in a scratch folder that is about to go
                self.process.wait()
                self.log.close()
                raise RuntimeError(f"the daemon did not start:\n{self.log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        time.sleep(1.0)  # the observer starts right after the banner

    def done_count(self) -> int:
        try:
            with sqlite3.connect(self.db, timeout=30) as conn:
                return conn.execute("SELECT count(*) FROM inspections WHERE status != 'pending'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    def scored_times(self) -> dict[str, float]:
        """Source name -> when its verdict was recorded (UTC seconds since the epoch)."""
        with sqlite3.connect(self.db, timeout=30) as conn:
            rows = conn.execute("SELECT source_name, scored_at FROM inspections WHERE status = 'done'").fetchall()
        # scored_at is naive UTC: say so, or timestamp() would read it as local time.
        return {name: datetime.fromisoformat(when).replace(tzinfo=timezone.utc).timestamp() for name, when in rows}

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.done_count() < count:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"only {self.done_count()} of {count} verdicts; log:\n"
                                   + self.log_path.read_text(errors="replace")[-2000:])
            time.sleep(0.05)

    def processes(self) -> list[int]:
        """The daemon's process and its children (the decoding workers), by id."""
        pids = [self.process.pid]
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            try:
                pids += [int(pid) for pid in children.read_text().split()]
            except OSError:  # a thread that ended meanwhile
                pass
        return list(dict.fromkeys(pids))

    def cpu_seconds(self) -> float:
        """CPU time the daemon's threads and its live child processes have used so far (user and system)."""
        total = 0
        for pid in self.processes():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # a child that ended meanwhile
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        """The peak resident memory of the daemon's process and of each of its child processes,
        added up (an upper bound of their peak together)."""
        total, found = 0.0, False
        for pid in self.processes():
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                if line.startswith("VmHWM:"):
                    total, found = total + int(line.split()[1]) / 1024, True
        return total if found else float("nan")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


class Listener:
    """A consumer on the line: subscribes (QoS 1) to a station's verdict topic and notes when each
    message arrived, by the image's name."""

    def __init__(self, mqtt_url: str, station: str):
        from ..line.mqtt import DEFAULT_TOPIC, BrokerAddress, read_password

        self.received: dict[str, float] = {}
        self._subscribed = threading.Event()
        address = BrokerAddress.parse(mqtt_url, read_password(None))
        self.client = address.client(f"inspector-benchmark-{os.getpid()}")
        self.client.on_connect = lambda c, *_: c.subscribe(DEFAULT_TOPIC.format(station=station), qos=1)
        self.refused: list = []
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        try:
            self.client.connect(address.host, address.port)
        except OSError as exc:
            raise InspectorError(f"--mqtt {address}: cannot connect: {exc}") from None
        self.client.loop_start()
        if not self._subscribed.wait(10) or self.refused:
            self.close()
            raise InspectorError(f"--mqtt {address}: " + (f"the broker refused the subscription ({self.refused[0]})"
                                                         if self.refused else "no subscription within 10 s"))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.refused = [code for code in reason_codes if code.is_failure]
        self._subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        arrived = time.time()
        self.received.setdefault(json.loads(message.payload)["source_name"], arrived)

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.received)} of {count} verdict messages received")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
