"""Where the time goes while images are judged: a running total per stage, across threads.

Every stage an image passes through (reading the file, hashing, claiming, decoding,
preprocessing, the model, scoring, pictures, committing, moving) adds its time here;
`inspector watch --profile FILE` writes the totals when it stops, and `inspector benchmark`
prints them per image, so a user sees the budget.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

# The stages in the order an image meets them.
STAGES = ("read", "hash", "claim", "decode", "preprocess", "model", "score", "pictures", "commit", "move")


class StageTimes:
    """Seconds, images and the longest run of each stage, added to from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = {}
        self._images: dict[str, int] = {}
        self._longest: dict[str, float] = {}

    def add(self, stage: str, seconds: float, images: int = 1) -> None:
        with self._lock:
            self._seconds[stage] = self._seconds.get(stage, 0.0) + seconds
            self._images[stage] = self._images.get(stage, 0) + images
            self._longest[stage] = max(self._longest.get(stage, 0.0), seconds)

    @contextmanager
    def stage(self, name: str, images: int = 1) -> Iterator[None]:
        """Time a block of work on `images` images (a batch counts each of its images)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started, images)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per stage: total milliseconds, images, milliseconds per image (time of the stage summed
        over threads: stages running in parallel can add up to more than the wall time), and the
        longest single run of it (one batch, or one image) in milliseconds."""
        with self._lock:
            names = [s for s in STAGES if s in self._seconds] + sorted(set(self._seconds) - set(STAGES))
            return {name: {"total_ms": self._seconds[name] * 1000, "images": self._images[name],
                           "ms_per_image": self._seconds[name] * 1000 / max(self._images[name], 1),
                           "longest_ms": self._longest[name] * 1000}
                    for name in names}


# The process's one set of totals: every stage adds to it, `watch --profile` writes it.
STAGE_TIMES = StageTimes()
