"""Training an autoencoder: hold out good images, learn to reconstruct the rest, score the held-out."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ...errors import ConfigError
from ...tf_setup import keras
from ..spec import Fitted
from .autoencoder import held_out_count
from .running import score_arrays

if TYPE_CHECKING:
    from ...settings import Pipeline

Builder = Callable[[Any, tuple[int, int]], "keras.Model"]


def split_holdout(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices for training and for calibration; the same seed gives the same split."""
    order = np.random.default_rng(seed).permutation(count)
    held = held_out_count(count, fraction)
    return np.sort(order[held:]), np.sort(order[:held])


def seeded(seed: int) -> None:
    """Same seed, same weights: Python's, NumPy's and TensorFlow's generators seeded, and
    TensorFlow's ops made deterministic."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def check_sides(architecture: str, shape: tuple[int, int], stages: int) -> None:
    """Each of `stages` halves both sides: they must be divisible by 2**stages."""
    height, width = shape
    if height % 2**stages or width % 2**stages:
        raise ConfigError(f"{architecture} with {stages} stages needs sides divisible by {2**stages}, "
                          f"got {height}x{width}")


def square_size(shape: tuple[int, int], architecture: str) -> int:
    height, width = shape
    if height != width:
        raise ConfigError(f"{architecture} needs square images, got {height}x{width}")
    return height


def compiled_for_training(model: "keras.Model", settings: Any) -> "keras.Model":
    """The model compiled to reconstruct its input: mean squared error, Adam."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate), loss="mse")
    return model


def untrained(build: Builder, arrays: np.ndarray, pipeline: Pipeline) -> "keras.Model":
    """The model `build` makes for `arrays`' shape, untrained (benchmarks time it)."""
    return build(pipeline.model.settings, arrays.shape[1:])


def fit_autoencoder(
    build: Builder,
    arrays: np.ndarray,
    pipeline: Pipeline,
    seed: int,
    epochs: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    variants: np.ndarray | None = None,  # nuisance copies: not used
) -> Fitted:
    """Hold out `holdout_fraction` of the good images, train `build`'s model on the rest to
    reconstruct them, and score the held-out ones for the threshold.

    Same seed and same images give the same weights (op determinism is switched on).
    """
    settings = pipeline.model.settings
    train_idx, hold_idx = split_holdout(len(arrays), pipeline.model.holdout_fraction, seed)
    started = time.perf_counter()
    seeded(seed)
    model = build(settings, arrays.shape[1:])
    x = arrays[train_idx][..., None].astype(np.float32)
    callbacks = []
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch(epoch, float(logs["loss"]))
        ))
    epochs = epochs or settings.epochs
    history = model.fit(x, x, epochs=epochs, batch_size=settings.batch_size, shuffle=True, verbose=0,
                        callbacks=callbacks)
    seconds = time.perf_counter() - started
    scores, maps = score_arrays(model, arrays[hold_idx], pipeline.scoring)
    return Fitted(
        model=model, scores=scores, maps=maps, calibrated_on=f"{len(hold_idx)} held-out good images",
        trained_on=len(train_idx), held_out=len(hold_idx), epochs=epochs,
        losses=[float(v) for v in history.history["loss"]], seconds=seconds,
    )
