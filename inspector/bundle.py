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
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__, models
from .digest import file_sha256
from .errors import BundleError, ConfigError
from .models.pipeline_files import pipeline_from_dict
from .registration import Registration
from .settings import POLICY_PARAMETERS, Pipeline

BUNDLE_FORMAT = 1
MODEL_FILE = "model.keras"
META_FILE = "bundle.json"
REQUIRED_KEYS = ("format", "pipeline", "threshold", "calibration", "training", "versions")
# bundle.json records the SHA-256 of its own content (canonical JSON of every other key), which
# save_bundle (train, calibrate) rewrites: a hand edit is refused until accepted on purpose.
CHECKSUM_KEY = "checksum"


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


def images_fingerprint(paths: list[Path]) -> str:
    """One hash over the names and contents of the training images, in name order."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode())
        digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


def save_bundle(bundle: Bundle, model: Any | None = None) -> None:
    """Write the model (if given) and then bundle.json, checked and with its checksum, into `bundle.path`."""
    bundle.path.mkdir(parents=True, exist_ok=True)
    if model is not None:
        model.save(bundle.path / MODEL_FILE)
        bundle.model = model
    bundle.training["model_sha256"] = file_sha256(bundle.path / MODEL_FILE)
    meta = bundle.metadata()
    _validate(meta, bundle.path / META_FILE)
    _seal(bundle.path / META_FILE, meta)


def metadata_checksum(meta: dict[str, Any]) -> str:
    """SHA-256 of bundle.json's content: canonical JSON of every key but the checksum itself."""
    body = {key: value for key, value in meta.items() if key != CHECKSUM_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def _seal(meta_path: Path, meta: dict[str, Any]) -> None:
    write_json_atomic(meta_path, {**meta, CHECKSUM_KEY: metadata_checksum(meta)})


def accept_edits(path: str | os.PathLike) -> Bundle:
    """bundle.json was edited on purpose: check every field as loading does, then record the
    checksum of its new content (`inspector bundle verify DIR --accept-edits`). model.keras is
    still checked against its own checksum when the bundle is loaded."""
    path = Path(path)
    bundle = read_metadata(path, accept_edits=True)
    _seal(path / META_FILE, _read_json(path / META_FILE))
    return bundle


def write_json_atomic(path: Path, data: dict[str, Any], sort_keys: bool = True) -> None:
    """`data` as JSON in `path`, through a temporary file of its own and a rename: a reader (or a
    kill) never finds half a file, and two writers never share the temporary one."""
    tmp = path.parent / f".tmp-{secrets.token_hex(8)}.json"
    # Mode 0666 less the umask, as for any new file (model.keras too); mkstemp would make it 0600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=sort_keys)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_metadata(path: str | os.PathLike, accept_edits: bool = False) -> Bundle:
    """Read and check bundle.json without loading the Keras model: every field (types, finite
    numbers), then its checksum (unless `accept_edits`)."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: no such model directory")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise BundleError(f"{path}: incomplete bundle, {META_FILE} is missing (was training interrupted?)")
    if not (path / MODEL_FILE).is_file():
        raise BundleError(f"{path}: incomplete bundle, {MODEL_FILE} is missing")
    meta = _read_json(meta_path)
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
    _validate(meta, meta_path)
    if not accept_edits:
        _check_checksum(meta, meta_path)
    try:
        pipeline = pipeline_from_dict(meta["pipeline"], source=f"{meta_path} pipeline", stored=True)
    except ConfigError as exc:
        raise BundleError(str(exc)) from None
    threshold = dict(meta["threshold"])
    value = threshold.pop("value")
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


def _read_json(meta_path: Path) -> Any:
    def not_finite(word: str):
        raise _NotFinite(word)

    def finite(word: str) -> float:
        value = float(word)
        return value if math.isfinite(value) else not_finite(word)

    try:
        return json.loads(meta_path.read_text(encoding="utf-8"), parse_constant=not_finite, parse_float=finite)
    except _NotFinite as exc:
        raise BundleError(f"{meta_path}: bundle metadata holds {exc}, which is not a finite number") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{meta_path}: unreadable bundle metadata: {exc}") from None


class _NotFinite(Exception):
    """NaN, Infinity or a number too large for a float in bundle.json."""


def _check_checksum(meta: dict[str, Any], meta_path: Path) -> None:
    accept = f"check it, then accept it with `inspector bundle verify {meta_path.parent} --accept-edits`"
    recorded = meta.get(CHECKSUM_KEY)
    if recorded is None:
        raise BundleError(f"{meta_path}: no checksum (written by an older inspector, or edited by hand); {accept}")
    if recorded != metadata_checksum(meta):
        raise BundleError(f"{meta_path}: bundle.json changed since inspector wrote it (its checksum does not "
                          f"match; edited by hand?); {accept}, or run `inspector calibrate`")


def _validate(meta: dict[str, Any], meta_path: Path) -> None:
    """Every field bundle.json must have, of its type; numbers finite. Raises `BundleError`
    naming the field. Keys it does not know are left alone (the checksum covers them)."""
    def fail(key: str, what: str):
        raise BundleError(f"{meta_path}: {key} must be {what}")

    def section(key: str) -> dict:
        value = meta.get(key)
        return value if isinstance(value, dict) else fail(key, "an object")

    def number(table: dict, key: str, name: str, positive: bool = False, integer: bool = False) -> None:
        value = table.get(key)
        if not _finite(value) or (integer and not isinstance(value, int)):
            fail(name, "an integer" if integer else f"a finite number, got {value!r}")
        if positive and value <= 0:
            fail(name, "greater than 0")

    def numbers(table: dict, key: str, name: str) -> None:
        value = table.get(key)
        if not isinstance(value, list) or not all(_finite(v) for v in value):
            fail(name, "a list of finite numbers")

    def text(table: dict, key: str, name: str, pattern: str | None = None) -> None:
        value = table.get(key)
        if not isinstance(value, str) or pattern is not None and not re.fullmatch(pattern, value):
            fail(name, "text" if pattern is None else f"text matching {pattern}")

    if "created" in meta:
        text(meta, "created", "created")
    threshold = section("threshold")
    number(threshold, "value", "threshold.value")
    policy = threshold.get("policy")
    if policy not in POLICY_PARAMETERS:
        fail("threshold.policy", f"one of {', '.join(POLICY_PARAMETERS)}")
    for parameter in set(POLICY_PARAMETERS.values()) - {None}:
        if parameter in threshold or parameter == POLICY_PARAMETERS[policy]:
            number(threshold, parameter, f"threshold.{parameter}")
    for key in ("source", "chosen"):
        text(threshold, key, f"threshold.{key}")
    calibration = section("calibration")
    number(calibration, "heat_scale", "calibration.heat_scale", positive=True)
    for key in ("good_scores", "defect_scores"):
        numbers(calibration, key, f"calibration.{key}")
    good = calibration.get("good")
    if not isinstance(good, dict):
        fail("calibration.good", "an object")
    for key in good:
        number(good, key, f"calibration.good.{key}", integer=key == "count")
    training = section("training")
    for key in ("images", "held_out", "epochs", "seed"):
        number(training, key, f"training.{key}", integer=True)
    number(training, "seconds", "training.seconds")
    numbers(training, "loss", "training.loss")
    if not isinstance(training.get("skipped"), list) or not all(isinstance(v, str) for v in training["skipped"]):
        fail("training.skipped", "a list of text")
    for key in ("fingerprint", "model_sha256"):
        text(training, key, f"training.{key}", "[0-9a-f]{64}")
    # Optional (older bundles lack them): the folder trained on; from `update`, the parent's
    # fingerprint and the parts QA passed that were added.
    if "folder" in training:
        text(training, "folder", "training.folder")
    if "parent" in training:
        text(training, "parent", "training.parent", "[0-9a-f]{16}")
    added = training.get("added", [])
    if not isinstance(added, list) or not all(
            isinstance(a, dict) and isinstance(a.get("path"), str) and isinstance(a.get("inspection"), int)
            for a in added):
        fail("training.added", "a list of objects with an inspection id and a path")
    if "registration" in training:  # pose = "register": the reference frames are registered to
        try:
            Registration.from_dict(training["registration"])
        except (KeyError, TypeError, ValueError) as exc:
            fail("training.registration", f"an object with a reference image, max_shift and max_angle, "
                 f"and optionally max_zoom, the good images' light, flat, fill and local_light ({exc})")
    versions = section("versions")
    for key, value in versions.items():
        if not isinstance(value, str):
            fail(f"versions.{key}", "text")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
