"""`patch_memory`: a part is compared, patch by patch, with the most similar good parts.

Works on pose-normalised images (every part lies at the same place and angle, head left), so a
patch of a new part only needs comparing with the patches at about the same place on the good
parts the model remembers. Its Keras graph outputs the error map itself: the per-pixel distance
to the closest good patch. "Training" is remembering, calibrated by cross-validation (`fit`);
the layer that serves it is in `layers`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from ...validation import check_range
from ..spec import ERROR_MAP, ModelSpec


@dataclass(frozen=True)
class PatchMemorySettings:
    # How many remembered good images each part is compared with, how far (pixels) a patch may
    # move to find its match, and the patch side (pixels, even).
    neighbours: int = 10
    search_radius: int = 2
    patch_size: int = 4

    def validate(self, where: str) -> None:
        check_range(f"{where}.neighbours", self.neighbours, 1, 1000)
        check_range(f"{where}.search_radius", self.search_radius, 0, 8)
        check_range(f"{where}.patch_size", self.patch_size, 2, 32)
        if self.patch_size % 2:
            raise ConfigError(f"'{where}.patch_size' must be even; got {self.patch_size}")


SPEC = ModelSpec(
    name="patch_memory",
    output=ERROR_MAP,
    settings=PatchMemorySettings,
    training=f"{__name__}.fit",
    serving=f"{__name__}.layers",
    no_epochs_announcement="Remembering {count} good images (patch memory: no epochs)",
    no_epochs_summary="none (patch memory remembers the images)",
)
