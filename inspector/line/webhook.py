"""A webhook: each verdict POSTed as the JSON payload; a 2xx answer means delivered, anything
else (or no answer within the timeout) leaves it in the outbox, retried in order."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

from ..daemon.outputs import Output, Verdict
from ..errors import ConfigError
from .payload import encode, payload, say_late


def hidden(url: str) -> str:
    """The URL as it may be logged: user information dropped."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl() \
        if parts.hostname else url


class WebhookOutput(Output):
    durable = True

    def __init__(self, url: str, out: Path, timeout: float = 5.0, deadline_ms: float | None = None,
                 name: str = "webhook"):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--webhook: expected an http:// or https:// URL, got {hidden(url)!r}")
        self.name, self.url, self.out = name, url, Path(os.path.abspath(out))
        self.timeout, self.deadline_ms = timeout, deadline_ms
        # Redirects are not followed: a 3xx is not the consumer taking the verdict.
        self._opener = urllib.request.build_opener(_NoRedirect)

    def deliver(self, verdicts: Sequence[Verdict]) -> list[int]:
        """POSTs each verdict in turn; returns the ids sent late. A failure raises: what was
        posted before it is posted again with the rest (consumers dedupe by id)."""
        late = []
        for verdict in verdicts:
            sent_at = datetime.now(timezone.utc).replace(tzinfo=None)
            message = payload(verdict, self.out, sent_at, self.deadline_ms)
            if message["late"]:
                late.append(verdict.inspection_id)
                say_late(verdict, sent_at, self.deadline_ms)
            request = urllib.request.Request(self.url, data=encode(message), method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "Idempotency-Key": str(verdict.inspection_id)})
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (OSError, ValueError) as exc:
                raise ConnectionError(f"webhook {hidden(self.url)}: {getattr(exc, 'reason', exc)}") from None
            if not 200 <= status < 300:
                raise ConnectionError(f"webhook {hidden(self.url)} answered {status}")
        return late


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
