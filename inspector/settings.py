"""Pipeline settings as typed, validated values: the leaf every other room reads settings from.

A pipeline describes one product line: how images are preprocessed, which model architecture
is trained (and its settings, declared by the architecture in `inspector.models`), how an error
map becomes an image score, and how the threshold is chosen. Every value is checked: a bad one
is a `ConfigError` naming its key.

This module imports nothing of `inspector` but `errors` and `validation`: reading a pipeline
file, which asks the model registry for an architecture's keys, is
`inspector.models.pipeline_files`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .validation import check_choice, check_range, settings_to_dict

NORMALIZATIONS = ("unit", "standardize")
POSES = ("none", "axis", "register")
# The largest zoom_tolerance (a share): a bundle's registration is checked against it too.
MAX_ZOOM_TOLERANCE = 0.3
ERROR_KINDS = ("squared", "absolute", "ssim", "distance")
REDUCERS = ("mean", "max", "topk_mean", "smoothed_max")
# Threshold policies and the ThresholdConfig key holding each one's parameter.
POLICY_PARAMETERS = {
    "mean_std": "k",
    "mean_multiple": "factor",
    "quantile": "false_reject_rate",
    "best_f1": None,
    "target_recall": "target_recall",
}
POLICIES = tuple(POLICY_PARAMETERS)
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
    # "register": no assumption of shape: the frame is registered (shifted, and turned when the
    # training images turn) to a reference made from the training images, then resized to
    # crop_width x crop_height, which training sets from `size` (the longer side) and the
    # training images' aspect (`inspector.registration`).
    pose: str = "none"
    crop_width: int = 192
    crop_height: int = 64
    crop_margin: float = 1.08
    # flatten_light: even out light falling off towards the corners, from one side or a hot spot.
    # pose = "axis": the frame is divided by its background's light before the part is found and
    # measured; pose = "register": the input by its light relative to the good images' (a smooth
    # surface fitted to their ratio, and for a part that moves what it leaves a few cells across,
    # a hot spot; `inspector.registration`). pose = "axis" only: check_view
    # refuses a part touching the frame's edge or a second part in the frame; size_tolerance
    # refuses a part whose length differs by more than this share from the parts trained on (0:
    # no check).
    flatten_light: bool = False
    check_view: bool = False
    size_tolerance: float = 0.0
    # pose = "register" only: the camera nearer or farther by up to this share is searched for
    # (0: not searched), beyond the shifts and turns the good images show.
    zoom_tolerance: float = 0.0
    # The camera's scale on the part (millimetres per photo pixel): hot regions get an area in
    # mm^2 as well as in pixels (0: not known).
    mm_per_pixel: float = 0.0

    def validate(self, where: str) -> None:
        check_range(f"{where}.size", self.size, 16, 1024)
        check_choice(f"{where}.normalize", self.normalize, NORMALIZATIONS)
        check_range(f"{where}.target_std", self.target_std, 0.01, 0.5)
        check_choice(f"{where}.pose", self.pose, POSES)
        for key in ("crop_width", "crop_height"):
            check_range(f"{where}.{key}", getattr(self, key), 16, 1024)
            if getattr(self, key) % 4:
                raise ConfigError(f"'{where}.{key}' must be a multiple of 4; got {getattr(self, key)}")
        check_range(f"{where}.crop_margin", self.crop_margin, 1.0, 3.0)
        check_range(f"{where}.size_tolerance", self.size_tolerance, 0.0, 0.9)
        check_range(f"{where}.zoom_tolerance", self.zoom_tolerance, 0.0, MAX_ZOOM_TOLERANCE)
        check_range(f"{where}.mm_per_pixel", self.mm_per_pixel, 0.0, 100.0)

    @property
    def assumes(self) -> str:
        """What this preprocessing assumes of the part, in words (`inspector pipelines`)."""
        if self.pose == "axis":
            return "one dark elongated part wholly in view on a light background (a screw), turned upright"
        if self.pose == "register":
            return "nothing of the part: the frame registered to the good images (any part)"
        return "the part in the same place in every frame (the whole frame resized)"

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the arrays this preprocessing produces."""
        return (self.crop_height, self.crop_width) if self.pose in ("axis", "register") else (self.size, self.size)


