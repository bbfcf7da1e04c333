"""Files out of the inbox once their verdict is committed; every file the daemon removes from the
inbox is accounted for.

- Judged: to OUT/archive/<date>/ (or left in the inbox with --on-done keep); rejected: to
  OUT/rejected/<date>/; a second copy of content judged already: to OUT/duplicates/<date>/,
  with a WARNING and a count.
- A file that left the inbox before its move (renamed or deleted by another program just after
  it was read): the bytes judged are written to where its row says the file is, so the row
  never names a file that does not exist. When it was renamed inside the inbox, the file under
  its new name (the same inode, the same content) is not a duplicate: the row takes its new
  name and the file leaves the inbox.
- A finished row's file found again under the same name: the judged file itself when a crash
  came before its move (the move is finished), or a copy sent again after the first was
  archived (a duplicate, set aside as one). After a crash between a copy to another filesystem
  and the unlink, the file in the inbox is such a copy too: set aside the same way, nothing lost.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..names import output_name, printable
from ..store import utcnow
from ..timing import STAGE_TIMES
from .intake import Arrival, Intake
from .moves import GONE, copy_out, move_out, write_out
from .outputs import Output, Verdict
from .part import ClaimedPart
from .standard_outputs import day

log = logging.getLogger("inspector.watch")

REMEMBERED = 1000  # files that vanished before their move, remembered to recognise their new name


@dataclass(frozen=True)
class _Vanished:
    inode: int
    row_id: int


class Archive(Output):
    """The move out of the inbox after the commit (the module docstring says where each file goes)."""

    name = "archive"

    def __init__(self, out: Path, on_done: str, intake: Intake):
        self.out, self.on_done, self.intake = out, on_done, intake
        self._vanished: OrderedDict[str, _Vanished] = OrderedDict()  # content hash -> the file gone

    def destination(self, part: ClaimedPart, kind: str) -> Path:
        return self.out / kind / day(part.received_at) / output_name(f"{part.row_id}_", part.path.name)

    def deliver(self, verdicts: Sequence[Verdict]) -> None:
        for verdict in verdicts:
            if verdict.part is not None:
                with STAGE_TIMES.stage("move"):
                    self.finish(verdict.part.arrival, verdict.part.digest, verdict.status, verdict.stored_path,
                                verdict.inspection_id)

    def finish(self, arrival: Arrival, digest: str, status: str, stored_path: str | None, row_id: int) -> None:
        """After the verdict is committed: move the file (rejects always), or remember it is kept."""
        if self.moves(status):
            self.set_aside(arrival, digest, Path(stored_path), row_id)
        else:
            self.intake.keep(arrival.path)

    def moves(self, status: str | None) -> bool:
        """Whether a file of this status leaves the inbox (rejects always; judged ones unless kept)."""
        return status == "error" or self.on_done == "move"

    def set_aside(self, arrival: Arrival, digest: str, target: Path, row_id: int | None = None) -> None:
        """Move a file out of the inbox to `target`, verified against the content it was judged by.

        A file rejected as unfinished may still be written (a writer pausing longer than
        --incomplete-timeout): a copy goes to `target` and the file stays in the inbox, held; if
        it changes, its new content is judged; if not, it is removed after another timeout.
        """
        verify = digest if arrival.data is not None else None
        if arrival.unfinished:
            if copy_out(arrival.path, target, verify):
                self.intake.hold(arrival.path, (target, verify))
        elif move_out(arrival.path, target, verify, arrival.stamp) == GONE and not os.path.lexists(target):
            self._gone_before_its_move(arrival, digest, target, row_id)

    def _gone_before_its_move(self, arrival: Arrival, digest: str, target: Path, row_id: int | None) -> None:
        name = printable(arrival.path.name)
        if arrival.data is None:
            log.warning("%s left the inbox before it was moved; its row %s names %s, which does not exist",
                        name, row_id, target)
            return
        if write_out(arrival.data, target, digest):
            log.warning("%s left the inbox (renamed or deleted by another program) before it was moved; "
                        "the bytes judged are in %s", name, target)
        if row_id is not None and arrival.stamp is not None:
            self._vanished[digest] = _Vanished(arrival.stamp[2], row_id)
            while len(self._vanished) > REMEMBERED:
                self._vanished.popitem(last=False)

    def renamed(self, arrival: Arrival, digest: str, row_id: int | None) -> bool:
        """Whether `arrival` is a file of row `row_id` that vanished before its move, renamed
        inside the inbox: the same content and the same inode."""
        gone = self._vanished.get(digest)
        try:
            inode = os.lstat(arrival.path).st_ino
        except OSError:
            return False
        if gone is None or gone.row_id != row_id or inode != gone.inode:
            return False
        del self._vanished[digest]
        return True

    def refound(self, arrival: Arrival, digest: str, status: str | None, stored_path: str | None,
                row_id: int, first_name: str | None) -> bool:
        """A finished row's file found again under the same name: finish its move, or, when the
        file judged is archived already, set the new copy aside as a duplicate. True for a
        duplicate."""
        if not self.moves(status):
            self.intake.keep(arrival.path)
            return False
        target = Path(stored_path)
        try:
            archived = os.lstat(target)
            here = os.lstat(arrival.path)
        except FileNotFoundError:
            archived = here = None
        if archived is not None and not os.path.samestat(archived, here):
            self.duplicate(arrival, digest, row_id, first_name or "", status == "error")
            return True
        self.set_aside(arrival, digest, target, row_id)
        return False

    def duplicate(self, arrival: Arrival, digest: str, row_id: int, first_name: str, of_error: bool) -> None:
        """A second copy of content judged already goes to duplicates/ (of a rejected file: to
        rejected/, a second empty file say)."""
        folder = "rejected" if of_error else "duplicates"
        name = arrival.path.name
        self.set_aside(arrival, digest, self.out / folder / day(utcnow()) / output_name(f"{row_id}_dup_", name))
        log.warning("%s has the same content as inspection %d (%s); moved to %s/", printable(name), row_id,
                    first_name, folder)
