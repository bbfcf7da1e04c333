"""Training `denoising_autoencoder`: restore good parts from copies with synthetic defects and
line nuisances, then learn what its error looks like on good parts it did not see.

1. `holdout_fraction` of the good images is held out; the autoencoder trains on the rest.
2. Each epoch every training image is shown once: as photographed or as one of its nuisance
   copies (`nuisance_share`), with a synthetic defect (`defect_share`); the target is the same
   copy without the defect. Loss: squared error + `ssim_weight` x (1 - SSIM) + `worst_error_weight`
   x the mean of each image's worst `worst_error_share` of local squared error (`training_loss`).
3. With `discriminator_steps`, a discriminator learns, with the autoencoder held fixed, where
   synthetic defects are from the input beside its reconstruction (`discriminator`).
4. The held-out images and their nuisance copies calibrate: the per-pixel statistics of the
   reconstruction error (and of 1 - SSIM, of the discriminator's chances, and of the patch
   memory's distances, the second opinion, which remembers the training images), each map's
   typical score, and the threshold's good scores.
   Statistics are cross-fitted: the held-out images fall into `CROSS_FIT_FOLDS` folds (an image
   and its nuisance copies in the same one), each scored with statistics learnt on the other
   folds, so the threshold sees scores as honest as a new part's, from statistics nearly as
   good as the final model's (which learns them from every held-out image).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from ...errors import TrainingError
from ...tf_setup import keras
from ..components.autoencoder_fit import check_sides, seeded, split_holdout
from ..components.patch_memory_fit import memory_layer, part_level, pixel_statistics, set_statistics
from ..components.regions import WHOLE_FRAME
from ..components.running import score_arrays
from ..spec import Fitted
from . import DenoisingSettings
from .defects import training_copy
from .discriminator import check_shape, discriminator, train_discriminator
from .layers import AppearanceError, DefectProbability, PartMap, ReconstructionError, Rescale, StructureError

if TYPE_CHECKING:
    from ...settings import Pipeline

# Held-out images are scored in this many folds, each with the statistics of the others. Halves
# (statistics from half the images) made the calibration scores noisier, so higher, than a new
# part's under the final model's statistics; with 8 folds each is scored with 7/8 of them.
CROSS_FIT_FOLDS = 8
# The other folds must give a per-pixel spread (two images at least) for every fold.
MIN_HELD_OUT = 4


def autoencoder(settings: DenoisingSettings, shape: tuple[int, int]) -> "keras.Model":
    """Image (H, W, 1) -> its reconstruction, sigmoid output; `settings.layout` says how. With
    `settings.members` above 1, the mean of that many such autoencoders (`members`)."""
    check_sides("denoising_autoencoder", shape, len(settings.filters))
    if settings.members == 1:
        return _one_autoencoder(settings, shape, "autoencoder")
    inputs = keras.Input(shape=(*shape, 1))
    restored = [_one_autoencoder(settings, shape, f"member_{k}")(inputs) for k in range(settings.members)]
    return keras.Model(inputs, keras.layers.Average(name="mean_restoration")(restored), name="autoencoder")


def members(ae: "keras.Model") -> list["keras.Model"]:
    """The autoencoders whose mean `ae` is (itself when it is a single one)."""
    inner = [layer for layer in ae.layers if isinstance(layer, keras.Model)]
    return inner or [ae]


def _one_autoencoder(settings: DenoisingSettings, shape: tuple[int, int], name: str) -> "keras.Model":
    height, width = shape
    layers = keras.layers
    inputs = keras.Input(shape=(height, width, 1))
    x = inputs
    filters = settings.filters
    if settings.layout == "strided":
        for count in filters:
            x = layers.Conv2D(count, 3, strides=2, padding="same", activation="relu")(x)
        finer = [settings.head_filters, *filters[:-1]]  # channels of each stage's output, fine to coarse
        for stage in reversed(range(len(filters))):
            x = layers.Conv2DTranspose(finer[stage], 3, strides=2, padding="same", activation="relu")(x)
            if stage >= len(filters) // 2 and stage > 0:  # the coarser half is refined
                x = layers.Conv2D(finer[stage], 3, padding="same", activation="relu")(x)
    else:
        for count in filters:
            x = layers.Conv2D(count, 3, padding="same", activation="relu")(x)
            x = layers.Conv2D(count, 3, strides=2, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters[-1], 3, padding="same", activation="relu")(x)
        for count in reversed(filters):
            x = layers.Conv2DTranspose(count, 3, strides=2, padding="same", activation="relu")(x)
            x = layers.Conv2D(count, 3, padding="same", activation="relu")(x)
    outputs = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name=name)


def assemble(ae: "keras.Model", settings: DenoisingSettings, level: float, memory: np.ndarray | None,
             good_mean: np.ndarray | None = None, judge: "keras.Model | None" = None):
    """The served model: input -> reconstruction error map (+ 1 - SSIM's map with
    `settings.structure_error`, + the distance from `good_mean`, the mean good input, with
    `settings.appearance_error`, + the chance of a defect at each pixel if `judge`, a
    discriminator, is given, + the patch memory's map if `memory`, the images it remembers, is
    given). Returns the model and its branches: (layer holding per-pixel statistics, layer
    holding the unit, the map's weight in the sum: `settings.memory_weight` for the memory's,
    `settings.discriminator_weight` for the discriminator's, 1 for the others) for each map added."""
    height, width = ae.input_shape[1:3]
    inputs = keras.Input(shape=(height, width, 1))
    restored = ae(inputs)
    error = ReconstructionError(height, width, settings.error_sigma, level, name="reconstruction_error")
    output = error([inputs, restored])
    branches = [(error, error, 1.0)]
    if settings.structure_error:
        structure = StructureError(height, width, level, name="structure_error")
        output = keras.layers.Add(name="reconstruction_maps")([output, structure([inputs, restored])])
        branches.append((structure, structure, 1.0))
    if settings.appearance_error:
        appearance = AppearanceError(height, width, settings.error_sigma, level, name="appearance_error")
        output = keras.layers.Add(name="with_appearance")([output, appearance([inputs, restored])])
        appearance.good_mean.assign(np.zeros((height, width), np.float32) if good_mean is None else good_mean)
        branches.append((appearance, appearance, 1.0))
    if judge is not None:
        chance = judge(keras.layers.Concatenate(name="beside_reconstruction")([inputs, restored]))
        found = DefectProbability(height, width, settings.error_sigma, level, name="defect_probability")
        output = keras.layers.Add(name="with_discriminator")([output, found([inputs, chance])])
        branches.append((found, found, settings.discriminator_weight))
    if memory is not None:
        distances = memory_layer(memory, settings, level)  # kept to the same region as the other maps
        rescale = Rescale(name="memory_unit")
        output = keras.layers.Add(name="both_opinions")([output, rescale(distances(inputs))])
        branches.append((distances, rescale, settings.memory_weight))
    return keras.Model(inputs, output, name="denoising_autoencoder"), branches


def build(settings: DenoisingSettings, shape: tuple[int, int]) -> "keras.Model":
    """The untrained served model (an empty memory of `neighbours` blank images as second opinion)."""
    memory = np.zeros((settings.neighbours, *shape), np.float32) if settings.second_opinion == "patch_memory" else None
    return assemble(autoencoder(settings, shape), settings, 0.5, memory, judge=_untrained_judge(settings, shape))[0]


def benchmark_model(arrays: np.ndarray, pipeline: Pipeline) -> "keras.Model":
    """As costly as a trained model: the memory as large as a training set's (it grows with it)."""
    settings = pipeline.model.settings
    memory = np.concatenate([arrays] * 8) if settings.second_opinion == "patch_memory" else None
    return assemble(autoencoder(settings, arrays.shape[1:]), settings, region_level(pipeline, arrays), memory,
                    arrays.mean(axis=0), _untrained_judge(settings, arrays.shape[1:]))[0]


def _untrained_judge(settings: DenoisingSettings, shape: tuple[int, int]) -> "keras.Model | None":
    """The discriminator the settings ask for, untrained (None without `discriminator_steps`)."""
    return (discriminator(shape, settings.discriminator_filters, settings.discriminator_shrink)
            if settings.discriminator_steps else None)


def is_whole_frame(pipeline: Pipeline) -> bool:
    """No part is segmented unless the pipeline turns one upright (`pose = "axis"`): errors and
    synthetic defects then count anywhere in the input."""
    return pipeline.preprocess.pose != "axis"


def region_level(pipeline: Pipeline, arrays: np.ndarray) -> float:
    """The grey level below which the error maps count (`components.regions.part_region`)."""
    return WHOLE_FRAME if is_whole_frame(pipeline) else part_level(arrays)


def learning_rate(settings: DenoisingSettings, steps: int):
    """Adam's learning rate over `steps` training steps: constant, or along a cosine from
    `learning_rate` down to 5% of it at the last step."""
    if settings.learning_rate_decay == "cosine":
        return keras.optimizers.schedules.CosineDecay(settings.learning_rate, max(1, steps), alpha=0.05)
    return settings.learning_rate


# Side of the window over which `worst_error_weight`'s squared error is averaged: a spot, not a pixel.
WORST_ERROR_WINDOW = 5


def worst_local_error(restored, target, share: float):
    """Each image's worst `share` of its local squared error (means over 5x5 windows), averaged:
    (B, H, W, 1) each -> (B,)."""
    import tensorflow as tf

    local = tf.nn.avg_pool2d(tf.square(restored - target), WORST_ERROR_WINDOW, 1, "SAME")
    pixels = int(local.shape[1]) * int(local.shape[2])
    worst = tf.math.top_k(tf.reshape(local, [-1, pixels]), max(1, round(share * pixels))).values
    return tf.reduce_mean(worst, axis=1)


def training_loss(restored, target, settings: DenoisingSettings):
    """Squared error + `ssim_weight` x (1 - SSIM) + `worst_error_weight` x the worst local error."""
    import tensorflow as tf

    loss = tf.reduce_mean(tf.square(restored - target))
    if settings.ssim_weight:
        loss += settings.ssim_weight * (1.0 - tf.reduce_mean(tf.image.ssim(restored, target, 1.0, filter_size=7)))
    if settings.worst_error_weight:
        loss += settings.worst_error_weight * tf.reduce_mean(worst_local_error(restored, target,
                                                                               settings.worst_error_share))
    return loss


def training_step(ae: "keras.Model", settings: DenoisingSettings, optimizer):
    """One step of `optimizer` on a batch (shown, target), compiled by XLA with
    `settings.compile_training`; returns the loss, summed over the members."""
    import tensorflow as tf

    trained = members(ae)

    # Each member's own loss, summed: the members share no weights, so each learns as if alone.
    @tf.function(reduce_retracing=True, jit_compile=settings.compile_training)
    def step(shown, target):
        with tf.GradientTape() as tape:
            loss = tf.add_n([training_loss(member(shown, training=True), target, settings) for member in trained])
        optimizer.apply_gradients(zip(tape.gradient(loss, ae.trainable_variables), ae.trainable_variables))
        return loss

    return step


def train_autoencoder(
    arrays: np.ndarray,
    variants: np.ndarray | None,
    settings: DenoisingSettings,
    seed: int,
    epochs: int,
    on_epoch: Callable[[int, float], None] | None = None,
    whole_frame: bool = False,
) -> tuple["keras.Model", list[float]]:
    """Train the autoencoder to restore `arrays` (N, H, W) and their nuisance copies `variants`
    (N, K, H, W) from copies with synthetic defects (anywhere with `whole_frame`); returns it and
    its loss per epoch (with several `members`, the mean of the members' own losses)."""
    seeded(seed)
    rng = np.random.default_rng(seed)
    ae = autoencoder(settings, arrays.shape[1:])
    batch = settings.batch_for(len(arrays))
    planned = epochs * settings.steps_per_epoch(len(arrays))  # the loop below runs full batches only
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate(settings, planned))

    step = training_step(ae, settings, optimizer)
    count = len(members(ae))
    losses = []
    for epoch in range(epochs):
        total, steps = 0.0, 0
        order = rng.permutation(len(arrays))
        for start in range(0, len(order) - batch + 1, batch):
            shown, target = zip(*(training_copy(rng, i, arrays, variants, settings, whole_frame)
                                  for i in order[start:start + batch]))
            total += float(step(np.stack(shown)[..., None], np.stack(target)[..., None])) / count
            steps += 1
        losses.append(total / max(steps, 1))
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    return ae, losses


