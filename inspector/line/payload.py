"""The verdict message every line output sends: one JSON object, versioned by `schema`.

`verdict.schema.json` beside this module is its JSON Schema (docs/line.md shows an example).
A consumer dedupes on `id`: delivery is at least once.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..daemon.outputs import Verdict

log = logging.getLogger("inspector.line")

SCHEMA = "inspector.verdict/2"  # 2: with the hot regions
SCHEMA_FILE = Path(__file__).with_name("verdict.schema.json")


def utc_text(moment: datetime | None) -> str | None:
    """A naive-UTC or aware time as ISO 8601 UTC with milliseconds: 2026-12-03T10:15:02.123Z."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


def is_late(verdict: Verdict, sent_at: datetime, deadline_ms: float | None) -> bool:
    """Sent later than `deadline_ms` after the file was complete: the reject gate has passed."""
    if deadline_ms is None or verdict.received_at is None:
        return False
    return (sent_at - verdict.received_at).total_seconds() * 1000.0 > deadline_ms


def say_late(verdict: Verdict, sent_at: datetime, deadline_ms: float) -> None:
    log.warning("late: %s (id %d) sent %.0f ms after it was complete, over the deadline of %.0f ms; the reject "
                "gate has passed", verdict.source_name, verdict.inspection_id,
                (sent_at - verdict.received_at).total_seconds() * 1000, deadline_ms)


def _relative(path: str | None, out: Path) -> str | None:
    """A picture's path relative to the daemon's --out (as the QA page serves it), else as stored."""
    if not path:
        return None
    # The daemon names its files under its absolute --out: the prefix is cut as relpath would
    # cut it, without relpath's normalising (four paths in every message), when no `.` or `..`
    # part or doubled slash needs it.
    prefix = os.path.join(str(out), "")
    rest = path[len(prefix) - 1:]
    if path.startswith(prefix) and "/." not in rest and "//" not in path and os.sep == "/":
        return path[len(prefix):]
    try:
        return Path(os.path.relpath(path, out)).as_posix() if Path(path).is_relative_to(out) else path
    except ValueError:
        return path


def payload(verdict: Verdict, out: Path, sent_at: datetime, deadline_ms: float | None = None) -> dict[str, Any]:
    """The message for one verdict; `sent_at` naive UTC."""
    return {
        "schema": SCHEMA,
        "id": verdict.inspection_id,
        "station": verdict.station,
        "source_name": verdict.source_name,
        "verdict": verdict.verdict,
        "error": verdict.error_reason if verdict.verdict == "error" else None,
        "score": verdict.score,
        "threshold": verdict.threshold,
        "model": {"name": verdict.model_name, "fingerprint": verdict.model_fingerprint},
        "times": {"complete": utc_text(verdict.received_at), "judged": utc_text(verdict.scored_at),
                  "sent": utc_text(sent_at)},
        "late": is_late(verdict, sent_at, deadline_ms),
        "pictures": {"image": _relative(verdict.stored_path, out), "heatmap": _relative(verdict.heatmap_path, out),
                     "overlay": _relative(verdict.overlay_path, out),
                     "crop_overlay": _relative(verdict.crop_overlay_path, out)},
        "regions": verdict.regions or [],
    }


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
