"""The outputs every daemon has: the pictures, the drift monitor, the log (and the archive
move, in `archive`).

Each is an `outputs.Output`; none is durable (see `outputs` for what that means): the pictures are
written before the commit that names them, and the drift window and the counters are this
process's own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .. import drift
from ..names import printable
from ..pictures import PicturePaths, picture_paths_bounded
from ..timing import STAGE_TIMES
from .outputs import Output, Verdict
from .part import ClaimedPart

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from ..inference import Inferencer, Result
    from ..store import Store

log = logging.getLogger("inspector.watch")

def day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d")


class Pictures(Output):
    """The heatmap and the overlays of every judged part, under OUT/heatmaps/<date>/, written
    (in the I/O threads) before the row that names them is committed."""

    name = "pictures"

    def __init__(self, out: Path, pool: "Executor", inferencer: Callable[[], "Inferencer"]):
        self.out, self.pool, self.inferencer = out, pool, inferencer

    def paths(self, part: ClaimedPart) -> PicturePaths:
        """Where its heatmap, its overlay on the photo and its overlay on the upright part go."""
        return picture_paths_bounded(self.out / "heatmaps" / day(part.received_at), f"{part.row_id}_", part.path.name)

    def prepare(self, parts: Sequence[ClaimedPart]) -> None:
        jobs = {id(p): self.pool.submit(self.write, p.result, *self.paths(p)) for p in parts if p.error is None}
        for part in parts:
            if id(part) in jobs:
                part.pictures_ms = jobs[id(part)].result()  # on disk before the row that names them

    def write(self, result: "Result", heat: Path, over: Path, crop: Path) -> float:
        """Write the heatmap and the overlays; returns the milliseconds it took."""
        started = time.perf_counter()
        with STAGE_TIMES.stage("pictures"):
            self.inferencer().write_pictures(result, heat, over, crop)
        return (time.perf_counter() - started) * 1000


@dataclass
class Counters:
    images: int = 0
    defects: int = 0
    errors: int = 0
    duplicates: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (f"summary: {self.images} images, {self.defects} defects, {self.errors} errors, "
                f"{self.duplicates} duplicates, {self.images / elapsed:.2f} images/s")


class LogLines(Output):
    """Counts every verdict for the summary line; an error row is a WARNING, each verdict a
    DEBUG line (-v)."""

    name = "log"

    def __init__(self, counters: Counters):
        self.counters = counters

    def deliver(self, verdicts: Sequence[Verdict]) -> None:
        for v in verdicts:
            self.counters.images += 1
            if v.status == "error":
                self.counters.errors += 1
                log.warning("%s: error: %s (inspection %d)", v.source_name, v.error_reason, v.inspection_id)
            else:
                self.counters.defects += v.verdict == "defect"
                log.debug("%s: %s score %.6g threshold %.6g (inspection %d)", v.source_name, v.verdict, v.score,
                          v.threshold, v.inspection_id)


class DriftWatch(Output):
    """The drift monitor of the model in service: every verdict goes into its window; one
    WARNING when the line drifts, one INFO line when it is back (`drift`)."""

    name = "drift"

    def __init__(self, store: "Store", station: str, window: int, limit: float):
        self.store, self.station, self.window, self.limit = store, station, window, limit
        self.monitor: drift.Monitor | None = None
        self.where = ""

    def use(self, reference: drift.Reference, model_id: int, model_name: str, fingerprint: str) -> None:
        """Judge drift against this model from now on, the window seeded with what this
        station's earlier daemons judged with it."""
        self.monitor = drift.Monitor(reference, self.window, self.limit)
        self.where = f"station {self.station}, model {model_name} ({fingerprint})"
        if self.window:
            passed, outcomes = drift.recent(self.store, self.station, model_id, self.window)
            self.monitor.passed.extend(passed)
            self.monitor.outcomes.extend(outcomes)

    def deliver(self, verdicts: Sequence[Verdict]) -> None:
        for v in verdicts:
            self.monitor.add(v.verdict, v.score, v.error_reason)
        change = self.monitor.check()
        if change is None:
            return
        state, assessment = change
        if state == "start":
            log.warning("drift: the line no longer looks like the calibration (%s): %s", self.where,
                        drift.summary(assessment))
        else:
            log.info("drift cleared (%s): %s", self.where, drift.summary(assessment))
