"""Patch memory: a part is compared, patch by patch, with the most similar good parts.

Works on pose-normalised images (every part lies at the same place and angle, head left), so
a patch of a new part only needs comparing with the patches at about the same place on the
good parts the model remembers. The per-pixel distance to the closest good patch is the error
map: a dent, a scratch or a broken thread matches nothing the good parts showed there.

The remembered images are weights of a Keras layer, so the model is one `.keras` file that
loads with `safe_mode=True`. Serving imports this module (to know the layer); it holds no
training code.
"""

from __future__ import annotations

import numpy as np

from .tf_setup import keras

# Candidates are pre-selected on images shrunk by this factor (cheap, and blind to small
# defects, which is what a pre-selection should be).
SELECT_POOL = 4


def part_level(images: np.ndarray) -> float:
    """The grey level between part and background in the remembered images (median over images
    of the Otsu threshold), so serving needs no second segmentation."""
    from .preprocess import otsu_split

    return float(np.median([otsu_split(image, 2.0)[0] for image in images]))


@keras.saving.register_keras_serializable(package="inspector")
class PatchMemory(keras.layers.Layer):
    """(B, H, W, 1) images -> (B, H, W, 1) distance of each patch to the nearest good patch,
    relative to how far good parts usually are at that pixel.

    For each image the `neighbours` most similar remembered images (on a coarse view) are
    searched: every pixel's `patch_size` square patch is compared with the patches of those
    images shifted by up to `search_radius` pixels (the thread of a screw is never in quite the
    same place), and the smallest mean squared difference is kept. Pixels away from the part
    (background brighter than `part_level` after standardisation, plus a margin) get 0, so
    dust or a new conveyor belt does not make a good part look bad.
    """

    def __init__(self, memory_size: int, height: int, width: int, neighbours: int,
                 search_radius: int, patch_size: int, part_level: float, **kwargs):
        super().__init__(**kwargs)
        self.memory_size = int(memory_size)
        self.height, self.width = int(height), int(width)
        self.neighbours = int(min(neighbours, memory_size))
        self.search_radius = int(search_radius)
        self.patch_size = int(patch_size)
        self.part_level = float(part_level)
        self.memory = self.add_weight(
            shape=(self.memory_size, self.height, self.width), initializer="zeros",
            trainable=False, name="memory",
        )
        # How far good parts typically are from their matches at each pixel: the head's
        # recess and the thread edges vary more than the shank. Distances are divided by it.
        self.position_mean = self.add_weight(
            shape=(self.height, self.width), initializer="zeros", trainable=False, name="position_mean")
        self.position_scale = self.add_weight(
            shape=(self.height, self.width), initializer="ones", trainable=False, name="position_scale")
        coarse = (self.height // SELECT_POOL) * (self.width // SELECT_POOL)
        self.coarse_memory = self.add_weight(
            shape=(self.memory_size, coarse), initializer="zeros", trainable=False, name="coarse_memory",
        )

    def remember(self, images: np.ndarray) -> None:
        """Store good images (N, H, W) as the memory."""
        images = np.asarray(images, np.float32)
        if images.shape != (self.memory_size, self.height, self.width):
            raise ValueError(f"memory expects {(self.memory_size, self.height, self.width)}, got {images.shape}")
        self.memory.assign(images)
        self.coarse_memory.assign(np.asarray(self._coarse(images[..., None])))

    def normalise_by(self, good_maps: np.ndarray) -> None:
        """Learn per-pixel statistics from distance maps of good images the memory does not hold
        (cross-validation): later maps are (distance - mean) / spread, spread smoothed."""
        from .cv_setup import cv2

        good_maps = np.asarray(good_maps, np.float32)
        spread = good_maps.std(axis=0)
        self.position_mean.assign(good_maps.mean(axis=0))
        self.position_scale.assign(cv2.GaussianBlur(spread, (0, 0), 2.0) + float(spread.mean()) + 1e-12)

    def _coarse(self, x):
        import tensorflow as tf

        pooled = tf.nn.avg_pool2d(x, SELECT_POOL, SELECT_POOL, "VALID")
        return tf.reshape(pooled, (tf.shape(x)[0], -1))

    def call(self, x):
        import tensorflow as tf

        h, w, r, k = self.height, self.width, self.search_radius, self.neighbours
        coarse = self._coarse(x)
        # Squared distances to every remembered image, as |a|^2 - 2ab + |b|^2 (one matmul).
        dist = (tf.reduce_sum(coarse**2, 1, keepdims=True)
                - 2.0 * tf.matmul(coarse, self.coarse_memory, transpose_b=True)
                + tf.reduce_sum(self.coarse_memory**2, 1)[None, :])
        _, nearest = tf.math.top_k(-dist, k=k)
        # Channels last, the neighbours as channels: pooling is vectorised across channels.
        refs = tf.transpose(tf.gather(self.memory, nearest), (0, 2, 3, 1))  # (B, H, W, K)
        refs = tf.pad(refs, [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
        best = None
        for dy in range(2 * r + 1):
            for dx in range(2 * r + 1):
                diff = tf.square(refs[:, dy:dy + h, dx:dx + w, :] - x)
                # Patches are compared on a 2-pixel grid: mean of 2x2 cells, then of
                # (patch_size / 2)^2 cells. Much cheaper than a dense stride-1 comparison.
                cells = tf.nn.avg_pool2d(diff, 2, 2, "VALID")
                patch = tf.reduce_min(tf.nn.avg_pool2d(cells, self.patch_size // 2, 1, "SAME"), axis=-1)
                best = patch if best is None else tf.minimum(best, patch)
        best = tf.image.resize(best[..., None], (h, w), method="bilinear")[..., 0]
        best = (best - self.position_mean) / self.position_scale
        # The part: darker than the background; a margin keeps its outline and what sticks out.
        part = tf.cast(tf.nn.avg_pool2d(x, 5, 1, "SAME") < self.part_level, tf.float32)
        part = tf.nn.max_pool2d(part, 7, 1, "SAME")
        return best[..., None] * part

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "memory_size": self.memory_size, "height": self.height, "width": self.width,
            "neighbours": self.neighbours, "search_radius": self.search_radius,
            "patch_size": self.patch_size, "part_level": self.part_level,
        }


def build_patch_memory(images: np.ndarray, neighbours: int, search_radius: int, patch_size: int) -> "keras.Model":
    """A model that remembers `images` (N, H, W) and maps an image to its distance map."""
    count, height, width = images.shape
    inputs = keras.Input(shape=(height, width, 1))
    layer = PatchMemory(count, height, width, neighbours, search_radius, patch_size, part_level(images))
    model = keras.Model(inputs, layer(inputs), name="patch_memory")
    layer.remember(images)
    return model
