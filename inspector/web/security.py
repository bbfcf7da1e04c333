"""What guards the QA page: host names, the password, cross-site posts, the form token, headers.

Defences, each against a page a hostile site or a hostile file could make a browser load:
- The Host header must name this server (the address it is bound to, loopback names, `--host`
  and `--allow-host` names; any IP address, which cannot be rebound): DNS rebinding is refused.
- Form posts carry a per-process token, and their Origin (or Referer) must be this page.
- Pictures are served by inspection and kind (input, heatmap, overlay): only files the database
  points to, under --out, and only as images (by their content); anything else is an attachment.
- Frames are refused (X-Frame-Options, CSP frame-ancestors); names are escaped (Jinja).
- With a password (`--password` / INSPECTOR_SERVE_PASSWORD), every request needs it (HTTP basic
  authentication, any user name). After FREE_FAILURES wrong passwords a client (by address)
  waits before its next try is even looked at: 1 s, then twice as long after each further
  failure, at most MAX_WAIT (429 with Retry-After); a right password clears its record.
- Parameters out of range are 400, ids that cannot exist 404.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
import socket
import threading
import time
from urllib.parse import urlsplit

from flask import Flask, Response, abort, request

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
PAGE_POLICY = ("default-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'; "
               "base-uri 'none'")
FILE_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def host_names(host: str, allowed: list[str] | tuple[str, ...] = ()) -> set[str]:
    """The names a request's Host header may carry for a server bound to `host`."""
    names = {host.lower(), *(name.lower().rstrip(".") for name in allowed), *LOOPBACK_NAMES}
    if is_wildcard(host):
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return {name for name in names if name}


def _host_of(header: str) -> str:
    """The host part of a Host header or URL netloc ('[::1]:8765' -> '::1'), lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


FREE_FAILURES = 5  # wrong passwords a client may give before it must wait
MAX_WAIT = 60.0  # seconds, at most, between two tries of one client
_REMEMBERED = 10_000  # clients remembered; the oldest records go first


class FailedLogins:
    """Wrong passwords per client: how long the client must wait before it may try again."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # client -> (failures, when it may try again)

    def wait(self, client: str) -> float:
        """Seconds `client` must still wait before its password is looked at (0: now)."""
        with self._lock:
            _, until = self._failures.get(client, (0, 0.0))
        return max(0.0, until - self.clock())

    def failed(self, client: str) -> None:
        with self._lock:
            count = self._failures.pop(client, (0, 0.0))[0] + 1
            delay = 0.0 if count < FREE_FAILURES else min(MAX_WAIT, 2.0 ** (count - FREE_FAILURES))
            self._failures[client] = (count, self.clock() + delay)
            while len(self._failures) > _REMEMBERED:
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def install(app: Flask, names: set[str], password: str | None) -> None:
    """Guard every request of `app` (Host header, password, cross-site posts) and set its headers."""
    logins = app.config.setdefault("FAILED_LOGINS", FailedLogins())

    @app.before_request
    def guard():
        host_header = _host_of(request.headers.get("Host", ""))
        if host_header not in names and not _is_ip(host_header):
            abort(400, "this page does not answer to that host name (start `inspector serve` with "
                       "--host or --allow-host NAME to allow it)")
        if password is not None:
            client = request.remote_addr or "?"
            wait = logins.wait(client)
            if wait > 0:
                return Response(f"too many wrong passwords: try again in {wait:.0f} s\n", 429,
                                {"Retry-After": str(max(1, math.ceil(wait)))})
            auth = request.authorization
            given = auth.password if auth is not None and auth.type == "basic" else None
            if not given or not secrets.compare_digest(given.encode(), password.encode()):
                if given:  # a browser's first request carries no password: not a guess
                    logins.failed(client)
                return Response("password required\n", 401, {"WWW-Authenticate": 'Basic realm="inspector QA"'})
            logins.succeeded(client)
        if request.method == "POST":
            source = request.headers.get("Origin") or request.headers.get("Referer")
            if source is not None and urlsplit(source).netloc.lower() != request.headers.get("Host", "").lower():
                abort(403, "a form post from another site is refused")

    @app.after_request
    def headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        response.headers["Referrer-Policy"] = "same-origin"
        return response


def check_form_token(given: str, token: str) -> None:
    """A form post must carry the page's per-process token."""
    if not secrets.compare_digest(given, token):
        abort(403, "stale or missing form token: reload the page")