def fit(
    arrays: np.ndarray,
    pipeline: Pipeline,
    seed: int,
    epochs: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    variants: np.ndarray | None = None,
) -> Fitted:
    """Train on good crops (N, H, W) and their nuisance copies (N, K, H, W), calibrate on held-out ones."""
    settings = pipeline.model.settings
    epochs = epochs or settings.epochs_for(len(arrays), pipeline.model.holdout_fraction)
    train_idx, hold_idx = split_holdout(len(arrays), pipeline.model.holdout_fraction, seed)
    if len(hold_idx) < MIN_HELD_OUT:
        raise TrainingError(
            f"denoising_autoencoder needs at least {MIN_HELD_OUT} held-out good images to calibrate (each "
            f"scored with per-pixel statistics of the others); {len(arrays)} images with holdout_fraction "
            f"{pipeline.model.holdout_fraction} hold out {len(hold_idx)}: give more images or a larger fraction")
    if settings.discriminator_steps:  # before the autoencoder's training, not after it
        check_shape(arrays.shape[1:], settings.discriminator_shrink)
    started = time.perf_counter()
    trained_variants = None if variants is None else variants[train_idx]
    ae, losses = train_autoencoder(arrays[train_idx], trained_variants, settings, seed, epochs, on_epoch,
                                   is_whole_frame(pipeline))
    judge = None
    steps = settings.discriminator_steps_for(epochs)
    if steps:  # its passes counted on after the epochs: one progress bar for the whole training
        report = None if on_epoch is None else (lambda done, loss: on_epoch(epochs + done, loss))
        judge, _ = train_discriminator(ae, arrays[train_idx], trained_variants, settings, seed,
                                       learning_rate(settings, steps), is_whole_frame(pipeline), steps, report)
    memory = arrays[train_idx] if settings.second_opinion == "patch_memory" else None
    model, branches = assemble(ae, settings, region_level(pipeline, arrays[train_idx]), memory,
                               arrays[train_idx].mean(axis=0), judge)
    # Calibration images: each held-out image as photographed and under its nuisances.
    calibration = [arrays[hold_idx]] + ([] if variants is None else [variants[hold_idx, k]
                                                                    for k in range(variants.shape[1])])
    images = np.concatenate(calibration)
    owner = np.tile(np.arange(len(hold_idx)), len(calibration))  # which held-out image each one is
    folds = min(CROSS_FIT_FOLDS, len(hold_idx))
    fold_of_image = np.empty(len(hold_idx), int)
    fold_of_image[np.random.default_rng(seed).permutation(len(hold_idx))] = np.arange(len(hold_idx)) % folds
    fold = fold_of_image[owner]
    raw = _raw_maps(model, branches, images)
    scores, maps = _cross_fitted(model, branches, raw, images, fold, pipeline)
    seconds = time.perf_counter() - started
    return Fitted(
        model=model, scores=scores, maps=maps,
        calibrated_on=(f"{len(hold_idx)} held-out good images"
                       + (f" and {len(images) - len(hold_idx)} nuisance copies of them" if len(calibration) > 1 else "")
                       + f", cross-fitted in {folds} folds (each scored with statistics from the others)"),
        trained_on=len(train_idx), held_out=len(hold_idx), epochs=epochs, losses=losses, seconds=seconds,
    )


