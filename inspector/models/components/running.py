"""Running a trained Keras model over preprocessed arrays, and its outputs into scores.

`forward` runs the model (one traced graph, in chunks); `post_process` turns its outputs into
error maps and image scores (`inspector.scoring`); `score_arrays` does both. Serving
(`inference.Inferencer`) and every architecture's `fit` (calibration scores) go through these,
so a model is scored the same way when it is trained and when it judges parts. Imports no
TensorFlow until a model is run.
"""

from __future__ import annotations

import functools

import numpy as np

from ...scoring import error_maps, image_scores
from ...settings import ScoringConfig


def compiled(model):
    """The model's forward pass as one traced TensorFlow graph, any batch size, built once.

    Calling a Keras model eagerly runs layer by layer from Python, which costs more than the
    arithmetic for one small image.
    """
    forward = getattr(model, "_inspector_forward", None)
    if forward is None:
        import tensorflow as tf

        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        # A partial, not a lambda: TF counts traces per Python function (a lambda's code is shared by
        # every model), and several models traced once each (cross-validation folds) are not retracing.
        forward = tf.function(functools.partial(_call, model), input_signature=[spec])
        model._inspector_forward = forward
    return forward


def _call(model, x):
    return model(x, training=False)


def forward(model, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run the model over (N, H, W) arrays in chunks; returns its outputs (N, H, W): a
    reconstruction, or the error map itself, as the architecture declares."""
    run = compiled(model)
    outputs = []
    for start in range(0, len(batch), batch_size):
        chunk = np.ascontiguousarray(batch[start:start + batch_size, ..., None], dtype=np.float32)
        outputs.append(run(chunk).numpy()[..., 0])
    return np.concatenate(outputs) if outputs else np.empty((0,) + batch.shape[1:], np.float32)


def post_process(inputs: np.ndarray, outputs: np.ndarray, scoring: ScoringConfig) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and outputs (N, H, W) -> image scores (N,) and error maps (N, H, W)."""
    maps = error_maps(inputs, outputs, scoring)
    return image_scores(maps, scoring), maps


def score_arrays(model, arrays: np.ndarray, scoring: ScoringConfig, batch_size: int = 32):
    """Scores and error maps of preprocessed arrays (N, H, W) under a model: forward, then post_process."""
    return post_process(arrays, forward(model, arrays, batch_size), scoring)
