"""`vae`: a convolutional variational autoencoder, as in the reference notebooks.

The encoder maps an image to a Gaussian over a small latent space, the decoder maps a latent
point back to an image; training maximises the evidence lower bound (reconstruction error +
`beta` x the KL divergence from a unit Gaussian). Served deterministically: the encoder's
mean goes through the decoder. Output: a reconstruction, scored by its error against the input.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...validation import check_range
from ..components.autoencoder import AutoencoderSettings, check_filters
from ..spec import RECONSTRUCTION, ModelSpec


@dataclass(frozen=True)
class VaeSettings(AutoencoderSettings):
    epochs: int = 60
    # Encoder stages (strided 3x3 convolutions); the decoder mirrors them.
    filters: tuple[int, ...] = (32, 64, 128)
    latent_dim: int = 128
    # Weight of the KL term against the summed squared reconstruction error.
    beta: float = 1.0

    def validate(self, where: str) -> None:
        super().validate(where)
        check_filters(f"{where}.filters", self.filters, 5)
        check_range(f"{where}.latent_dim", self.latent_dim, 1, 4096)
        check_range(f"{where}.beta", self.beta, 0.0, 1000.0)


SPEC = ModelSpec(name="vae", output=RECONSTRUCTION, settings=VaeSettings, training=f"{__name__}.fit")
