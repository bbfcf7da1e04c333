"""What one image format is to the rest of the program: an `ImageFormat`, one entry of the table
in `inspector.formats.table`, and the states its completeness rule answers with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

COMPLETE = "complete"
INCOMPLETE = "incomplete"  # may still be written: wait for the rest
UNKNOWN = "unknown"  # no rule for this content (another format, or a structure broken for good)
UNREADABLE = "not a readable image (corrupt, truncated or unsupported format)"

# bytes -> (COMPLETE, INCOMPLETE or UNKNOWN, and in words what is missing when incomplete)
CompletenessRule = Callable[[bytes], tuple[str, str]]
# bytes -> (width, height) the header declares, or None when it cannot be told
DeclaredSize = Callable[[bytes], "tuple[int, int] | None"]


@dataclass(frozen=True)
class ImageFormat:
    """One image format: how its files are named and recognised, and what its own structure
    says without decoding it.

    - `name`: for people ("PNG"), in messages and help texts.
    - `suffixes`: file name suffixes, lower case, the usual one first (".png",).
    - `signatures`: the byte prefixes its files start with; any one of them recognises it.
    - `media_type`: what its files are served as ("image/png").
    - `completeness`: whether a file is all there (see `CompletenessRule`): a writer may pause
      anywhere, for any time. None: no rule, the file is taken once it has settled.
    - `declared_size`: (width, height) from the header (see `DeclaredSize`).
    - `fast_decoder`: bytes -> a 2-D grey frame, or None to leave the file to OpenCV.
    - `refusal`: bytes -> why the file is refused before any decoder sees it (plainly cut
      short, which OpenCV's decoder would fail on too, printing on stderr; or built to make a
      decoder work far beyond what its header declares), or None.
    """

    name: str
    suffixes: tuple[str, ...]
    signatures: tuple[bytes, ...]
    media_type: str
    completeness: CompletenessRule | None
    declared_size: DeclaredSize
    fast_decoder: Callable[[bytes], np.ndarray | None] | None = None
    refusal: Callable[[bytes], str | None] | None = None

    def recognises(self, data: bytes) -> bool:
        """Whether `data` starts with one of this format's signatures."""
        return data.startswith(self.signatures)
