"""What every autoencoder (a model trained to reconstruct good images) takes in [model].

Shared by `compact`, `seed003`, `vae`, `denoising_autoencoder` and any later reconstruction
model; those that train with Keras' `fit` on a held-out split use
`autoencoder_fit.fit_autoencoder`. Imports no TensorFlow: the registry validates with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from ...validation import check_range


@dataclass(frozen=True)
class AutoencoderSettings:
    epochs: int = 30
    batch_size: int = 16
    learning_rate: float = 1e-3

    def validate(self, where: str) -> None:
        check_range(f"{where}.epochs", self.epochs, 1, 10_000)
        check_range(f"{where}.batch_size", self.batch_size, 1, 1024)
        check_range(f"{where}.learning_rate", self.learning_rate, 1e-7, 1.0)


def held_out_count(count: int, fraction: float) -> int:
    """How many of `count` good images `holdout_fraction` holds out (at least 2, at most count - 2)."""
    return min(count - 2, max(2, int(round(count * fraction))))


def check_filters(where: str, filters: tuple[int, ...], most: int) -> None:
    """`filters`: 1 to `most` stages, each a channel count in 1..512."""
    if not filters or len(filters) > most or any(
            not isinstance(f, int) or isinstance(f, bool) or not 1 <= f <= 512 for f in filters):
        raise ConfigError(f"{where} must be 1 to {most} integers in 1..512")
