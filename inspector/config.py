"""The pipeline TOML file -> typed, validated settings.

A pipeline file describes one product line: how images are preprocessed, which model
architecture is trained, how an error map becomes an image score, and how the threshold is
chosen. Every key is checked: an unknown key or a bad value is a `ConfigError` naming it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

ARCHITECTURES = ("compact", "seed003", "patch_memory")
# Autoencoders reconstruct the image; patch memory returns a distance map itself.
AUTOENCODERS = ("compact", "seed003")
NORMALIZATIONS = ("unit", "standardize")
POSES = ("none", "axis")
ERROR_KINDS = ("squared", "absolute", "ssim", "distance")
REDUCERS = ("mean", "max", "topk_mean", "smoothed_max")
POLICIES = ("mean_std", "mean_multiple", "quantile", "best_f1", "target_recall")
# Policies that need labelled defect images to choose a threshold.
SUPERVISED_POLICIES = ("best_f1", "target_recall")


@dataclass(frozen=True)
class PreprocessConfig:
    size: int = 200
    # "unit": intensities scaled to [0, 1]. "standardize": each image mapped to mean 0.5 and
    # standard deviation `target_std`, so a change of exposure (gain/offset) cancels out.
    normalize: str = "unit"
    target_std: float = 0.15
    # Pose normalisation. "none": the whole frame is resized to size x size. "axis": the part
    # is segmented, turned so its long axis is horizontal with its wider end (a screw's head)
    # on the left, and cropped to crop_width x crop_height; the crop spans the part's length
    # times crop_margin. "standardize" then measures mean and std on the part, not the frame.
    pose: str = "none"
    crop_width: int = 192
    crop_height: int = 64
    crop_margin: float = 1.08

    def validate(self, where: str) -> None:
        _check_range(f"{where}.size", self.size, 16, 1024)
        _check_choice(f"{where}.normalize", self.normalize, NORMALIZATIONS)
        _check_range(f"{where}.target_std", self.target_std, 0.01, 0.5)
        _check_choice(f"{where}.pose", self.pose, POSES)
        for key in ("crop_width", "crop_height"):
            _check_range(f"{where}.{key}", getattr(self, key), 16, 1024)
            if getattr(self, key) % 4:
                raise ConfigError(f"'{where}.{key}' must be a multiple of 4; got {getattr(self, key)}")
        _check_range(f"{where}.crop_margin", self.crop_margin, 1.0, 3.0)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the arrays this preprocessing produces."""
        return (self.crop_height, self.crop_width) if self.pose == "axis" else (self.size, self.size)


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "compact"
    # Filters of each encoder stage (compact only; seed003 is fixed).
    filters: tuple[int, ...] = (16, 32, 64)
    latent_filters: int = 32
    # Channels each decoder stage outputs (compact only); empty mirrors `filters`. Narrow stages
    # at high resolution keep the decoder cheap: it does most of the arithmetic.
    decoder_filters: tuple[int, ...] = ()
    epochs: int = 30
    batch_size: int = 16
    learning_rate: float = 1e-3
    # Share of the good images held out from training to calibrate the threshold.
    holdout_fraction: float = 0.2
    # patch_memory only: how many remembered good images each part is compared with, how far
    # (pixels) a patch may move to find its match, and the patch side (pixels, even).
    neighbours: int = 10
    search_radius: int = 2
    patch_size: int = 4

    def validate(self, where: str) -> None:
        _check_choice(f"{where}.architecture", self.architecture, ARCHITECTURES)
        if not self.filters or any(not isinstance(f, int) or f < 1 or f > 512 for f in self.filters):
            raise ConfigError(f"{where}.filters must be a non-empty list of integers in 1..512")
        if len(self.filters) > 5:
            raise ConfigError(f"{where}.filters has at most 5 stages, got {len(self.filters)}")
        if self.decoder_filters and (
            len(self.decoder_filters) != len(self.filters)
            or any(not isinstance(f, int) or f < 1 or f > 512 for f in self.decoder_filters)
        ):
            raise ConfigError(f"{where}.decoder_filters must be empty or {len(self.filters)} integers in 1..512")
        _check_range(f"{where}.latent_filters", self.latent_filters, 1, 512)
        _check_range(f"{where}.epochs", self.epochs, 1, 10_000)
        _check_range(f"{where}.batch_size", self.batch_size, 1, 1024)
        _check_range(f"{where}.learning_rate", self.learning_rate, 1e-7, 1.0)
        _check_range(f"{where}.holdout_fraction", self.holdout_fraction, 0.05, 0.9)
        _check_range(f"{where}.neighbours", self.neighbours, 1, 1000)
        _check_range(f"{where}.search_radius", self.search_radius, 0, 8)
        _check_range(f"{where}.patch_size", self.patch_size, 2, 32)
        if self.patch_size % 2:
            raise ConfigError(f"'{where}.patch_size' must be even; got {self.patch_size}")


