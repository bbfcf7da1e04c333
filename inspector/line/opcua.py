"""OPC UA: the daemon serves its station's last verdict and counters as nodes a PLC reads.

One server per daemon (`--opcua opc.tcp://127.0.0.1:4840`), in namespace `urn:inspector`, under
Objects/{station}: `LastId`, `LastSource`, `LastVerdict`, `LastScore`, `LastTime` (when the
file was complete), and the counters `Judged`, `Defects`, `Errors`, `Late` since `Started`.
Node ids are strings, `ns=<urn:inspector>;s={station}.LastVerdict`, so a PLC can address them
without browsing. Clients may read, never write.

Anonymous access is off unless asked for (`--opcua-anonymous`): a client logs in with the
user and password given. The endpoint offers no message security (`None`), as most PLCs on a
cell's own network expect; the password then crosses the wire in clear, so serve on the cell's
network or on loopback only.

asyncua is asynchronous: its server runs on an event loop in a thread of its own, and
`deliver` hands it each batch's values. Not durable: the nodes hold a state, not a stream; a
PLC that must not miss a verdict reads MQTT or the webhook.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from datetime import datetime, timezone
from typing import Any, Sequence
from urllib.parse import urlsplit

from ..daemon.outputs import Output, Verdict
from ..errors import ConfigError
from .payload import is_late

log = logging.getLogger("inspector.line")

NAMESPACE = "urn:inspector"
START_WAIT = 30.0  # seconds for the server to come up (it builds the standard address space)
WRITE_WAIT = 5.0  # seconds for a batch's values to be written

# name -> (variant type, initial value)
LAST = {"LastId": ("Int64", 0), "LastSource": ("String", ""), "LastVerdict": ("String", ""),
        "LastScore": ("Double", float("nan")), "LastTime": ("DateTime", datetime(1601, 1, 1, tzinfo=timezone.utc))}  # OPC UA's "no time"
COUNTERS = ("Judged", "Defects", "Errors", "Late")


def parse_endpoint(url: str) -> tuple[str, int]:
    """(host, port) of `opc.tcp://host[:port][/path]`; 4840 by default."""
    parts = urlsplit(url)
    if parts.scheme != "opc.tcp" or not parts.hostname:
        raise ConfigError("--opcua: expected opc.tcp://host[:port]")
    if "@" in parts.netloc:  # never logged: the login goes in --opcua-user and its password file
        raise ConfigError("--opcua: no user or password in the URL; use --opcua-user and --opcua-password-file")
    try:
        return parts.hostname, parts.port or 4840
    except ValueError:
        raise ConfigError(f"--opcua: bad port in {url!r}") from None


def node_id(station: str, name: str) -> str:
    """The string part of a node's id: `{station}.{name}`."""
    return f"{station}.{name}"


class _Login:
    """asyncua's user manager: one user and password, and anonymous clients only if allowed."""

    def __init__(self, username: str | None, password: str | None, anonymous: bool):
        self.username, self.password, self.anonymous = username, password, anonymous

    def get_user(self, iserver, username=None, password=None, certificate=None):
        from asyncua.crypto.permission_rules import User, UserRole

        if username is None:  # an anonymous token (the server takes no certificate tokens)
            return User(role=UserRole.User, name="anonymous") if self.anonymous else None
        if self.username is None or password is None:
            return None
        given = password.encode() if isinstance(password, str) else bytes(password)
        if hmac.compare_digest(username.encode(), self.username.encode()) and \
                hmac.compare_digest(given, (self.password or "").encode()):
            return User(role=UserRole.User, name=username)
        return None


