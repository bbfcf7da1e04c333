"""The daemon's settings (`inspector watch`'s options)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from .. import drift
from ..inference import default_threads


@dataclass
class WatchOptions:
    out: Path
    batch: int = 32
    on_done: str = "move"  # move | keep
    pictures: str = "all"  # all | flagged | none: which judged parts get their heatmap and overlays
    polling: bool = False
    settle: float = 0.5  # seconds a file's size and mtime must stay unchanged (formats we cannot check)
    quick_settle: float = 0.05  # the same for a PNG/JPEG that also has its end marker
    incomplete_timeout: float = 10.0  # an unfinished-looking file is judged after this long unchanged
    rescan_every: float = 10.0  # safety net for missed events
    heartbeat_every: float = 10.0  # how often the daemon's run record says it is still at work
    summary_every: float = 60.0
    threads: int = field(default_factory=default_threads)  # decoding, hashing, pictures
    # Decode and prepare files in as many worker processes (`decode_workers`), not threads:
    # `inspector watch` does by default.
    decode_processes: bool = False
    station: str = field(default_factory=socket.gethostname)  # recorded with every inspection
    claim_timeout: float = 60.0  # a claim from another host older than this is taken over
    drift_window: int = drift.DEFAULT_WINDOW  # parts the drift monitor looks back on (0: off)
    drift_limit: float = drift.DEFAULT_LIMIT  # shift of passed scores, in calibration bands, that is drift
    retry_every: float = 1.0  # seconds between tries of a durable output that failed (backing off)
