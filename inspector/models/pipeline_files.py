"""The pipeline TOML file -> a validated `Pipeline`, with the model registry's help.

The settings themselves are `inspector.settings` (a leaf); this module reads them from a file
or from a bundle's stored pipeline, and checks what only the registry knows: which
architectures exist, which `[model]` keys each one takes, and which `scoring.error` fits its
output. Every key is checked: an unknown key or a bad value is a `ConfigError` naming it.
The shipped pipelines (`inspector/pipelines/`, package data) are found here by name.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..settings import (
    COMMON_MODEL_KEYS,
    CommonModelKeys,
    ModelConfig,
    Pipeline,
    PreprocessConfig,
    ScoringConfig,
    ThresholdConfig,
)
from ..validation import check_choice, settings_from_dict
from . import get, names

# Model keys of every architecture, which bundles written before the model registry stored
# whatever the architecture: they are dropped when such a bundle is read.
_LEGACY_MODEL_KEYS = ("filters", "latent_filters", "decoder_filters", "epochs", "batch_size",
                      "learning_rate", "neighbours", "search_radius", "patch_size")
_SECTIONS = ("preprocess", "model", "scoring", "threshold")


@dataclass(frozen=True)
class _RegisteredModelKeys(CommonModelKeys):
    """The common [model] keys, the architecture checked against the registry first."""

    def validate(self, where: str) -> None:
        check_choice(f"{where}.architecture", self.architecture, names())
        super().validate(where)


def default_model(architecture: str = CommonModelKeys.architecture) -> ModelConfig:
    """A `ModelConfig` of `architecture` with its settings' defaults."""
    return ModelConfig(architecture, settings=get(architecture).settings())


def check_model(config: ModelConfig, where: str = "model") -> None:
    """`ModelConfig.validate`, and that its settings are those of a known architecture."""
    _RegisteredModelKeys(config.architecture, config.holdout_fraction).validate(where)
    if type(config.settings) is not get(config.architecture).settings:
        raise ConfigError(f"'{where}' settings are not those of architecture {config.architecture!r}")
    config.validate(where)


def _model_section(raw: Any, source: str, stored: bool) -> ModelConfig:
    """[model]: the common keys, then the keys the architecture declares (any other is refused)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [model] must be a table")
    common = {k: v for k, v in raw.items() if k in COMMON_MODEL_KEYS}
    common = settings_from_dict(_RegisteredModelKeys, common, "model", source)
    spec = get(common.architecture)
    own = {k: v for k, v in raw.items() if k not in COMMON_MODEL_KEYS}
    if stored:
        own = {k: v for k, v in own.items() if k in spec.keys or k not in _LEGACY_MODEL_KEYS}
    hint = f" (architecture {spec.name!r} takes: {', '.join(COMMON_MODEL_KEYS + spec.keys)})"
    settings = settings_from_dict(spec.settings, own, "model", source, hint)
    return ModelConfig(common.architecture, common.holdout_fraction, settings)


def pipeline_from_dict(data: dict[str, Any], source: str = "pipeline", stored: bool = False) -> Pipeline:
    """Build a validated `Pipeline` from plain data: a parsed TOML file, or with `stored` the
    pipeline a bundle saved (which, from older versions, may hold other architectures' keys)."""
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
    sections = {
        "preprocess": settings_from_dict(PreprocessConfig, data.get("preprocess", {}), "preprocess", source),
        "model": _model_section(data.get("model", {}), source, stored),
        "scoring": settings_from_dict(ScoringConfig, data.get("scoring", {}), "scoring", source),
        "threshold": settings_from_dict(ThresholdConfig, data.get("threshold", {}), "threshold", source),
    }
    architecture, error = sections["model"].architecture, sections["scoring"].error
    spec = get(architecture)
    if error not in spec.errors:
        raise ConfigError(
            f"{source}: 'scoring.error' = {error!r} does not fit 'model.architecture' = {architecture!r}: "
            f"it outputs {spec.output_words}, scored with error {' or '.join(map(repr, spec.errors))}"
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


# The pipelines shipped with inspector: package data, so installs from a wheel have them too.
PIPELINES_DIR = Path(__file__).resolve().parent.parent / "pipelines"


def pipeline_names() -> list[str]:
    """Names of the shipped pipelines (inspector/pipelines/NAME.toml), sorted."""
    return sorted(p.stem for p in PIPELINES_DIR.glob("*.toml"))


def resolve_pipeline(name_or_path: str | Path) -> Pipeline:
    """Load a pipeline given a TOML path, or the name of one shipped in inspector/pipelines/."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        candidate = PIPELINES_DIR / f"{name_or_path}.toml"
        if not candidate.exists():
            known = ", ".join(pipeline_names()) or "none"
            raise ConfigError(f"no pipeline named {str(name_or_path)!r} (known: {known})")
        path = candidate
    return load_pipeline(path)
