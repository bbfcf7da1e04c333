"""Building and training `compact` (the shared autoencoder loop)."""

from __future__ import annotations

from functools import partial

from ...errors import ConfigError
from ...tf_setup import keras
from ..components.autoencoder_fit import compiled_for_training, fit_autoencoder, square_size, untrained
from . import CompactSettings


def build(settings: CompactSettings, shape: tuple[int, int]) -> "keras.Model":
    """The untrained model for images of `shape`, compiled with MSE loss and Adam."""
    size = square_size(shape, "compact")
    stages = len(settings.filters)
    if size % (2**stages):
        raise ConfigError(f"compact with {stages} stages needs a size divisible by {2**stages}, got {size}")
    layers = keras.layers
    inputs = keras.Input(shape=(size, size, 1))
    x = inputs
    for filters in settings.filters:
        x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(settings.latent_filters, 3, padding="same", activation="relu")(x)
    for filters in settings.decoder_filters or tuple(reversed(settings.filters)):
        x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="relu")(x)
    outputs = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    return compiled_for_training(keras.Model(inputs, outputs, name="compact"), settings)


# Trained by the shared autoencoder loop; untrained weights cost as much to run as trained ones.
fit = partial(fit_autoencoder, build)
benchmark_model = partial(untrained, build)
