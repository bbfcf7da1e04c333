"""The part region inside a model's graph, shared by the layers that keep their error to the part."""

from __future__ import annotations


def part_region(x, level: float):
    """1 on the part (darker than `level` after standardisation) and a margin around it that
    keeps its outline and what sticks out; 0 on the background, so dust or a new belt counts
    for nothing. `x`: (B, H, W, 1)."""
    import tensorflow as tf

    part = tf.cast(tf.nn.avg_pool2d(x, 5, 1, "SAME") < level, tf.float32)
    return tf.nn.max_pool2d(part, 7, 1, "SAME")
