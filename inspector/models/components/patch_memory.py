"""What the patch memory takes in [model]: shared by `patch_memory` and by
`denoising_autoencoder`, whose second opinion is a patch memory.

Imports no TensorFlow: the registry validates with it. The layer is `patch_memory_layer`,
filling a memory and learning its statistics `patch_memory_fit`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from ...validation import check_range


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
