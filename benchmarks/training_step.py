"""What a training step of a pipeline's denoising autoencoder costs: plain, compiled by XLA
(`compile_training`), and with two members compiled: the step `inspector train` runs. Random
frames of the pipeline's input size (the arithmetic does not depend on what the pixels show);
the median of several repeats, each the mean of `--steps` steps after a warm-up.

Usage (from the repository root):
    PYTHONPATH=. python benchmarks/training_step.py [--pipeline general] [--shape 128 128] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np

from inspector.models.denoising.fit import autoencoder, training_step
from inspector.models.pipeline_files import resolve_pipeline
from inspector.tf_setup import keras


def step_ms(settings, shape: tuple[int, int], steps: int, repeats: int) -> list[float]:
    step = training_step(autoencoder(settings, shape), settings, keras.optimizers.Adam(settings.learning_rate))
    x = np.random.default_rng(0).random((settings.batch_size, *shape, 1)).astype(np.float32)
    float(step(x, x))  # traced (and compiled) once
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            float(step(x, x))
        times.append((time.perf_counter() - started) / steps * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="general")
    parser.add_argument("--shape", type=int, nargs=2, default=None, help="input height and width (default: the pipeline's)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pipeline = resolve_pipeline(args.pipeline)
    shape = tuple(args.shape) if args.shape else pipeline.preprocess.shape
    base = pipeline.model.settings
    print(f"{pipeline.name}: input {shape[0]}x{shape[1]}, batch {base.batch_size}")
    for label, changes in [("plain", {"members": 1, "compile_training": False}),
                           ("compiled", {"members": 1, "compile_training": True}),
                           ("two members, compiled", {"members": 2, "compile_training": True})]:
        times = step_ms(dataclasses.replace(base, **changes), shape, args.steps, args.repeats)
        print(f"  {label}: {statistics.median(times):.0f} ms a step (median of {args.repeats}; "
              f"{min(times):.0f}-{max(times):.0f})", flush=True)


if __name__ == "__main__":
    main()
