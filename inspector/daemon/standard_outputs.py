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
from ..formats import media_type
from ..names import printable
from ..pictures import PicturePaths, picture_paths_bounded
from ..timing import STAGE_TIMES
from .outputs import Output, Verdict
from .part import ClaimedPart

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from ..inference import Inferencer, Result
    from ..store import Store
    from .options import WatchOptions

log = logging.getLogger("inspector.watch")

def day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d")


# The photos QA's page can show as they are: browsers show no TIFF.
BROWSERS_SHOW = ("image/png", "image/jpeg", "image/bmp")

# Which judged parts get pictures (`inspector watch --pictures`).
PICTURES_FOR = ("all", "flagged", "none")


class Pictures(Output):
    """The heatmap of each judged part (`which`: every one, only those judged defects, or
    none), its overlay on the photo (see below), and for a defect the overlay on the upright
    part, under OUT/heatmaps/<date>/, written (in the I/O threads) before the row that names
    them is committed. A picture not written is not named in the row.

    The upright part's overlay is for QA reviewing what was flagged; for a part judged ok it
    would cost a third of the pictures' time (the noisiest of the three to compress) for a
    view the photo's overlay and the heatmap already give. The overlay on the photo of a part
    judged ok that shows no heat would be the photo itself, shrunk, the crop outlined (half of
    such a part's pictures' time): it is not drawn when QA's page can show the photo instead,
    that is when the photo is archived under --out (`watch --on-done move`) in a format browsers
    show (PNG, JPEG, BMP).
    """

    name = "pictures"

    def __init__(self, out: Path, pool: "Executor", inferencer: Callable[[], "Inferencer"], options: "WatchOptions"):
        if options.pictures not in PICTURES_FOR:
            raise ValueError(f"pictures for {options.pictures!r}: one of {', '.join(PICTURES_FOR)}")
        self.out, self.pool, self.inferencer, self.which = out, pool, inferencer, options.pictures
        self.photos_archived = options.on_done == "move"  # under --out, where QA's page serves them

    def wanted(self, part: ClaimedPart) -> bool:
        """Whether this judged part gets pictures."""
        return part.error is None and (self.which == "all"
                                       or self.which == "flagged" and part.result.verdict == "defect")

    def paths(self, part: ClaimedPart) -> PicturePaths | None:
        """Where its heatmap, its overlay on the photo (unless the class docstring says not) and
        (a defect's) its overlay on the upright part go; None for a part that gets none."""
        if not self.wanted(part):
            return None
        paths = picture_paths_bounded(self.out / "heatmaps" / day(part.received_at), f"{part.row_id}_", part.path.name)
        if part.result.verdict == "defect":
            return paths
        photo_shown = self.photos_archived and media_type(part.arrival.data or b"") in BROWSERS_SHOW
        return paths._replace(crop=None, overlay=None if photo_shown and not self.inferencer().shows_heat(part.result)
                              else paths.overlay)

    def prepare(self, parts: Sequence[ClaimedPart]) -> None:
        """Write each part's pictures; `part.pictures` says which, for its row to name."""
        jobs = {}
        for part in parts:
            part.pictures = self.paths(part)
            if part.pictures is not None:
                jobs[id(part)] = self.pool.submit(self.write, part.result, *part.pictures)
        for part in parts:
            if id(part) in jobs:
                part.pictures_ms = jobs[id(part)].result()  # on disk before the row that names them

    def write(self, result: "Result", heat: Path, over: Path, crop: Path | None) -> float:
        """Write the heatmap and the overlays; returns the milliseconds it took."""
        started = time.perf_counter()
        with STAGE_TIMES.stage("pictures"):
            self.inferencer().write_pictures(result, heat, over, crop)
        return (time.perf_counter() - started) * 1000


def _counted(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def _span(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@dataclass
class Counters:
    """What the daemon judged since it started, and since the last summary line."""

    images: int = 0
    defects: int = 0
    errors: int = 0
    duplicates: int = 0
    started: float = field(default_factory=time.monotonic)
    # The counts and the time of the last `interval_line`.
    _marked: tuple[int, int, int, int] = (0, 0, 0, 0)
    _marked_at: float | None = None

    def _counts(self) -> tuple[int, int, int, int]:
        return self.images, self.defects, self.errors, self.duplicates

    @staticmethod
    def _text(counts: tuple[int, int, int, int], seconds: float) -> str:
        images, defects, errors, duplicates = counts
        text = f"{_counted(images, 'image')}, {_counted(defects, 'defect')}, {_counted(errors, 'error')}, "
        if duplicates:
            text += f"{_counted(duplicates, 'duplicate')}, "
        return text + f"{images / max(seconds, 1e-9):.2f} images/s"

    def line(self) -> str:
        """Since the start: `since start (5 min): 340 images, 3 defects, 1 error, 1.13 images/s`."""
        elapsed = time.monotonic() - self.started
        return f"since start ({_span(elapsed)}): {self._text(self._counts(), elapsed)}"

    def mark(self) -> None:
        """Start the first interval now (when the daemon starts watching)."""
        self._marked, self._marked_at = self._counts(), time.monotonic()

    def interval_line(self) -> str | None:
        """The summary of the time since the last call (or the start), then the whole run's;
        None when nothing came in meanwhile: an idle line is not told again and again."""
        now, counts = time.monotonic(), self._counts()
        since = self.started if self._marked_at is None else self._marked_at
        new = tuple(a - b for a, b in zip(counts, self._marked))
        self._marked, self._marked_at = counts, now
        if not any(new):
            return None
        return f"summary: last {_span(now - since)}: {self._text(new, now - since)}; {self.line()}"


class LogLines(Output):
    """Counts every verdict for the summary lines; an error row is a WARNING, a defect an INFO
    line (QA and the line want to hear of each one), an ok verdict a DEBUG line (-v)."""

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
                defect = v.verdict == "defect"
                self.counters.defects += defect
                log.log(logging.INFO if defect else logging.DEBUG, "%s: %s score %.6g threshold %.6g (inspection %d)",
                        v.source_name, v.verdict, v.score, v.threshold, v.inspection_id)


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
