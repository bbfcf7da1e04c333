"""Scoring images with a trained bundle: pre_process -> forward -> error maps -> scores.

Used by `score`, `evaluate`, `calibrate` and the daemon. It never imports training code.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .bundle import Bundle
from .config import ScoringConfig
from .errors import ImageError
from .preprocess import Exposure, preprocess
from .scoring import error_maps, image_scores


@dataclass
class Result:
    """The outcome for one image: a score and verdict, or an error with its reason."""

    path: Path
    verdict: str  # "ok", "defect" or "error"
    score: float | None = None
    error: str | None = None
    model_input: np.ndarray | None = None
    error_map: np.ndarray | None = None


def compiled(model):
    """The model's forward pass as one traced TensorFlow graph, any batch size, built once.

    Calling a Keras model eagerly runs layer by layer from Python, which costs more than the
    arithmetic for one small image.
    """
    forward = getattr(model, "_inspector_forward", None)
    if forward is None:
        import tensorflow as tf

        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        model._inspector_forward = forward
    return forward


def forward(model, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run the model over (N, H, W) arrays in chunks; returns its outputs (N, H, W): a
    reconstruction, or the error map itself, as the architecture declares."""
    forward = compiled(model)
    outputs = []
    for start in range(0, len(batch), batch_size):
        chunk = np.ascontiguousarray(batch[start:start + batch_size, ..., None], dtype=np.float32)
        outputs.append(forward(chunk).numpy()[..., 0])
    return np.concatenate(outputs) if outputs else np.empty((0,) + batch.shape[1:], np.float32)


def post_process(inputs: np.ndarray, outputs: np.ndarray, scoring: ScoringConfig) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and outputs (N, H, W) -> image scores (N,) and error maps (N, H, W)."""
    maps = error_maps(inputs, outputs, scoring)
    return image_scores(maps, scoring), maps


def score_arrays(model, arrays: np.ndarray, scoring: ScoringConfig, batch_size: int = 32):
    """Scores and error maps of preprocessed arrays (N, H, W) under a model: forward, then post_process."""
    return post_process(arrays, forward(model, arrays, batch_size), scoring)


class Inferencer:
    """Judges images with one bundle: `pre_process` a file, `forward` a batch, `judge` files."""

    def __init__(self, bundle: Bundle, threads: int | None = None):
        if bundle.model is None:
            raise ValueError("the bundle's model is not loaded; use load_bundle()")
        self.bundle = bundle
        self.pipeline = bundle.pipeline
        self.heat_scale = bundle.heat_scale
        # Decoding PNGs dominates; OpenCV releases the GIL, so threads decode in parallel.
        self._pool = ThreadPoolExecutor(max_workers=threads or min(4, os.cpu_count() or 1))

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Inferencer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pre_process(self, source, exposure: Exposure | None = None) -> np.ndarray:
        return preprocess(source, self.pipeline.preprocess, exposure)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return forward(self.bundle.model, batch)

    def verdict(self, score: float) -> str:
        return self.bundle.verdict(score)

    def judge(
        self,
        paths: Iterable[Path],
        batch_size: int = 32,
        exposure_for: Callable[[Path], Exposure | None] | None = None,
        keep_maps: bool = False,
    ) -> Iterator[Result]:
        """Score files in batches, in order; unreadable files come back as `error` results."""
        batch: list[Path] = []
        for path in paths:
            batch.append(Path(path))
            if len(batch) == batch_size:
                yield from self._judge_batch(batch, exposure_for, keep_maps)
                batch = []
        if batch:
            yield from self._judge_batch(batch, exposure_for, keep_maps)

    def _load(self, path: Path, exposure_for) -> np.ndarray | ImageError:
        try:
            return self.pre_process(path, exposure_for(path) if exposure_for else None)
        except ImageError as exc:
            return exc

    def _judge_batch(self, paths: list[Path], exposure_for, keep_maps: bool) -> list[Result]:
        loaded = list(self._pool.map(lambda p: self._load(p, exposure_for), paths))
        good = [i for i, item in enumerate(loaded) if not isinstance(item, ImageError)]
        results = [
            Result(path, "error", error=item.reason) if isinstance(item, ImageError) else None
            for path, item in zip(paths, loaded)
        ]
        if good:
            arrays = np.stack([loaded[i] for i in good])
            scores, maps = post_process(arrays, self.forward(arrays), self.pipeline.scoring)
            for j, i in enumerate(good):
                results[i] = Result(
                    paths[i], self.verdict(float(scores[j])), score=float(scores[j]),
                    model_input=arrays[j] if keep_maps else None,
                    error_map=maps[j] if keep_maps else None,
                )
        return results
