"""A file of a batch whose content this daemon claimed, as the batch and the outputs see it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..inference import Result
from ..pictures import PicturePaths
from .intake import Arrival


@dataclass
class ClaimedPart:
    """A file of this batch whose content this daemon claimed: it is this daemon's to judge."""

    arrival: Arrival
    row_id: int
    received_at: datetime
    digest: str  # the content hash it was claimed by
    result: Result | None = None
    pictures_ms: float = 0.0  # writing its pictures took this long
    pictures: PicturePaths | None = None  # the pictures written for it, which its row names

    @property
    def path(self) -> Path:
        return self.arrival.path

    @property
    def error(self) -> str | None:
        return self.arrival.error if self.result is None else self.result.error
