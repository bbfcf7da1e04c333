"""`seed003`: the screw notebook's autoencoder, kept unchanged as the reference.

Its layers are fixed (Conv2D 32/16/8 with 4x4 kernels, two max-pools, three stride-2
transposed convolutions, a stride-2 sigmoid convolution); only training keys can be set.
Output: a reconstruction of the input.
"""

from __future__ import annotations

from ..components.autoencoder import AutoencoderSettings
from ..spec import RECONSTRUCTION, ModelSpec

SPEC = ModelSpec(name="seed003", output=RECONSTRUCTION, settings=AutoencoderSettings, training=f"{__name__}.fit")
