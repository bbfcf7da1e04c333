"""Training the discriminator: a small segmentation network that looks at an input beside the
autoencoder's reconstruction of it and says, pixel by pixel, whether a defect is there
(the discriminative half of DRAEM, Zavrtanik et al. 2021). Training code only.

The autoencoder is trained first and then held fixed. Each step draws a batch of training images
at random, each shown as the autoencoder's training shows it (`defects.training_copy`: a nuisance
copy at `nuisance_share`, a synthetic defect at `defect_share`); the pixels a defect changed are
the target, the input the defective image beside its reconstruction. The reconstruction error says where the autoencoder disagrees with the input; the discriminator learns which
disagreements are defects, and what a defect looks like beside the part's own restoration
(a lead's end where the reconstruction carries it on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from ...errors import ConfigError
from ...tf_setup import keras
from ..components.autoencoder_fit import check_sides
from .defects import training_copy

if TYPE_CHECKING:
    from . import DenoisingSettings

# A drawn defect's target: the pixels it changed by more than this (in the model's input's grey
# levels, whose good images are 0.5 +- 0.15 when standardized). A region moved over plain
# background is marked only where the background's own noise differs by more.
CHANGED = 0.02
# The network's stages: the first at full resolution, each further one halving it.
STAGES = 4
# Focal loss's focusing power: easy pixels (most of the frame, plainly good) count less.
FOCAL_GAMMA = 2.0


def check_shape(shape: tuple[int, int], shrink: int = 1) -> None:
    """Each strided stage halves both sides, after the input is shrunk `shrink` times: they must
    be divisible by 8 times `shrink`."""
    if shrink == 1:
        check_sides("the discriminator", shape, STAGES - 1)
    elif shape[0] % (8 * shrink) or shape[1] % (8 * shrink):
        raise ConfigError(f"the discriminator shrunk {shrink} times halves the input {STAGES - 1} times more: it "
                          f"needs sides divisible by {8 * shrink}, got {shape[0]}x{shape[1]}")


def discriminator(shape: tuple[int, int], filters: tuple[int, ...], shrink: int = 1) -> "keras.Model":
    """(H, W, 2): an image and its reconstruction -> (H, W, 1), the chance each pixel is a defect.
    A U-Net of `filters` channels per stage (fine to coarse): three strided stages down, back
    up with the finer stage's features beside each. With `shrink` > 1 it works on both averaged
    down `shrink` times per side, and its chances are enlarged back bilinearly."""
    check_shape(shape, shrink)
    layers = keras.layers
    inputs = keras.Input(shape=(*shape, 2))
    x = layers.AveragePooling2D(shrink)(inputs) if shrink > 1 else inputs
    x = layers.Conv2D(filters[0], 3, padding="same", activation="relu")(x)
    skips = []
    for count in filters[1:]:
        skips.append(x)
        x = layers.Conv2D(count, 3, strides=2, padding="same", activation="relu")(x)
        x = layers.Conv2D(count, 3, padding="same", activation="relu")(x)
    for skip in reversed(skips):
        count = int(skip.shape[-1])
        x = layers.Conv2DTranspose(count, 3, strides=2, padding="same", activation="relu")(x)
        x = layers.Concatenate()([x, skip])
        x = layers.Conv2D(count, 3, padding="same", activation="relu")(x)
    outputs = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    if shrink > 1:
        outputs = layers.UpSampling2D(shrink, interpolation="bilinear")(outputs)
    return keras.Model(inputs, outputs, name="discriminator")


def starting_discriminator(shape: tuple[int, int], settings: "DenoisingSettings", seed: int) -> "keras.Model":
    """The discriminator as its training with `seed` starts it: the same weights however the
    autoencoder before it came."""
    keras.utils.set_random_seed(seed)
    return discriminator(shape, settings.discriminator_filters, settings.discriminator_shrink)


def focal_loss(probability, target):
    """Mean focal loss of per-pixel chances against a 0/1 target (both (B, H, W, 1))."""
    import tensorflow as tf

    p = tf.clip_by_value(probability, 1e-6, 1.0 - 1e-6)
    right = tf.where(target > 0.5, p, 1.0 - p)  # the chance given to what is true
    return tf.reduce_mean(-tf.pow(1.0 - right, FOCAL_GAMMA) * tf.math.log(right))


def drawn_batch(rng: np.random.Generator, arrays: np.ndarray, variants: np.ndarray | None,
                settings: "DenoisingSettings", batch: int, whole_frame: bool) -> tuple[np.ndarray, np.ndarray]:
    """`batch` training images drawn at random from `arrays` (N, H, W) with their nuisance copies
    `variants` (N, K, H, W), each shown as the autoencoder's training shows it: (shown, the pixels
    each defect changed), (B, H, W) each."""
    shown, targets = [], []
    for i in rng.integers(len(arrays), size=batch):
        drawn, image = training_copy(rng, i, arrays, variants, settings, whole_frame)
        shown.append(drawn)
        targets.append(np.abs(drawn - image) > CHANGED)
    return np.stack(shown).astype(np.float32), np.stack(targets).astype(np.float32)


def train_discriminator(ae: "keras.Model", arrays: np.ndarray, variants: np.ndarray | None,
                        settings: "DenoisingSettings", seed: int, rate, whole_frame: bool = False,
                        steps: int | None = None,
                        on_pass: "Callable[[int, float], None] | None" = None) -> tuple["keras.Model", list[float]]:
    """Train the discriminator for `steps` batches (`settings.discriminator_steps` by default)
    on synthetic defects drawn on `arrays` (N, H, W) and their nuisance copies `variants`
    (N, K, H, W), with `ae`, already trained, held fixed, by Adam at `rate` (a learning rate or
    schedule); returns it and the loss of each step. `on_pass(n, mean loss)` after each epoch's
    worth of batches (as the autoencoder's training counts an epoch on `arrays`) and the last."""
    import tensorflow as tf

    rng = np.random.default_rng([seed, 2])
    net = starting_discriminator(arrays.shape[1:], settings, seed)
    optimizer = keras.optimizers.Adam(learning_rate=rate)

    @tf.function(reduce_retracing=True)
    def step(shown, target):
        restored = ae(shown, training=False)
        with tf.GradientTape() as tape:
            loss = focal_loss(net(tf.concat([shown, restored], axis=-1), training=True), target)
        optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))
        return loss

    batch = settings.batch_for(len(arrays))
    steps = settings.discriminator_steps if steps is None else steps
    per_pass = settings.steps_per_epoch(len(arrays))
    losses = []
    for done in range(1, steps + 1):
        shown, target = drawn_batch(rng, arrays, variants, settings, batch, whole_frame)
        losses.append(float(step(tf.constant(shown[..., None]), tf.constant(target[..., None]))))
        if on_pass is not None and (done % per_pass == 0 or done == steps):
            number = (done - 1) // per_pass  # the pass this batch ends, from 0
            on_pass(number, float(np.mean(losses[number * per_pass:])))
    return net, losses
