"""The patch memory's Keras layer: what a saved patch-memory model needs to load and run, and
the denoising autoencoder's second opinion too.

The remembered images are weights of this layer, so the model is one `.keras` file that loads
with `safe_mode=True`. Serving imports this module (to know the layer); filling the memory and
learning its statistics is training code, in `patch_memory_fit`. The layer keeps its registered
name ("inspector>PatchMemory"), so saved models load whatever module defines it.
"""

from __future__ import annotations

from ...tf_setup import keras
from .regions import part_region

# Candidates are pre-selected on images shrunk by this factor (cheap, and blind to small
# defects, which is what a pre-selection should be).
SELECT_POOL = 4


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

    def coarse(self, x):
        """(B, H, W, 1) images -> (B, cells) their coarse views, as the memory holds them."""
        import tensorflow as tf

        pooled = tf.nn.avg_pool2d(x, SELECT_POOL, SELECT_POOL, "VALID")
        return tf.reshape(pooled, (tf.shape(x)[0], -1))

    def call(self, x):
        import tensorflow as tf

        h, w, r, k = self.height, self.width, self.search_radius, self.neighbours
        coarse = self.coarse(x)
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
        return best[..., None] * part_region(x, self.part_level)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "memory_size": self.memory_size, "height": self.height, "width": self.width,
            "neighbours": self.neighbours, "search_radius": self.search_radius,
            "patch_size": self.patch_size, "part_level": self.part_level,
        }
