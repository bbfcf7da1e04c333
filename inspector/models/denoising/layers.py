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


class PartMap(keras.layers.Layer):
    """[input, reconstruction] (B, H, W, 1) each -> how unusual a map of their difference (`raw`)
    is at each pixel, kept to the part: (raw - mean) / spread at that pixel, learnt on good parts
    the model did not learn from (the thread's edges are always reconstructed less well than the
    shank), then divided by `unit`, the typical image score of good parts, so maps add on a
    common scale."""

    def __init__(self, height: int, width: int, part_level: float, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width, self.part_level = int(height), int(width), float(part_level)
        self.position_mean = self.add_weight(shape=(self.height, self.width), initializer="zeros",
                                             trainable=False, name="position_mean")
        self.position_scale = self.add_weight(shape=(self.height, self.width), initializer="ones",
                                              trainable=False, name="position_scale")
        self.unit = self.add_weight(shape=(), initializer="ones", trainable=False, name="unit")

    def raw(self, x, reconstruction):
        raise NotImplementedError

    def call(self, inputs):
        x, reconstruction = inputs
        raw = self.raw(x, reconstruction)[..., 0]
        normalised = (raw - self.position_mean) / self.position_scale / self.unit
        return normalised[..., None] * part_region(x, self.part_level)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width, "part_level": self.part_level}


@keras.saving.register_keras_serializable(package="inspector")
class ReconstructionError(PartMap):
    """The squared reconstruction error, smoothed (a defect is a blob, not a pixel), as a `PartMap`."""

    def __init__(self, height: int, width: int, sigma: float, part_level: float, **kwargs):
        super().__init__(height, width, part_level, **kwargs)
        self.sigma = float(sigma)
        self.kernel = gaussian_kernel(self.sigma)

    def raw(self, x, reconstruction):
        import tensorflow as tf

        return tf.nn.conv2d(tf.square(x - reconstruction), self.kernel, 1, "SAME")

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma}


# SSIM's constants for images in [0, 1] (Wang et al. 2004: K1 = 0.01, K2 = 0.03).
SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2


@keras.saving.register_keras_serializable(package="inspector")
class StructureError(PartMap):
    """1 - SSIM between the input and its reconstruction at each pixel (local means, spreads and
    correlation over a Gaussian window of `window` pixels), smoothed by `smooth`, as a `PartMap`.

    The squared error sees a wrong grey level; this sees a wrong structure (an edge missing,
    moved or added) whatever its contrast, so a worn thread or a faint stain counts too."""

    def __init__(self, height: int, width: int, part_level: float, window: float = 1.5, smooth: float = 1.0,
                 **kwargs):
        super().__init__(height, width, part_level, **kwargs)
        self.window, self.smooth = float(window), float(smooth)
        self.window_kernel = np.tile(gaussian_kernel(self.window), (1, 1, 5, 1))  # five maps at once
        self.smooth_kernel = gaussian_kernel(self.smooth)

    def raw(self, x, reconstruction):
        import tensorflow as tf

        r = reconstruction
        local = _reflect_blur(tf.concat([x, r, x * x, r * r, x * r], axis=-1), self.window_kernel, depthwise=True)
        mx, mr, xx, rr, xr = tf.unstack(local, axis=-1)
        vx, vr, cov = xx - mx * mx, rr - mr * mr, xr - mx * mr
        ssim = ((2 * mx * mr + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mx * mx + mr * mr + SSIM_C1) * (vx + vr + SSIM_C2))
        return _reflect_blur((1.0 - ssim)[..., None], self.smooth_kernel)

    def get_config(self):
        return {**super().get_config(), "window": self.window, "smooth": self.smooth}


def _reflect_blur(maps, kernel: np.ndarray, depthwise: bool = False):
    """A Gaussian blur with the border mirrored (as OpenCV's default), not padded with zeros: a
    crop's edge is background, and zeros there would read as structure."""
    import tensorflow as tf

    r = kernel.shape[0] // 2
    padded = tf.pad(maps, [[0, 0], [r, r], [r, r], [0, 0]], mode="REFLECT")
    if depthwise:
        return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")
    return tf.nn.conv2d(padded, kernel, 1, "VALID")


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
