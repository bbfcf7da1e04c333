"""Building and training `seed003` (the shared autoencoder loop)."""

from __future__ import annotations

from functools import partial

from ...errors import ConfigError
from ...tf_setup import keras
from ..components.autoencoder import AutoencoderSettings
from ..components.autoencoder_fit import compiled_for_training, fit_autoencoder, square_size, untrained


def build(settings: AutoencoderSettings, shape: tuple[int, int]) -> "keras.Model":
    """The notebook's model, untrained, compiled with MSE loss and Adam.

    Two max-pools take 200 -> 50; three stride-2 transposed convolutions go 50 -> 400 and a
    final stride-2 convolution brings it back to 200.
    """
    size = square_size(shape, "seed003")
    if size % 4:
        raise ConfigError(f"seed003 needs an image size divisible by 4, got {size}")
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input(shape=(size, size, 1)),
            layers.Conv2D(32, (4, 4), activation="relu", padding="same"),
            layers.MaxPooling2D((2, 2), padding="same"),
            layers.Conv2D(16, (4, 4), activation="relu", padding="same"),
            layers.MaxPooling2D((2, 2), padding="same"),
            layers.Conv2D(8, (4, 4), activation="relu", padding="same"),
            layers.Conv2DTranspose(8, 3, strides=2, activation="relu", padding="same"),
            layers.Conv2DTranspose(16, 3, strides=2, activation="relu", padding="same"),
            layers.Conv2DTranspose(32, 3, strides=2, activation="relu", padding="same"),
            layers.Conv2D(1, 3, strides=2, activation="sigmoid", padding="same"),
        ],
        name="seed003",
    )
    return compiled_for_training(model, settings)


# Trained by the shared autoencoder loop; untrained weights cost as much to run as trained ones.
fit = partial(fit_autoencoder, build)
benchmark_model = partial(untrained, build)
