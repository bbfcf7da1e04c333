"""Training: load good images, fit the pipeline's architecture, calibrate, save the bundle.

Architecture-agnostic: how a model is fitted, and which good images its threshold is calibrated
on, is the architecture's business (`inspector.models`).
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import models, nuisance
from ..bundle import META_FILE, Bundle, images_fingerprint, library_versions, now_iso, save_bundle
from ..calibration import choose_threshold, needs_defects, score_statistics, threshold_info
from ..errors import ConfigError, ImageError, TrainingError
from ..formats import list_images
from ..preprocess import prepare, prepare_frame, read_frame
from ..registration import Registration, conform, light_copy, light_of, measure, working_of, working_shape
from ..scoring import heat_scale
from ..settings import Pipeline
from .folders import folder_images
from .progress import Progress, Warn, no_progress, no_warnings

MIN_IMAGES = 4
# Training for fewer than a quarter of the pipeline's epochs is warned about: a model trained
# that short (a quick try with --epochs) finds far fewer defects, with no other sign of it.
SHORT_TRAINING = 4
# With `pose = "register"` the model's input has `size` pixels on its longer side and the
# training images' aspect, each side a multiple of this (four halvings in the autoencoder).
SIDE_MULTIPLE = 16
# Pipelines that segment one part check a sample of this many good images before loading them
# all: when most of them cannot be prepared, the pipeline does not fit the part.
PROBE_IMAGES = 12


@dataclass
class LoadedImages:
    paths: list[Path]
    arrays: np.ndarray
    skipped: list[tuple[Path, str]]
    # (N, K, H, W): K copies of each image under random line nuisances, when asked for.
    variants: np.ndarray | None = None
    # The part's length as a share of the frame, per image (pose-normalised pipelines).
    lengths: list[float] = field(default_factory=list)
    # pose = "register": the reference the frames were registered to, and the pipeline they were
    # prepared with (its input size set from the training images' aspect).
    registration: Registration | None = None
    pipeline: Pipeline | None = None

    @property
    def part_length(self) -> float | None:
        """The typical part length the model was trained on (median), or None."""
        return float(np.median(self.lengths)) if self.lengths else None


def load_folder(
    folder: str | Path,
    pipeline: Pipeline,
    on_image: Callable[[], None] | None = None,
    copies: int | None = None,
    seed: int = 0,
) -> LoadedImages:
    """Preprocess every image in a folder (`load_images`)."""
    return load_images(list_images(folder), pipeline, on_image, copies, seed)


def load_images(
    paths: list[Path],
    pipeline: Pipeline,
    on_image: Callable[[], None] | None = None,
    copies: int | None = None,
    seed: int = 0,
) -> LoadedImages:
    """Preprocess image files (in parallel); unreadable files are listed, not fatal.

    With `copies` (default: as many as the pipeline's architecture asks for), each image is
    also preprocessed under that many random line nuisances, of those the settings name
    (`inspector.nuisance.augment`, fixed by `seed` and the image's place); a copy that can no
    longer be judged (the part pushed out of view, say) is replaced by the image itself.
    """
    paths = list(paths)
    registration = None
    if pipeline.preprocess.pose == "register":
        pipeline, registration = fit_registration(paths, pipeline)
    config = pipeline.preprocess
    spec = models.get(pipeline.model.architecture)
    if copies is None:
        copies = spec.nuisance_copies(pipeline.model.settings)
    names = spec.nuisance_names(pipeline.model.settings)

    def load(index: int):
        path = paths[index]
        try:
            frame = read_frame(path)
            prepared = prepare_frame(frame, config, path, registration=registration)
            variants = []
            rng = np.random.default_rng([seed, index])
            for _ in range(copies):
                try:
                    variants.append(prepare(nuisance.augment(frame, rng, names), config, path, registration=registration))
                except ImageError:
                    variants.append(prepared.array)
            return prepared, variants
        except ImageError as exc:
            return exc
        finally:
            if on_image:
                on_image()

    with ThreadPoolExecutor(max_workers=4) as pool:
        loaded = list(pool.map(load, range(len(paths))))
    ok = [(p, a) for p, a in zip(paths, loaded) if not isinstance(a, ImageError)]
    skipped = [(p, a.reason) for p, a in zip(paths, loaded) if isinstance(a, ImageError)]
    arrays = (np.stack([prepared.array for _, (prepared, _) in ok]) if ok
              else np.empty((0, *config.shape), np.float32))
    variants = np.stack([np.stack(v) for _, (_, v) in ok]) if ok and copies else None
    lengths = [prepared.relative_length for _, (prepared, _) in ok if prepared.relative_length is not None]
    return LoadedImages([p for p, _ in ok], arrays, skipped, variants, lengths, registration,
                        pipeline if registration is not None else None)


def fit_registration(paths: list[Path], pipeline: Pipeline) -> tuple[Pipeline, Registration]:
    """For `pose = "register"`: the model's input size from the training images' aspect, and the
    reference they are registered to, with the search their motion calls for
    (`inspector.registration.measure`). Unreadable images are left out here (and listed when
    they are loaded)."""

    keep_light = pipeline.preprocess.flatten_light

    def read(path: Path):
        """The frame's (height, width) and its copy as photographed at the working size, which
        its working copies are made from: frames are not kept, only copies."""
        try:
            frame = read_frame(path)
        except ImageError:
            return None
        return frame.shape[:2], light_copy(frame, working_shape(frame.shape[:2]))

    with ThreadPoolExecutor(max_workers=4) as pool:
        found = [r for r in pool.map(read, paths) if r is not None]
    if len(found) < MIN_IMAGES:
        raise TrainingError(f"need at least {MIN_IMAGES} readable good images to train, found {len(found)}")
    height, width = (float(np.median([shape[k] for shape, _ in found])) for k in (0, 1))
    longer = pipeline.preprocess.size // SIDE_MULTIPLE * SIDE_MULTIPLE
    aspect = min(height, width) / max(height, width)
    shorter = max(SIDE_MULTIPLE, round(longer * aspect / SIDE_MULTIPLE) * SIDE_MULTIPLE)
    crop_width, crop_height = (longer, shorter) if width >= height else (shorter, longer)
    shape = working_shape((round(height), round(width)))
    works = [conform(working_of(copy), shape) for _, copy in found]
    flats = [conform(working_of(copy, flat=True), shape) for _, copy in found] if keep_light else None
    registration = dataclasses.replace(measure(works, flats), max_zoom=pipeline.preprocess.zoom_tolerance)
    if keep_light:
        lights = [light_copy(copy, shape) for _, copy in found]
        registration = dataclasses.replace(registration, light=light_of(lights, flats if registration.flat else works,
                                                                         registration), fill=True,
                                           local_light=registration.flat)
    return pipeline.replace("preprocess", crop_width=crop_width, crop_height=crop_height), registration


def check_fits_part(paths: list[Path], pipeline: Pipeline) -> None:
    """A pipeline that segments one part (`pose = "axis"`) tried on a sample of the good images:
    `TrainingError` when it cannot prepare most of them (another kind of part), before hours
    are spent loading and training."""
    if pipeline.preprocess.pose != "axis" or len(paths) < MIN_IMAGES:
        return
    sample = [paths[i] for i in np.linspace(0, len(paths) - 1, min(PROBE_IMAGES, len(paths))).astype(int)]
    reasons = []
    for path in sample:
        try:
            prepare_frame(read_frame(path), pipeline.preprocess, path)
        except ImageError as exc:
            reasons.append(exc.reason)
    if len(reasons) * 2 > len(sample):
        raise TrainingError(
            f"pipeline {pipeline.name!r} cannot prepare {len(reasons)} of {len(sample)} good images tried "
            f"(e.g. {reasons[0]}): it assumes one dark elongated part wholly in view on a light background; "
            "for another part train with --pipeline general")


def train_bundle(
    images: LoadedImages,
    out: Path,
    pipeline: Pipeline,
    seed: int = 0,
    epochs: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    record: dict | None = None,
) -> tuple[Bundle, dict]:
    """Fit the pipeline's architecture on the good images, choose the threshold from the good
    images it did not learn from, and write the bundle to `out`. `record`: more to keep in the
    bundle's `training` (the folder trained on, the parent bundle)."""
    if needs_defects(pipeline.threshold.policy):
        raise ConfigError(
            f"threshold policy {pipeline.threshold.policy!r} needs defect images; train with an "
            "adaptive policy, then run `inspector calibrate --defect DIR`"
        )
    if len(images.arrays) < MIN_IMAGES:
        raise TrainingError(f"need at least {MIN_IMAGES} readable good images to train, found {len(images.arrays)}")
    pipeline = images.pipeline or pipeline  # with its input size set from the images (pose register)
    fitted = models.get(pipeline.model.architecture).fit(images.arrays, pipeline, seed, epochs, on_epoch,
                                                         images.variants)
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
            "part_length": images.part_length,
            **({"registration": images.registration.to_dict()} if images.registration is not None else {}),
            **(record or {}),
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
        **({"registration": images.registration.motion} if images.registration is not None else {}),
    }
    return bundle, summary


def train_folder(paths: list[Path], out: Path, pipeline: Pipeline, seed: int = 0, epochs: int | None = None,
                 record: dict | None = None, progress: Progress = no_progress, warn: Warn = no_warnings,
                 announce: Warn = no_warnings) -> tuple[Bundle, dict]:
    """Load the images (a progress bar), fit the pipeline's model (a bar per epoch, or one
    `announce`d line for a model fitted without epochs) and save the bundle to `out`:
    `train_bundle`'s (bundle, summary). Unreadable images are `warn`ed about and left out."""
    spec = models.get(pipeline.model.architecture)
    check_fits_part(paths, pipeline)
    with progress(len(paths), "Loading images") as bar:
        images = load_images(paths, pipeline, on_image=lambda: bar.update(1), seed=seed)
    for path, reason in images.skipped:
        warn(f"skipped {path}: {reason}")
    settings, fraction = pipeline.model.settings, pipeline.model.holdout_fraction
    total = spec.planned_epochs(settings, epochs, len(images.arrays), fraction)
    planned = spec.planned_epochs(settings, None, len(images.arrays), fraction)
    if total is not None and total * SHORT_TRAINING < planned:
        warn(f"training {total} epochs: far fewer than the {planned} epochs pipeline {pipeline.name} runs on "
             f"{len(images.arrays)} images; a model trained that short may pass defects the full training finds")
    if total is None:
        announce(spec.no_epochs_announcement.format(count=len(images.arrays)))
        return train_bundle(images, out, pipeline, seed=seed, record=record)
    # Passes done of all, the share done, time left and the last pass's loss: the epochs, then a
    # discriminator's training (if any) in passes of an epoch's batches, its loss named as its own.
    passes = spec.planned_passes(settings, epochs, len(images.arrays), fraction)

    def on_epoch(epoch: int, loss: float) -> None:
        bar.update(1, f"{'loss' if epoch < total else 'discriminator loss'} {loss:.5f}")

    with progress(passes, f"Training {pipeline.model.architecture}", item_show_func=lambda loss: loss,
                  show_pos=True) as bar:
        return train_bundle(images, out, pipeline, seed=seed, epochs=epochs, record=record, on_epoch=on_epoch)


def train_new(good_dir: Path, out: Path, pipeline: Pipeline, seed: int = 0, epochs: int | None = None,
              force: bool = False, progress: Progress = no_progress, warn: Warn = no_warnings,
              announce: Warn = no_warnings) -> tuple[Bundle, dict]:
    """`inspector train`: check the request (an --epochs the architecture cannot take, a bundle
    already in `out` without `force`, no images), then `train_folder` on the folder's images."""
    spec = models.get(pipeline.model.architecture)
    if epochs is not None and spec.planned_epochs(pipeline.model.settings, epochs) is None:
        raise ConfigError(f"--epochs: pipeline {pipeline.name} ({spec.name}) is fitted without epochs")
    if (out / META_FILE).exists() and not force:
        raise ConfigError(f"{out} already holds a model bundle; use --force to overwrite it")
    paths = folder_images(good_dir, "good")
    return train_folder(paths, out, pipeline, seed, epochs, {"folder": str(good_dir.resolve())}, progress, warn,
                        announce)
