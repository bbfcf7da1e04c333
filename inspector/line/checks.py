"""`inspector doctor`'s checks of the line outputs: the broker takes our login and a message on
the station's status topic (not retained: the daemon's own `online` stays as it is); the
webhook's host answers a connection. A verdict is never sent by a check."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import InspectorError
from .mqtt import BrokerAddress, read_password
from .webhook import hidden

OK, WARN, FAIL = "OK", "WARN", "FAIL"


def check_mqtt(url: str, station: str, password_file: Path | None = None, ca: Path | None = None,
               cert: Path | None = None, key: Path | None = None, timeout: float = 5.0) -> tuple[str, str]:
    """(status, detail): connect, authenticate, publish to inspector/{station}/status with QoS 1."""
    try:
        address = BrokerAddress.parse(url, read_password(password_file))
    except InspectorError as exc:
        return FAIL, str(exc)
    answered, result = threading.Event(), {}
    client = address.client(f"inspector-doctor-{os.getpid()}", ca, cert, key)

    def on_connect(c, userdata, flags, reason_code, properties):
        result["code"] = reason_code
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(address.host, address.port, keepalive=10)
    except (OSError, ValueError) as exc:
        return FAIL, f"{address}: cannot connect: {exc}"
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return FAIL, f"{address}: no answer from the broker within {timeout:g} s"
        if result["code"].is_failure:
            return FAIL, f"{address} refused the connection: {result['code']}"
        info = client.publish(f"inspector/{station}/status-check", "doctor", qos=1)
        info.wait_for_publish(timeout)
        if not info.is_published():
            return FAIL, f"{address}: the broker did not acknowledge a message within {timeout:g} s"
        return OK, f"{address}: connected, logged in, a QoS 1 message acknowledged"
    finally:
        client.disconnect()
        client.loop_stop()


def check_webhook(url: str, timeout: float = 5.0) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return FAIL, f"expected an http:// or https:// URL, got {hidden(url)!r}"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return FAIL, f"{hidden(url)}: cannot connect: {exc}"
    return OK, f"{hidden(url)}: the host takes connections (no verdict sent)"
