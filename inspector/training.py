"""`inspector train`: load good images, fit the pipeline's architecture, calibrate, save the bundle.

Architecture-agnostic: how a model is fitted, and which good images its threshold is calibrated
on, is the architecture's business (`inspector.models`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import models
from .bundle import Bundle, images_fingerprint, library_versions, now_iso, save_bundle
from .calibration import choose_threshold, needs_defects, score_statistics, threshold_info
from .config import Pipeline
from .errors import ConfigError, ImageError, TrainingError
from .preprocess import list_images, preprocess
from .scoring import heat_scale

MIN_IMAGES = 4


@dataclass
class LoadedImages:
    paths: list[Path]
    arrays: np.ndarray
    skipped: list[tuple[Path, str]]


def load_folder(folder: str | Path, pipeline: Pipeline, on_image: Callable[[], None] | None = None) -> LoadedImages:
    """Preprocess every image in a folder (in parallel); unreadable files are listed, not fatal."""
    paths = list_images(folder)

    def load(path: Path):
        try:
            return preprocess(path, pipeline.preprocess)
        except ImageError as exc:
            return exc
        finally:
            if on_image:
                on_image()

    with ThreadPoolExecutor(max_workers=4) as pool:
        loaded = list(pool.map(load, paths))
    ok = [(p, a) for p, a in zip(paths, loaded) if not isinstance(a, ImageError)]
    skipped = [(p, a.reason) for p, a in zip(paths, loaded) if isinstance(a, ImageError)]
    arrays = np.stack([a for _, a in ok]) if ok else np.empty((0, *pipeline.preprocess.shape), np.float32)
    return LoadedImages([p for p, _ in ok], arrays, skipped)


def train_bundle(
    images: LoadedImages,
    out: Path,
    pipeline: Pipeline,
    seed: int = 0,
    epochs: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[Bundle, dict]:
    """Fit the pipeline's architecture on the good images, choose the threshold from the good
    images it did not learn from, and write the bundle to `out`."""
    if needs_defects(pipeline.threshold.policy):
        raise ConfigError(
            f"threshold policy {pipeline.threshold.policy!r} needs defect images; train with an "
            "adaptive policy, then run `inspector calibrate --defect DIR`"
        )
    if len(images.arrays) < MIN_IMAGES:
        raise TrainingError(f"need at least {MIN_IMAGES} readable good images to train, found {len(images.arrays)}")
    fitted = models.get(pipeline.model.architecture).fit(images.arrays, pipeline, seed, epochs, on_epoch)
    threshold = choose_threshold(fitted.scores, None, pipeline.threshold)
    bundle = Bundle(
        path=Path(out),
        pipeline=pipeline,
        threshold=threshold,
        threshold_info=threshold_info(pipeline.threshold, source=fitted.calibrated_on),
        calibration={
            "good": score_statistics(fitted.scores),
            "good_scores": [float(s) for s in fitted.scores],
            "defect_scores": [],
            "heat_scale": heat_scale(fitted.maps),
        },
        training={
            "images": fitted.trained_on,
            "held_out": fitted.held_out,
            "skipped": [f"{p.name}: {reason}" for p, reason in images.skipped],
            "fingerprint": images_fingerprint(images.paths),
            "epochs": fitted.epochs,
            "seed": seed,
            "seconds": round(fitted.seconds, 1),
            "loss": fitted.losses,
        },
        versions=library_versions(),
        created=now_iso(),
    )
    save_bundle(bundle, fitted.model)
    summary = {
        "model_dir": str(out),
        "pipeline": pipeline.name,
        "architecture": pipeline.model.architecture,
        "trained_on": fitted.trained_on,
        "held_out": fitted.held_out,
        "skipped": len(images.skipped),
        "epochs": fitted.epochs,
        "final_loss": fitted.losses[-1] if fitted.losses else None,
        "train_seconds": bundle.training["seconds"],
        "threshold": threshold,
        "policy": bundle.threshold_info["policy"],
        "calibrated_on": bundle.threshold_info["source"],
        "holdout_good": bundle.calibration["good"],
    }
    return bundle, summary
