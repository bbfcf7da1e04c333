"""`compact`: strided convolutions down, a narrow bottleneck, transposed convolutions up.

Every encoder stage halves the resolution and the decoder narrows as it grows back, so no wide
layer runs at full resolution. Output: a reconstruction of the input.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from ...validation import check_range
from ..components.autoencoder import AutoencoderSettings
from ..spec import RECONSTRUCTION, ModelSpec


@dataclass(frozen=True)
class CompactSettings(AutoencoderSettings):
    # Filters of each encoder stage.
    filters: tuple[int, ...] = (16, 32, 64)
    latent_filters: int = 32
    # Channels each decoder stage outputs; empty mirrors `filters`. Narrow stages at high
    # resolution keep the decoder cheap: it does most of the arithmetic.
    decoder_filters: tuple[int, ...] = ()

    def validate(self, where: str) -> None:
        super().validate(where)
        if not self.filters or any(not _channels(f) for f in self.filters):
            raise ConfigError(f"{where}.filters must be a non-empty list of integers in 1..512")
        if len(self.filters) > 5:
            raise ConfigError(f"{where}.filters has at most 5 stages, got {len(self.filters)}")
        if self.decoder_filters and (
            len(self.decoder_filters) != len(self.filters) or any(not _channels(f) for f in self.decoder_filters)
        ):
            raise ConfigError(f"{where}.decoder_filters must be empty or {len(self.filters)} integers in 1..512")
        check_range(f"{where}.latent_filters", self.latent_filters, 1, 512)


def _channels(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 512


SPEC = ModelSpec(name="compact", output=RECONSTRUCTION, settings=CompactSettings, training=f"{__name__}.fit")
