"""The part region inside a model's graph, shared by the layers that keep their error to the part."""

from __future__ import annotations

# A level above any standardised grey level (they are clipped to [0, 1]): the region is then the
# whole input. For a frame registered or resized whole, where no part was segmented.
WHOLE_FRAME = 2.0


def part_region(x, level: float):
    """1 on the part (darker than `level` after standardisation) and a margin around it that
    keeps its outline and what sticks out; 0 on the background, so dust or a new belt counts
    for nothing. `x`: (B, H, W, 1)."""
    import tensorflow as tf

    # Each 2-D window done as a column then a row (the same mean over the window, cut at the
    # border, and the same maximum): half the time of the square windows.
    mean = tf.nn.avg_pool2d(tf.nn.avg_pool2d(x, (5, 1), 1, "SAME"), (1, 5), 1, "SAME")
    part = tf.cast(mean < level, tf.float32)
    return tf.nn.max_pool2d(tf.nn.max_pool2d(part, (7, 1), 1, "SAME"), (1, 7), 1, "SAME")
