"""`inspector doctor`'s checks of the line outputs: the broker takes our login and a message on
the station's status topic (not retained: the daemon's own `online` stays as it is); the
webhook's host answers a connection; the OPC UA endpoint serves the station's nodes to our
login, or is free for the daemon to serve on. A verdict is never sent by a check."""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import InspectorError
from .login import read_password as read_secret
from .mqtt import BrokerAddress, read_password
from .opcua import NAMESPACE, node_id, parse_endpoint
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


def check_opcua(url: str, station: str, user: str | None = None, password_file: Path | None = None,
                timeout: float = 5.0) -> tuple[str, str]:
    """A daemon serving at `url`: log in (as `user`, else anonymously) and read the station's last
    verdict. Nothing serving there: the address must be one this host can serve on."""
    try:
        host, port = parse_endpoint(url)
        password = read_secret(password_file, "INSPECTOR_OPCUA_PASSWORD", "--opcua-password-file")
    except InspectorError as exc:
        return FAIL, str(exc)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError:
        try:
            with socket.create_server((host, port)):
                pass
        except OSError as exc:
            return FAIL, f"{url}: nothing serves there and watch could not either: {exc}"
        return OK, f"{url}: nothing serves there yet; watch can serve on it"
    except OSError as exc:
        return FAIL, f"{url}: cannot connect: {exc}"
    from asyncua.sync import Client, ThreadLoop

    # The check's one line says what happened; asyncua's own warnings (plain-text password on
    # a None endpoint, a refused session) would only repeat it on stderr.
    library_log = logging.getLogger("asyncua")
    level = library_log.level
    library_log.setLevel(logging.CRITICAL)
    try:
        with ThreadLoop(timeout) as loop:  # its thread ends with the check, whatever the server said
            return _read_station(Client(url, timeout, tloop=loop), url, station, user, password)
    finally:
        library_log.setLevel(level)


def _read_station(client, url: str, station: str, user: str | None, password: str | None) -> tuple[str, str]:
    if user is not None:
        client.set_user(user)
        client.set_password(password or "")
    try:
        client.connect()
    except Exception as exc:  # asyncua raises its status codes: a refused login is one of them
        return FAIL, f"{url}: {'login as ' + user if user else 'anonymous access'} refused: {exc}"
    try:
        ns = client.get_namespace_index(NAMESPACE)
        verdict = client.get_node(f"ns={ns};s={node_id(station, 'LastVerdict')}").read_value()
        judged = client.get_node(f"ns={ns};s={node_id(station, 'Judged')}").read_value()
    except Exception as exc:
        return FAIL, f"{url}: logged in, but station {station}'s nodes cannot be read: {exc}"
    finally:
        client.disconnect()
    return OK, f"{url}: serving station {station} ({judged} judged since its start, last verdict {verdict or 'none'})"