@dataclass(frozen=True)
class ScoringConfig:
    error: str = "squared"
    reduce: str = "mean"
    # topk_mean: the mean of this share of the highest-error pixels.
    topk_fraction: float = 0.01
    # smoothed_max: the error map is Gaussian-blurred with this sigma (pixels) before the max.
    smooth_sigma: float = 2.0

    def validate(self, where: str) -> None:
        _check_choice(f"{where}.error", self.error, ERROR_KINDS)
        _check_choice(f"{where}.reduce", self.reduce, REDUCERS)
        _check_range(f"{where}.topk_fraction", self.topk_fraction, 1e-5, 1.0)
        _check_range(f"{where}.smooth_sigma", self.smooth_sigma, 0.1, 50.0)


@dataclass(frozen=True)
class ThresholdConfig:
    policy: str = "mean_std"
    k: float = 2.5  # mean_std: mean + k * std of good scores
    factor: float = 2.0  # mean_multiple: factor * mean of good scores
    false_reject_rate: float = 0.05  # quantile: share of good parts allowed to be rejected
    target_recall: float = 0.9  # target_recall: share of defects that must be caught

    def validate(self, where: str) -> None:
        _check_choice(f"{where}.policy", self.policy, POLICIES)
        _check_range(f"{where}.k", self.k, -10.0, 100.0)
        _check_range(f"{where}.factor", self.factor, 0.0, 1000.0)
        _check_range(f"{where}.false_reject_rate", self.false_reject_rate, 0.0, 1.0)
        _check_range(f"{where}.target_recall", self.target_recall, 0.0, 1.0)


@dataclass(frozen=True)
class Pipeline:
    name: str = "screw"
    description: str = ""
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["model"]["filters"] = list(self.model.filters)
        data["model"]["decoder_filters"] = list(self.model.decoder_filters)
        return data

    def replace(self, section: str, **changes: Any) -> Pipeline:
        """A copy with some settings of one section changed, validated again."""
        updated = dataclasses.replace(getattr(self, section), **changes)
        updated.validate(section)
        return dataclasses.replace(self, **{section: updated})


_SECTIONS = {
    "preprocess": PreprocessConfig,
    "model": ModelConfig,
    "scoring": ScoringConfig,
    "threshold": ThresholdConfig,
}


def pipeline_from_dict(data: dict[str, Any], source: str = "pipeline") -> Pipeline:
    """Build a validated `Pipeline` from plain data (a parsed TOML file or a bundle's JSON)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table of settings")
    unknown = set(data) - {"name", "description", *_SECTIONS}
    if unknown:
        raise ConfigError(f"{source}: unknown key {sorted(unknown)[0]!r}")
    name = data.get("name", "screw")
    description = data.get("description", "")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: 'name' must be a non-empty string")
    if not isinstance(description, str):
        raise ConfigError(f"{source}: 'description' must be a string")
    sections = {key: _section(cls, data.get(key, {}), key, source) for key, cls in _SECTIONS.items()}
    architecture, error = sections["model"].architecture, sections["scoring"].error
    if (architecture in AUTOENCODERS) == (error == "distance"):
        raise ConfigError(
            f"{source}: 'scoring.error' = {error!r} does not fit 'model.architecture' = {architecture!r}: "
            "patch_memory needs \"distance\", autoencoders need squared, absolute or ssim"
        )
    return Pipeline(name=name, description=description, **sections)


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline TOML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read pipeline file {path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return pipeline_from_dict(data, source=str(path))


PIPELINES_DIR = Path(__file__).resolve().parent.parent / "pipelines"


def resolve_pipeline(name_or_path: str | Path) -> Pipeline:
    """Load a pipeline given a TOML path, or the name of one in the repository's pipelines/."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        candidate = PIPELINES_DIR / f"{name_or_path}.toml"
        if not candidate.exists():
            known = ", ".join(sorted(p.stem for p in PIPELINES_DIR.glob("*.toml"))) or "none"
            raise ConfigError(f"no pipeline named {str(name_or_path)!r} (known: {known})")
        path = candidate
    return load_pipeline(path)


def _section(cls: type, raw: Any, key: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{key}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in fields:
            raise ConfigError(f"{source}: unknown key '{key}.{name}'")
        values[name] = _coerce(f"{key}.{name}", value, fields[name].default, source)
    try:
        config = cls(**values)
        config.validate(key)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


def _coerce(where: str, value: Any, default: Any, source: str) -> Any:
    """Check a value against the type of the field's default; ints are accepted for floats."""
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{where}' must be a list")
        return tuple(value)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{source}: '{where}' must be of type {type(default).__name__}, got {value!r}")
    return value


def _check_choice(where: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"'{where}' must be one of {', '.join(choices)}; got {value!r}")


def _check_range(where: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"'{where}' must be between {low} and {high}; got {value!r}")
