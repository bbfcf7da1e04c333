"""Model architectures by name: the registry the rest of `inspector` asks.

Each architecture is one package under `inspector/models/` declaring a `ModelSpec` (`spec.py`):

- `name`: what `[model] architecture` names in a pipeline file.
- `output`: what its Keras graph outputs. `"reconstruction"`: an image like its input, scored by
  the `squared`, `absolute` or `ssim` error against the input. `"error_map"`: the per-pixel
  error map itself (e.g. a patch memory's distances, or a discriminative head's defect
  probability), scored as it is (`scoring.error = "distance"`). `pipeline_files` refuses a
  pipeline whose error does not fit the output.
- `settings`: a frozen dataclass of the `[model]` keys it takes besides the common
  `architecture` and `holdout_fraction`; field defaults are the defaults and give each key's
  type, `validate(where)` raises `ConfigError` naming a bad key. Any other key is refused.
  `pipeline.model.settings` is an instance of it.
- `training`: the module that fits it, with
    `build(settings, shape) -> keras.Model` (untrained, for images of shape (height, width)),
    `fit(arrays, pipeline, seed, epochs=None, on_epoch=None) -> Fitted`,
    `benchmark_model(arrays, pipeline) -> keras.Model` (as costly as a trained one, made fast).
  `fit` gets the good preprocessed images (N, H, W) and owns everything about training: the
  split or cross-validation, its own loop (custom steps, synthetic defects, several
  sub-networks inside one Keras model), and scoring good images the model did not learn from
  with `components.running.score_arrays` (the one post-processing). It returns a `Fitted`:
  the Keras model to save, those scores and error maps, a sentence on what they are, counts,
  epochs run, losses, seconds. `training.train_bundle` then picks the threshold and saves the bundle.
  A `fit` that runs epochs reports each with `on_epoch(epoch, loss)` (0, 1, ...), and any
  training after them in passes numbered on from the epochs' count (the settings'
  `passes_after_epochs` says how many); a settings class with an `epochs` key gets
  `inspector train`'s progress bar and `--epochs`.
- `serving`: the module registering its custom Keras layers (if any) with
  `keras.saving.register_keras_serializable(package="inspector")`. Loading a bundle imports
  every architecture's serving module and nothing else: the daemon and `score` never import
  training code, so keep layers and fitting in separate modules (in `components/`, the
  training modules are the `*_fit` ones).

The saved model is run as it is: batch (B, H, W, 1) in, (B, H, W, 1) out. Several trained parts
(an autoencoder and a discriminative head, say) go inside that one Keras model.

Adding an architecture: a package here (spec in `__init__.py`, `fit.py`, `layers.py` if it has
custom layers), its pipeline file in `inspector/pipelines/`, its tests, and one line in `ARCHITECTURES`.
What several architectures share (autoencoder settings and fit loop, the patch memory, the part
region, running a model over arrays) is in `components/`; an architecture package imports those,
never another architecture package.
This module imports no TensorFlow: `pipeline_files` reads and validates pipelines with it.
Settings (`inspector.settings`) never import the registry; the registry may import them.
"""

from __future__ import annotations

from ..errors import ConfigError
from . import compact, denoising, patch_memory, seed003, vae
from .spec import ERROR_MAP, RECONSTRUCTION, Fitted, ModelSpec

ARCHITECTURES: dict[str, ModelSpec] = {spec.name: spec for spec in (
    compact.SPEC,
    seed003.SPEC,
    patch_memory.SPEC,
    denoising.SPEC,
    vae.SPEC,
)}

__all__ = ["ARCHITECTURES", "ERROR_MAP", "RECONSTRUCTION", "Fitted", "ModelSpec", "get", "names", "load_serving"]


def names() -> tuple[str, ...]:
    return tuple(ARCHITECTURES)


def get(name: str) -> ModelSpec:
    """The architecture called `name`; `ConfigError` listing the known ones otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(f"unknown model architecture {name!r}; known: {', '.join(names())}") from None


def load_serving() -> None:
    """Make every architecture's custom Keras layers known, so any saved model loads."""
    for spec in ARCHITECTURES.values():
        spec.load_serving()
