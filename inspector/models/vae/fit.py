"""Building and training `vae`: hold out good images, maximise the evidence lower bound on the
rest with a custom loop (the reparameterisation trick), score the held-out ones."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from ...tf_setup import keras
from ..components.autoencoder_fit import check_sides, seeded, split_holdout
from ..components.running import score_arrays
from ..spec import Fitted
from . import VaeSettings

if TYPE_CHECKING:
    from ...settings import Pipeline


def parts(settings: VaeSettings, shape: tuple[int, int]):
    """(encoder: image -> (mean, log variance), decoder: latent -> image)."""
    height, width = shape
    stages = len(settings.filters)
    check_sides("vae", shape, stages)
    layers = keras.layers
    image = keras.Input(shape=(height, width, 1))
    x = image
    for filters in settings.filters:
        x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    mean = layers.Dense(settings.latent_dim, name="mean")(x)
    log_variance = layers.Dense(settings.latent_dim, name="log_variance")(x)
    encoder = keras.Model(image, [mean, log_variance], name="encoder")

    small = (height // 2**stages, width // 2**stages, settings.filters[-1])
    latent = keras.Input(shape=(settings.latent_dim,))
    y = layers.Dense(int(np.prod(small)), activation="relu")(latent)
    y = layers.Reshape(small)(y)
    for filters in reversed(settings.filters):
        y = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="relu")(y)
    decoder = keras.Model(latent, layers.Conv2D(1, 3, padding="same", activation="sigmoid")(y), name="decoder")
    return encoder, decoder


def served(encoder, decoder) -> "keras.Model":
    """Image -> the decoder's image of the encoder's mean: deterministic, standard layers only."""
    image = keras.Input(shape=encoder.input_shape[1:])
    return keras.Model(image, decoder(encoder(image)[0]), name="vae")


def build(settings: VaeSettings, shape: tuple[int, int]) -> "keras.Model":
    return served(*parts(settings, shape))


def benchmark_model(arrays: np.ndarray, pipeline: Pipeline) -> "keras.Model":
    return build(pipeline.model.settings, arrays.shape[1:])


def fit(
    arrays: np.ndarray,
    pipeline: Pipeline,
    seed: int,
    epochs: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    variants: np.ndarray | None = None,  # nuisance copies: not used
) -> Fitted:
    import tensorflow as tf

    settings = pipeline.model.settings
    epochs = epochs or settings.epochs
    train_idx, hold_idx = split_holdout(len(arrays), pipeline.model.holdout_fraction, seed)
    started = time.perf_counter()
    seeded(seed)
    encoder, decoder = parts(settings, arrays.shape[1:])
    weights = encoder.trainable_variables + decoder.trainable_variables
    optimizer = keras.optimizers.Adam(learning_rate=settings.learning_rate)
    generator = tf.random.Generator.from_seed(seed)

    @tf.function(reduce_retracing=True)
    def step(x):
        with tf.GradientTape() as tape:
            mean, log_variance = encoder(x, training=True)
            z = mean + tf.exp(0.5 * log_variance) * generator.normal(tf.shape(mean))
            reconstruction = decoder(z, training=True)
            error = tf.reduce_sum(tf.square(x - reconstruction), axis=[1, 2, 3])
            kl = -0.5 * tf.reduce_sum(1 + log_variance - tf.square(mean) - tf.exp(log_variance), axis=1)
            loss = tf.reduce_mean(error + settings.beta * kl)
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    x = arrays[train_idx][..., None].astype(np.float32)
    rng = np.random.default_rng(seed)
    batch = min(settings.batch_size, len(x))
    losses = []
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        total = [float(step(x[order[i:i + batch]])) for i in range(0, len(x) - batch + 1, batch)]
        losses.append(float(np.mean(total)))
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    model = served(encoder, decoder)
    seconds = time.perf_counter() - started
    scores, maps = score_arrays(model, arrays[hold_idx], pipeline.scoring)
    return Fitted(model=model, scores=scores, maps=maps, calibrated_on=f"{len(hold_idx)} held-out good images",
                  trained_on=len(train_idx), held_out=len(hold_idx), epochs=epochs, losses=losses, seconds=seconds)