class OpcUaOutput(Output):
    """Serves the station's last verdict and counters; the values change with every batch."""

    durable = False

    def __init__(self, endpoint: str, station: str, username: str | None = None, password: str | None = None,
                 anonymous: bool = False, deadline_ms: float | None = None, name: str = "opcua"):
        if username is None and not anonymous:
            raise ConfigError("--opcua: anonymous access is off: give --opcua-user (its password from "
                              "--opcua-password-file or INSPECTOR_OPCUA_PASSWORD), or --opcua-anonymous")
        if username is not None and not password:
            raise ConfigError("--opcua-user needs a password: --opcua-password-file or INSPECTOR_OPCUA_PASSWORD")
        self.host, self.port = parse_endpoint(endpoint)
        self.endpoint, self.station, self.name, self.deadline_ms = endpoint, station, name, deadline_ms
        self.counts = dict.fromkeys(COUNTERS, 0)
        # asyncua logs every session at INFO and its address space at DEBUG: keep it to warnings.
        logging.getLogger("asyncua").setLevel(logging.WARNING)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="opcua", daemon=True)
        self._thread.start()
        self._nodes: dict[str, Any] = {}
        self._server = None
        try:
            self._call(self._start(_Login(username, password, anonymous)), START_WAIT)
        except Exception as exc:
            self._halt()
            raise ConfigError(f"--opcua {endpoint}: cannot serve: {exc}") from None
        log.info("OPC UA: serving station %s at %s (%s)", station, endpoint,
                 "anonymous clients allowed" if anonymous else f"user {username}")

    def _call(self, coroutine, timeout: float):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _start(self, login: _Login) -> None:
        from asyncua import Server, ua

        server = Server(user_manager=login)
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}")
        server.set_server_name(f"inspector {self.station}")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        tokens = [ua.UserNameIdentityToken]
        if login.anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        ns = await server.register_namespace(NAMESPACE)
        station = await server.nodes.objects.add_object(ua.NodeId(self.station, ns), ua.QualifiedName(self.station, ns))
        started = datetime.now(timezone.utc)
        variables = {name: (kind, value) for name, (kind, value) in LAST.items()}
        variables.update({name: ("UInt64", 0) for name in COUNTERS})
        variables["Started"] = ("DateTime", started)
        for name, (kind, value) in variables.items():
            self._nodes[name] = await station.add_variable(
                ua.NodeId(node_id(self.station, name), ns), ua.QualifiedName(name, ns),
                ua.Variant(value, getattr(ua.VariantType, kind)))
        await server.start()
        self._server = server

    async def _write(self, values: dict[str, tuple[str, Any]]) -> None:
        from asyncua import ua

        for name, (kind, value) in values.items():
            await self._nodes[name].write_value(ua.DataValue(ua.Variant(value, getattr(ua.VariantType, kind))))

    def deliver(self, verdicts: Sequence[Verdict]) -> None:
        """Counts the batch and shows its last verdict."""
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        for verdict in verdicts:
            self.counts["Judged"] += 1
            self.counts["Defects"] += verdict.verdict == "defect"
            self.counts["Errors"] += verdict.verdict == "error"
            self.counts["Late"] += is_late(verdict, now, self.deadline_ms)
        last = verdicts[-1]
        values: dict[str, tuple[str, Any]] = {
            "LastId": ("Int64", last.inspection_id), "LastSource": ("String", last.source_name),
            "LastVerdict": ("String", last.verdict),
            "LastScore": ("Double", float("nan") if last.score is None else float(last.score)),
            "LastTime": ("DateTime", (last.received_at or now).replace(tzinfo=timezone.utc)),
        }
        values.update({name: ("UInt64", count) for name, count in self.counts.items()})
        self._call(self._write(values), WRITE_WAIT)

    def _halt(self) -> None:
        if self._loop.is_closed():  # closed already
            return
        if self._server is not None:
            try:
                self._call(self._server.stop(), WRITE_WAIT)
            except Exception as exc:  # stopping: say it and go on
                log.warning("OPC UA server did not stop cleanly: %s", exc)
            self._server = None
        try:  # the loop's helper threads (it resolves the address in one) end with it
            self._call(self._loop.shutdown_default_executor(), WRITE_WAIT)
        except Exception as exc:
            log.warning("OPC UA server's helper threads did not stop: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WRITE_WAIT)
        if not self._thread.is_alive():
            self._loop.close()

    def close(self) -> None:
        self._halt()


__all__ = ["NAMESPACE", "OpcUaOutput", "node_id", "parse_endpoint"]
