"""Save, load and verify a trained model directory.

A bundle is a directory with `model.keras` and `bundle.json`. `bundle.json` is written last
(through a temporary file and a rename), so a directory without it is an unfinished bundle.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__, models
from .config import Pipeline, pipeline_from_dict
from .errors import BundleError, ConfigError

BUNDLE_FORMAT = 1
MODEL_FILE = "model.keras"
META_FILE = "bundle.json"
REQUIRED_KEYS = ("format", "pipeline", "threshold", "calibration", "training", "versions")


@dataclass
class Bundle:
    path: Path
    pipeline: Pipeline
    threshold: float
    threshold_info: dict[str, Any]
    calibration: dict[str, Any]
    training: dict[str, Any]
    versions: dict[str, str]
    created: str
    model: Any = field(default=None, repr=False)

    def verdict(self, score: float) -> str:
        """A part is a defect when its score is strictly greater than the threshold; a score
        that is not a finite number (NaN, infinity) is an error, never ok."""
        if not math.isfinite(score):
            return "error"
        return "defect" if score > self.threshold else "ok"

    @property
    def heat_scale(self) -> float:
        """The error drawn at full red in heatmaps, from the calibration images."""
        return float(self.calibration.get("heat_scale", 1.0))

    @property
    def fingerprint(self) -> str:
        """Identifies this trained model: its training images and its weights file."""
        return self.training.get("model_sha256", "")[:16]

    def metadata(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "created": self.created,
            "pipeline": self.pipeline.to_dict(),
            "threshold": {"value": self.threshold, **self.threshold_info},
            "calibration": self.calibration,
            "training": self.training,
            "versions": self.versions,
        }


def library_versions() -> dict[str, str]:
    import numpy
    import tensorflow

    from .cv_setup import cv2
    from .tf_setup import keras

    return {
        "inspector": __version__,
        "python": platform.python_version(),
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
    }


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def images_fingerprint(paths: list[Path]) -> str:
    """One hash over the names and contents of the training images, in name order."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode())
        digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


def save_bundle(bundle: Bundle, model: Any | None = None) -> None:
    """Write the model (if given) and then bundle.json into `bundle.path`."""
    bundle.path.mkdir(parents=True, exist_ok=True)
    if model is not None:
        model.save(bundle.path / MODEL_FILE)
        bundle.model = model
    bundle.training["model_sha256"] = file_sha256(bundle.path / MODEL_FILE)
    write_json_atomic(bundle.path / META_FILE, bundle.metadata())


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_metadata(path: str | os.PathLike) -> Bundle:
    """Read and check bundle.json without loading the Keras model."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: no such model directory")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise BundleError(f"{path}: incomplete bundle, {META_FILE} is missing (was training interrupted?)")
    if not (path / MODEL_FILE).is_file():
        raise BundleError(f"{path}: incomplete bundle, {MODEL_FILE} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{meta_path}: unreadable bundle metadata: {exc}") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{meta_path}: bundle metadata is not a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise BundleError(f"{meta_path}: bundle metadata lacks {', '.join(missing)}")
    if meta["format"] != BUNDLE_FORMAT:
        raise BundleError(
            f"{path}: bundle format {meta['format']} is not supported by inspector {__version__} "
            f"(expects format {BUNDLE_FORMAT}); retrain or use a matching inspector version"
        )
    try:
        pipeline = pipeline_from_dict(meta["pipeline"], source=f"{meta_path} pipeline", stored=True)
    except ConfigError as exc:
        raise BundleError(str(exc)) from None
    threshold = dict(meta["threshold"])
    value = threshold.pop("value", None)
    if not isinstance(value, (int, float)):
        raise BundleError(f"{meta_path}: threshold value is missing or not a number")
    return Bundle(
        path=path,
        pipeline=pipeline,
        threshold=float(value),
        threshold_info=threshold,
        calibration=meta["calibration"],
        training=meta["training"],
        versions=meta["versions"],
        created=meta.get("created", ""),
    )


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read, check and load a bundle, including its Keras model (safe mode: no code is run)."""
    bundle = read_metadata(path)
    from .tf_setup import keras

    saved_keras = str(bundle.versions.get("keras", ""))
    if saved_keras.split(".")[0] != keras.__version__.split(".")[0]:
        raise BundleError(
            f"{bundle.path}: made with Keras {saved_keras or 'unknown'}, this is Keras "
            f"{keras.__version__}; retrain the model with this version"
        )
    model_path = bundle.path / MODEL_FILE
    expected = bundle.training.get("model_sha256")
    if expected and file_sha256(model_path) != expected:
        raise BundleError(f"{model_path}: the model file does not match its checksum in {META_FILE}")
    models.load_serving()  # registers every architecture's custom layers; no training code
    try:
        bundle.model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad archive
        raise BundleError(f"{model_path}: cannot load model: {exc}") from None
    height, width = bundle.pipeline.preprocess.shape
    if tuple(bundle.model.input_shape[1:]) != (height, width, 1):
        raise BundleError(
            f"{model_path}: model input {bundle.model.input_shape[1:]} does not match the "
            f"pipeline's image shape {height}x{width}"
        )
    return bundle


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
