"""`inspector train`: load good images, hold some out, train, calibrate, save the bundle."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .bundle import Bundle, images_fingerprint, library_versions, now_iso, save_bundle
from .calibration import choose_threshold, needs_defects, score_statistics
from .config import Pipeline
from .errors import ConfigError, ImageError, TrainingError
from .inference import score_arrays
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


def split_holdout(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices for training and for calibration; the same seed gives the same split."""
    order = np.random.default_rng(seed).permutation(count)
    held = min(count - 2, max(2, int(round(count * fraction))))
    return np.sort(order[held:]), np.sort(order[:held])


def train_bundle(
    images: LoadedImages,
    out: Path,
    pipeline: Pipeline,
    seed: int = 0,
    epochs: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[Bundle, dict]:
    """Train on the good images, calibrate on the held-out ones and write the bundle to `out`."""
    from .model import train  # imported here: loading TensorFlow is slow

    if needs_defects(pipeline.threshold.policy):
        raise ConfigError(
            f"threshold policy {pipeline.threshold.policy!r} needs defect images; train with an "
            "adaptive policy, then run `inspector calibrate --defect DIR`"
        )
    if len(images.arrays) < MIN_IMAGES:
        raise TrainingError(f"need at least {MIN_IMAGES} readable good images to train, found {len(images.arrays)}")
    if pipeline.model.architecture == "patch_memory":
        model, losses, scores, maps, train_seconds, source = _remember(images.arrays, pipeline, seed)
        trained_on, held_out, epochs = len(images.arrays), len(scores), 0
    else:
        train_idx, hold_idx = split_holdout(len(images.arrays), pipeline.model.holdout_fraction, seed)
        started = time.perf_counter()
        model, losses = train(images.arrays[train_idx], pipeline.model, seed, epochs, on_epoch)
        train_seconds = time.perf_counter() - started
        scores, maps = score_arrays(model, images.arrays[hold_idx], pipeline.scoring)
        source = f"{len(hold_idx)} held-out good images"
        trained_on, held_out, epochs = len(train_idx), len(hold_idx), epochs or pipeline.model.epochs
    threshold = choose_threshold(scores, None, pipeline.threshold)
    bundle = Bundle(
        path=Path(out),
        pipeline=pipeline,
        threshold=threshold,
        threshold_info=threshold_info(pipeline, source=source),
        calibration={
            "good": score_statistics(scores),
            "good_scores": [float(s) for s in scores],
            "defect_scores": [],
            "heat_scale": heat_scale(maps),
        },
        training={
            "images": trained_on,
            "held_out": held_out,
            "skipped": [f"{p.name}: {reason}" for p, reason in images.skipped],
            "fingerprint": images_fingerprint(images.paths),
            "epochs": epochs,
            "seed": seed,
            "seconds": round(train_seconds, 1),
            "loss": losses,
        },
        versions=library_versions(),
        created=now_iso(),
    )
    save_bundle(bundle, model)
    summary = {
        "model_dir": str(out),
        "pipeline": pipeline.name,
        "architecture": pipeline.model.architecture,
        "trained_on": trained_on,
        "held_out": held_out,
        "skipped": len(images.skipped),
        "epochs": bundle.training["epochs"],
        "final_loss": losses[-1] if losses else None,
        "train_seconds": bundle.training["seconds"],
        "threshold": threshold,
        "policy": bundle.threshold_info["policy"],
        "calibrated_on": bundle.threshold_info["source"],
        "holdout_good": bundle.calibration["good"],
    }
    return bundle, summary


def _remember(arrays: np.ndarray, pipeline: Pipeline, seed: int):
    """Patch memory: calibrate by cross-validation, then remember every good image.

    Each fold (a `holdout_fraction` share) is scored by a memory of the other images, so every
    good image gets an honest distance map from a memory that never saw it. Those maps give the
    per-pixel statistics the distances are normalised by, and the calibration scores. The final
    memory keeps all images (a bigger memory matches more thread phases and head turns).
    """
    from .inference import reconstruct
    from .model import train

    folds = max(2, min(len(arrays), round(1 / pipeline.model.holdout_fraction)))
    order = np.random.default_rng(seed).permutation(len(arrays))
    fold_models = [(fold, train(arrays[np.setdiff1d(order, fold)], pipeline.model, seed)[0])
                   for fold in np.array_split(order, folds)]
    distances = np.empty(arrays.shape, np.float32)
    for fold, fold_model in fold_models:
        distances[fold] = reconstruct(fold_model, arrays[fold])
    started = time.perf_counter()
    model, losses = train(arrays, pipeline.model, seed)
    model.layers[-1].normalise_by(distances)
    seconds = time.perf_counter() - started
    scores, maps = np.empty(len(arrays)), np.empty(arrays.shape, np.float32)
    for fold, fold_model in fold_models:
        fold_model.layers[-1].normalise_by(distances)
        scores[fold], maps[fold] = score_arrays(fold_model, arrays[fold], pipeline.scoring)
    source = f"{len(arrays)} good images, {folds}-fold cross-validated (each scored by a memory without it)"
    return model, losses, scores, maps, seconds, source


def threshold_info(pipeline: Pipeline, source: str) -> dict:
    """How a threshold was chosen: the policy, its parameter, and from what data."""
    t = pipeline.threshold
    parameter = {
        "mean_std": {"k": t.k},
        "mean_multiple": {"factor": t.factor},
        "quantile": {"false_reject_rate": t.false_reject_rate},
        "best_f1": {},
        "target_recall": {"target_recall": t.target_recall},
    }[t.policy]
    return {"policy": t.policy, **parameter, "source": source, "chosen": now_iso()}
