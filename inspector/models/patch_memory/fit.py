"""Fitting the patch memory: remember good images, learn per-pixel statistics by cross-validation."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from ...tf_setup import keras
from ..components.patch_memory import PatchMemorySettings
from ..components.patch_memory_fit import memory_layer, pixel_statistics, set_statistics
from ..components.running import forward, score_arrays
from ..spec import Fitted

if TYPE_CHECKING:
    from ...settings import Pipeline

# The benchmark's memory holds this many copies of its images: about a training set's worth.
BENCHMARK_MEMORY_COPIES = 10


def memory_of(images: np.ndarray, settings: PatchMemorySettings) -> "keras.Model":
    """A model that remembers `images` (N, H, W) and maps an image to its distance map."""
    inputs = keras.Input(shape=(*images.shape[1:], 1))
    return keras.Model(inputs, memory_layer(images, settings)(inputs), name="patch_memory")


def normalise_by(model: "keras.Model", good_maps: np.ndarray) -> None:
    """Learn per-pixel statistics from distance maps of good images the memory does not hold
    (cross-validation): later maps are (distance - mean) / spread."""
    set_statistics(model.layers[-1], *pixel_statistics(good_maps))


def build(settings: PatchMemorySettings, shape: tuple[int, int]) -> "keras.Model":
    """An empty memory (`neighbours` blank images): the graph a fitted model has, nothing learnt."""
    return memory_of(np.zeros((settings.neighbours, *shape), np.float32), settings)


def fit(
    arrays: np.ndarray,
    pipeline: Pipeline,
    seed: int,
    epochs: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    variants: np.ndarray | None = None,  # nuisance copies: not used
) -> Fitted:
    """Calibrate by cross-validation, then remember every good image (no epochs, no loss).

    Each fold (a `holdout_fraction` share) is scored by a memory of the other images, so every
    good image gets an honest distance map from a memory that never saw it. Those maps give the
    per-pixel statistics the distances are normalised by, and the calibration scores. The final
    memory keeps all images (a bigger memory matches more thread phases and head turns).
    """
    settings = pipeline.model.settings
    folds = max(2, min(len(arrays), round(1 / pipeline.model.holdout_fraction)))
    order = np.random.default_rng(seed).permutation(len(arrays))
    fold_models = [(fold, memory_of(arrays[np.setdiff1d(order, fold)], settings))
                   for fold in np.array_split(order, folds)]
    distances = np.empty(arrays.shape, np.float32)
    for fold, fold_model in fold_models:
        distances[fold] = forward(fold_model, arrays[fold])
    started = time.perf_counter()
    model = memory_of(arrays, settings)
    normalise_by(model, distances)
    seconds = time.perf_counter() - started
    scores, maps = np.empty(len(arrays)), np.empty(arrays.shape, np.float32)
    for fold, fold_model in fold_models:
        normalise_by(fold_model, distances)
        scores[fold], maps[fold] = score_arrays(fold_model, arrays[fold], pipeline.scoring)
    return Fitted(
        model=model, scores=scores, maps=maps,
        calibrated_on=f"{len(arrays)} good images, {folds}-fold cross-validated (each scored by a memory without it)",
        trained_on=len(arrays), held_out=len(arrays), seconds=seconds,
    )


def benchmark_model(arrays: np.ndarray, pipeline: Pipeline) -> "keras.Model":
    """A memory as large as a training set's (its cost grows with what it remembers)."""
    return memory_of(np.concatenate([arrays] * BENCHMARK_MEMORY_COPIES), pipeline.model.settings)
