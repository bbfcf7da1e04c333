"""The layers a saved `denoising_autoencoder` needs to load (serving imports only this).

Registered with Keras (package "inspector"), so the model loads with `safe_mode=True`.
"""

from __future__ import annotations

import numpy as np

from ...tf_setup import keras
from ..patch_memory import layers as _patch_memory_layers  # noqa: F401  (the second opinion's layer)
from ..regions import part_region


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised 2-D Gaussian kernel, (k, k, 1, 1), k covering 3 sigma each side."""
    radius = max(1, int(np.ceil(3 * sigma)))
    line = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel = np.outer(line, line)
    return (kernel / kernel.sum()).astype(np.float32)[..., None, None]


@keras.saving.register_keras_serializable(package="inspector")
class ReconstructionError(keras.layers.Layer):
    """[input, reconstruction] (B, H, W, 1) each -> how unusual the reconstruction error is at
    each pixel, kept to the part.

    The squared error is smoothed (a defect is a blob, not a pixel), then measured against good
    parts the model did not learn from: (error - mean) / spread at that pixel (the thread's edges
    are always reconstructed less well than the shank), then divided by `unit`, the typical
    image score of good parts, so it adds to other maps on a common scale.
    """

    def __init__(self, height: int, width: int, sigma: float, part_level: float, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)
        self.sigma, self.part_level = float(sigma), float(part_level)
        self.kernel = gaussian_kernel(self.sigma)
        self.position_mean = self.add_weight(shape=(self.height, self.width), initializer="zeros",
                                             trainable=False, name="position_mean")
        self.position_scale = self.add_weight(shape=(self.height, self.width), initializer="ones",
                                              trainable=False, name="position_scale")
        self.unit = self.add_weight(shape=(), initializer="ones", trainable=False, name="unit")

    def smoothed_error(self, x, reconstruction):
        import tensorflow as tf

        return tf.nn.conv2d(tf.square(x - reconstruction), self.kernel, 1, "SAME")

    def call(self, inputs):
        x, reconstruction = inputs
        error = self.smoothed_error(x, reconstruction)[..., 0]
        normalised = (error - self.position_mean) / self.position_scale / self.unit
        return normalised[..., None] * part_region(x, self.part_level)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "sigma": self.sigma, "part_level": self.part_level}


@keras.saving.register_keras_serializable(package="inspector")
class Rescale(keras.layers.Layer):
    """A map divided by `unit`, a learnt (non-trainable) scalar: the typical image score of good
    parts, so maps of different models add on a common scale."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.unit = self.add_weight(shape=(), initializer="ones", trainable=False, name="unit")

    def call(self, x):
        return x / self.unit

    def compute_output_shape(self, input_shape):
        return input_shape
