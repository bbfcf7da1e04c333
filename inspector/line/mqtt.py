"""MQTT: each verdict published (QoS 1 by default) on the station's verdict topic, the last one
retained on `inspector/{station}/last`, and `inspector/{station}/status` = `online` (retained)
with a last will `offline`, so the line sees a daemon that died.

paho-mqtt is the client: the Eclipse project's own, maintained, and it tells a publish's PUBACK
apart (`MQTTMessageInfo.wait_for_publish`), which the outbox needs: an entry is marked delivered
only when the broker acknowledged every message of the batch. The outbox, not the client, keeps
what is unsent: while the broker is away `deliver` raises at once and the daemon keeps judging.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence
from urllib.parse import unquote, urlsplit

from ..daemon.outputs import Output, Verdict
from ..errors import ConfigError
from . import login
from .payload import encode, payload, say_late

log = logging.getLogger("inspector.line")

DEFAULT_TOPIC = "inspector/{station}/verdict"
CONNECT_WAIT = 5.0  # seconds the daemon waits at start for the broker's answer (a refusal stops it)


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is: `mqtt://[user[:password]@]host[:port]` or `mqtts://...` (TLS)."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str, password: str | None = None) -> BrokerAddress:
        """`password`: from --mqtt-password-file or INSPECTOR_MQTT_PASSWORD, over the URL's."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"--mqtt: expected mqtt://[user[:password]@]host[:port] or mqtts://..., got "
                              f"{cls.hidden(url)!r}")
        try:
            port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        except ValueError:
            raise ConfigError(f"--mqtt: bad port in {cls.hidden(url)!r}") from None
        return cls(parts.hostname, port, parts.scheme == "mqtts", unquote(parts.username) if parts.username else None,
                   password if password is not None else (unquote(parts.password) if parts.password else None))

    @staticmethod
    def hidden(url: str) -> str:
        """The URL as it may be logged: its password replaced by ***."""
        parts = urlsplit(url)
        if parts.password is None:
            return url
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()

    def client(self, client_id: str, ca: Path | None = None, cert: Path | None = None, key: Path | None = None):
        """A paho client with this address's login and TLS (`ca`: the broker's CA; `cert`, `key`:
        a client certificate); not yet connected."""
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls or ca or cert:
            client.tls_set(ca_certs=str(ca) if ca else None, certfile=str(cert) if cert else None,
                           keyfile=str(key) if key else None)
        return client

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def read_password(file: Path | None) -> str | None:
    """The broker's password from a file (first line), else INSPECTOR_MQTT_PASSWORD, else None."""
    return login.read_password(file, "INSPECTOR_MQTT_PASSWORD", "--mqtt-password-file")


class MqttOutput(Output):
    """Publishes every verdict; durable (the outbox redelivers what the broker did not acknowledge)."""

    durable = True

    def __init__(self, address: BrokerAddress, station: str, out: Path, topic: str = DEFAULT_TOPIC, qos: int = 1,
                 ca: Path | None = None, cert: Path | None = None, key: Path | None = None,
                 deadline_ms: float | None = None, ack_timeout: float = 10.0, name: str = "mqtt"):
        self.name, self.address, self.station, self.out = name, address, station, Path(os.path.abspath(out))
        self.topic = topic.format(station=station)
        self.last_topic, self.status_topic = f"inspector/{station}/last", f"inspector/{station}/status"
        self.qos, self.deadline_ms, self.ack_timeout = qos, deadline_ms, ack_timeout
        self._answered = threading.Event()
        self._refusal: str | None = None
        client = address.client(f"inspector-{station}-{socket.gethostname()}-{os.getpid()}", ca, cert, key)
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 10)  # a broker back from a restart is found within 10 s
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client
        try:
            client.connect_async(address.host, address.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--mqtt {address}: {exc}") from None
        client.loop_start()
        self._answered.wait(CONNECT_WAIT)
        if self._refusal is not None:  # wrong password, not authorised: waiting will not help
            self.client.loop_stop()
            raise ConfigError(f"MQTT broker {address} refused the connection: {self._refusal}")
        if not client.is_connected():
            log.warning("MQTT broker %s not reachable yet; verdicts wait in the outbox until it is", address)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if not self._answered.is_set():  # at start: raised by __init__, said once there
                self._refusal = str(reason_code)
            else:
                log.error("MQTT broker %s refused the connection: %s", self.address, reason_code)
        else:
            client.publish(self.status_topic, "online", qos=1, retain=True)
            log.info("MQTT broker %s connected; verdicts on %s", self.address, self.topic)
            if self.wake is not None:
                self.wake()
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._answered.set()

    def deliver(self, verdicts: Sequence[Verdict]) -> list[int]:
        """Publishes the batch, then waits for the broker's acknowledgement of every message;
        returns the ids sent late."""
        if not self.client.is_connected():
            raise ConnectionError(f"MQTT broker {self.address} not connected")
        sent_at = datetime.now(timezone.utc).replace(tzinfo=None)
        infos, last, late = [], None, []
        for verdict in verdicts:
            message = payload(verdict, self.out, sent_at, self.deadline_ms)
            if message["late"]:
                late.append(verdict.inspection_id)
                say_late(verdict, sent_at, self.deadline_ms)
            last = encode(message)
            infos.append(self.client.publish(self.topic, last, qos=self.qos))
        if last is not None:
            infos.append(self.client.publish(self.last_topic, last, qos=self.qos, retain=True))
        for info in infos:
            if info.rc != 0:
                raise ConnectionError(f"MQTT publish to {self.address} failed (code {info.rc})")
            try:
                info.wait_for_publish(self.ack_timeout)
            except (RuntimeError, ValueError) as exc:
                raise ConnectionError(f"MQTT publish to {self.address} failed: {exc}") from None
            if not info.is_published():
                raise TimeoutError(f"MQTT broker {self.address} did not acknowledge within {self.ack_timeout:g} s")
        return late

    def close(self) -> None:
        if self.client.is_connected():
            info = self.client.publish(self.status_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError):
                pass
            self.client.disconnect()
        self.client.loop_stop()


__all__ = ["BrokerAddress", "MqttOutput", "read_password"]