@dataclass(frozen=True)
class CommonModelKeys:
    """The [model] keys every architecture takes; each architecture declares its others.

    Which architectures exist is the model registry's to say: `inspector.models.pipeline_files`
    checks `architecture` against it.
    """

    architecture: str = "compact"
    # Share of the good images the threshold is calibrated on: held out from training, or the
    # size of a cross-validation fold.
    holdout_fraction: float = 0.2

    def validate(self, where: str) -> None:
        check_range(f"{where}.holdout_fraction", self.holdout_fraction, 0.05, 0.9)


COMMON_MODEL_KEYS = tuple(f.name for f in dataclasses.fields(CommonModelKeys))


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = CommonModelKeys.architecture
    holdout_fraction: float = CommonModelKeys.holdout_fraction
    # The architecture's own keys: an instance of its settings class (`inspector.models`).
    # Given by whoever builds the ModelConfig: `inspector.models.pipeline_files` reads them
    # from a pipeline file, with the architecture's defaults for keys not given. None only in
    # a pipeline made by hand that never builds or trains a model.
    settings: Any = None

    def validate(self, where: str) -> None:
        """The common keys and the architecture's own; that `settings` belong to `architecture`
        is checked where the registry is known (`pipeline_files.check_model`)."""
        CommonModelKeys(self.architecture, self.holdout_fraction).validate(where)
        if self.settings is None:
            raise ConfigError(f"'{where}' has no settings for architecture {self.architecture!r}")
        self.settings.validate(where)

    def to_dict(self) -> dict[str, Any]:
        """One flat table, as in a pipeline file: the common keys and the architecture's."""
        return {"architecture": self.architecture, "holdout_fraction": self.holdout_fraction,
                **settings_to_dict(self.settings)}


@dataclass(frozen=True)
class ScoringConfig:
    error: str = "squared"
    reduce: str = "mean"
    # topk_mean: the mean of this share of the highest-error pixels.
    topk_fraction: float = 0.01
    # smoothed_max: the error map is Gaussian-blurred with this sigma (pixels) before the max.
    smooth_sigma: float = 2.0

    def validate(self, where: str) -> None:
        check_choice(f"{where}.error", self.error, ERROR_KINDS)
        check_choice(f"{where}.reduce", self.reduce, REDUCERS)
        check_range(f"{where}.topk_fraction", self.topk_fraction, 1e-5, 1.0)
        check_range(f"{where}.smooth_sigma", self.smooth_sigma, 0.1, 50.0)


@dataclass(frozen=True)
class ThresholdConfig:
    policy: str = "mean_std"
    k: float = 2.5  # mean_std: mean + k * std of good scores
    factor: float = 2.0  # mean_multiple: factor * mean of good scores
    false_reject_rate: float = 0.05  # quantile: share of good parts allowed to be rejected
    target_recall: float = 0.9  # target_recall: share of defects that must be caught

    def validate(self, where: str) -> None:
        check_choice(f"{where}.policy", self.policy, POLICIES)
        check_range(f"{where}.k", self.k, -10.0, 100.0)
        check_range(f"{where}.factor", self.factor, 0.0, 1000.0)
        check_range(f"{where}.false_reject_rate", self.false_reject_rate, 0.0, 1.0)
        check_range(f"{where}.target_recall", self.target_recall, 0.0, 1.0)


@dataclass(frozen=True)
class Pipeline:
    name: str = "screw"
    description: str = ""
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "preprocess": settings_to_dict(self.preprocess),
            "model": self.model.to_dict(),
            "scoring": settings_to_dict(self.scoring),
            "threshold": settings_to_dict(self.threshold),
        }

    def replace(self, section: str, **changes: Any) -> Pipeline:
        """A copy with some settings of one section changed, validated again (for "model",
        whether the settings are those of the architecture is `pipeline_files.check_model`'s)."""
        updated = dataclasses.replace(getattr(self, section), **changes)
        updated.validate(section)
        return dataclasses.replace(self, **{section: updated})
