"""The layers a saved `denoising_autoencoder` needs to load (serving imports only this).

Registered with Keras (package "inspector"), so the model loads with `safe_mode=True`.
"""

from __future__ import annotations

import numpy as np

from ...tf_setup import keras
from ..components import patch_memory_layer as _patch_memory_layer  # noqa: F401  (the second opinion's layer)
from ..components.regions import part_region


def gaussian_line(sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian, covering 3 sigma each side."""
    radius = max(1, int(np.ceil(3 * sigma)))
    line = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return (line / line.sum()).astype(np.float32)


def blur_matrix(n: int, sigma: float, mirror: bool = False) -> np.ndarray:
    """(n, n): a Gaussian blur along one side of n pixels as a matrix. Past the border the map
    is taken as zeros, or with `mirror` reflected as OpenCV's default does (a crop's edge is
    background, and zeros there would read as structure)."""
    line = gaussian_line(sigma)
    radius = len(line) // 2
    period = max(1, 2 * (n - 1))  # of the mirrored side: reflected about its first and last pixels
    matrix = np.zeros((n, n), np.float64)
    for i in range(n):
        for k, weight in enumerate(line):
            j = i + k - radius
            if mirror:  # as often as it takes
                j %= period
                j = period - j if j >= n else j
            if 0 <= j < n:
                matrix[i, j] += weight
    return matrix.astype(np.float32)


class GaussianBlur:
    """A Gaussian blur of (B, H, W) maps as two matrix products (columns, then rows): the same
    blur as a convolution, in less than half its time on a CPU, and the border is in the
    matrices (no padding step)."""

    def __init__(self, height: int, width: int, sigma: float, mirror: bool = False):
        self.rows = blur_matrix(height, sigma, mirror)
        self.columns = blur_matrix(width, sigma, mirror).T.copy()

    def __call__(self, maps):
        import tensorflow as tf

        return tf.matmul(self.rows, tf.matmul(maps, self.columns))


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
        normalised = (raw - self.position_mean) * (1.0 / (self.position_scale * self.unit))
        return normalised[..., None] * part_region(x, self.part_level)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width, "part_level": self.part_level}


class SmoothedMap(PartMap):
    """A `PartMap` whose raw map is smoothed by a Gaussian of `sigma` pixels (a defect is a blob,
    not a pixel)."""

    def __init__(self, height: int, width: int, sigma: float, part_level: float, **kwargs):
        super().__init__(height, width, part_level, **kwargs)
        self.sigma = float(sigma)
        self.blur = GaussianBlur(self.height, self.width, self.sigma)

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma}


@keras.saving.register_keras_serializable(package="inspector")
class ReconstructionError(SmoothedMap):
    """The squared reconstruction error, smoothed (a defect is a blob, not a pixel), as a `PartMap`."""

    def raw(self, x, reconstruction):
        import tensorflow as tf

        return self.blur(tf.square(x - reconstruction)[..., 0])[..., None]


@keras.saving.register_keras_serializable(package="inspector")
class AppearanceError(SmoothedMap):
    """How far the input is from the mean of the good inputs at each pixel (squared, smoothed),
    as a `PartMap`: for registered frames, where each pixel shows the same place of the scene.

    The reconstruction's maps see what the autoencoder cannot give back; a part missing from its
    place is given back as the bare place it shows, so the reconstruction error there is lower
    than on good parts. This map sees it: the place does not look as it does in good images."""

    def __init__(self, height: int, width: int, sigma: float, part_level: float, **kwargs):
        super().__init__(height, width, sigma, part_level, **kwargs)
        self.good_mean = self.add_weight(shape=(self.height, self.width), initializer="zeros", trainable=False,
                                         name="good_mean")

    def raw(self, x, reconstruction):
        import tensorflow as tf

        return self.blur(tf.square(x[..., 0] - self.good_mean))[..., None]


@keras.saving.register_keras_serializable(package="inspector")
class DefectProbability(SmoothedMap):
    """The discriminator's chance that each pixel is a defect (given as the second input, in place
    of the reconstruction), smoothed, as a `PartMap`: where good parts' chances are high (an edge
    the discriminator is unsure of), a high chance counts for less."""

    def raw(self, x, probability):
        return self.blur(probability[..., 0])[..., None]


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
        self.window_blur = GaussianBlur(self.height, self.width, self.window, mirror=True)
        self.smooth_blur = GaussianBlur(self.height, self.width, self.smooth, mirror=True)

    def raw(self, x, reconstruction):
        import tensorflow as tf

        x, r = x[..., 0], reconstruction[..., 0]
        # Local means of x, r, x^2 + r^2 and x r, blurred as one batch (the two variances are
        # only ever added).
        local = self.window_blur(tf.concat([x, r, x * x + r * r, x * r], axis=0))
        mx, mr, squares, xr = tf.split(local, 4, axis=0)
        means, squared_means = mx * mr, mx * mx + mr * mr
        ssim = ((2 * means + SSIM_C1) * (2 * (xr - means) + SSIM_C2)
                / ((squared_means + SSIM_C1) * (squares - squared_means + SSIM_C2)))
        return self.smooth_blur(1.0 - ssim)[..., None]

    def get_config(self):
        return {**super().get_config(), "window": self.window, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="inspector")
class Rescale(keras.layers.Layer):
    """A map divided by `unit`, a learnt (non-trainable) scalar: the typical image score of good
    parts (over the map's weight, if it has one), so maps of different models add on a common scale."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.unit = self.add_weight(shape=(), initializer="ones", trainable=False, name="unit")

    def call(self, x):
        return x / self.unit

    def compute_output_shape(self, input_shape):
        return input_shape
