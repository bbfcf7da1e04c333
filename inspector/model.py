"""Model architectures by name (autoencoders, patch memory), and the training loop.

Serving code (`inference`, the daemon) never imports this module: a trained model is loaded
from its bundle, not rebuilt.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .config import ModelConfig
from .tf_setup import keras


def build_model(config: ModelConfig, shape: tuple[int, int], memory: np.ndarray | None = None) -> "keras.Model":
    """The model named by `config.architecture` for images of `shape` (height, width).

    Autoencoders come compiled with MSE loss and Adam, untrained; patch memory remembers
    `memory` (N, height, width), the good images, and needs no training.
    """
    if config.architecture == "patch_memory":
        if memory is None:
            raise ValueError("patch_memory needs the good images to remember")
        from .memory import build_patch_memory

        return build_patch_memory(memory, config.neighbours, config.search_radius, config.patch_size)
    height, size = shape
    if height != size:
        raise ValueError(f"{config.architecture} needs square images, got {height}x{size}")
    builders = {"seed003": _seed003, "compact": _compact}
    model = builders[config.architecture](config, size)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate), loss="mse")
    return model


def _seed003(config: ModelConfig, size: int) -> "keras.Model":
    """The screw notebook's model, kept unchanged as the reference.

    Two max-pools take 200 -> 50; three stride-2 transposed convolutions go 50 -> 400 and a
    final stride-2 convolution brings it back to 200.
    """
    if size % 4:
        raise ValueError(f"seed003 needs an image size divisible by 4, got {size}")
    layers = keras.layers
    return keras.Sequential(
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


def _compact(config: ModelConfig, size: int) -> "keras.Model":
    """Our default: strided convolutions down, a narrow bottleneck, transposed convolutions up.

    Every encoder stage halves the resolution and the decoder narrows as it grows back, so no
    wide layer runs at full resolution; seed003 runs 32 channels at 400x400.
    """
    stages = len(config.filters)
    if size % (2**stages):
        raise ValueError(f"compact with {stages} stages needs a size divisible by {2**stages}, got {size}")
    layers = keras.layers
    inputs = keras.Input(shape=(size, size, 1))
    x = inputs
    for filters in config.filters:
        x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(config.latent_filters, 3, padding="same", activation="relu")(x)
    for filters in config.decoder_filters or tuple(reversed(config.filters)):
        x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="relu")(x)
    outputs = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="compact")


def train(
    images: np.ndarray,
    config: ModelConfig,
    seed: int,
    epochs: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple["keras.Model", list[float]]:
    """Train a model on good `images` (N, H, W); returns it and its loss per epoch.

    An autoencoder learns to reconstruct them; same seed and same images give the same weights
    (op determinism is switched on). Patch memory just remembers them (no epochs, no loss).
    """
    import tensorflow as tf

    if config.architecture == "patch_memory":
        return build_model(config, images.shape[1:], memory=images), []
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build_model(config, images.shape[1:])
    x = images[..., None].astype(np.float32)
    callbacks = []
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch(epoch, float(logs["loss"]))
        ))
    history = model.fit(
        x, x,
        epochs=epochs or config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    return model, [float(v) for v in history.history["loss"]]