def _raw_maps(model, branches, images: np.ndarray) -> list[np.ndarray]:
    """Each branch's map before any statistics: the smoothed squared error, 1 - SSIM, the
    distances, the discriminator's chances."""
    import tensorflow as tf

    x = images[..., None].astype(np.float32)
    ae = model.get_layer("autoencoder")
    raw = [[] for _ in branches]
    for i in range(0, len(x), 64):
        batch = tf.constant(x[i:i + 64])
        restored = ae(batch, training=False)
        for maps, (layer, _, _) in zip(raw, branches):
            if isinstance(layer, DefectProbability):  # its second input is the discriminator's chances
                second = model.get_layer("discriminator")(tf.concat([batch, restored], axis=-1), training=False)
                maps.append(layer.raw(batch, second).numpy()[..., 0])
            else:
                maps.append((layer.raw(batch, restored) if isinstance(layer, PartMap) else layer(batch)).numpy()[..., 0])
    return [np.concatenate(maps) for maps in raw]


def _cross_fitted(model, branches, raw: list[np.ndarray], images: np.ndarray, fold: np.ndarray, pipeline):
    """Calibration scores and maps through the served model, each fold (`fold`: each image's)
    with statistics (and map units) learnt on the other folds; then the model keeps statistics
    learnt on all."""

    def learn(select: np.ndarray) -> None:
        for (layer, unit, weight), maps in zip(branches, raw):
            set_statistics(layer, *pixel_statistics(maps[select], pipeline.model.settings.robust_spread))
            unit.unit.assign(1.0)
            normalised = _branch_output(layer, maps[select], images[select])
            typical = max(float(normalised.reshape(len(normalised), -1).max(axis=1).mean()), 1e-6)
            unit.unit.assign(typical / weight)  # a map's unit is its typical score, over its weight

    scores, maps = np.empty(len(images)), np.empty(images.shape, np.float32)
    for k in np.unique(fold):
        scored = fold == k
        learn(~scored)
        scores[scored], maps[scored] = score_arrays(model, images[scored], pipeline.scoring)
    learn(np.ones(len(images), bool))
    return scores, maps


def _branch_output(layer, raw: np.ndarray, images: np.ndarray) -> np.ndarray:
    """A branch's normalised map from its raw map, as its layer computes it (with unit 1):
    (raw - mean) / spread at each pixel, kept to the part."""
    import tensorflow as tf

    from ..components.regions import part_region

    mean, scale = layer.position_mean.numpy(), layer.position_scale.numpy()
    region = part_region(tf.constant(images[..., None], tf.float32), layer.part_level).numpy()[..., 0]
    return (raw - mean) / scale * region
