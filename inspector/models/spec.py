"""What an architecture declares (`ModelSpec`) and what fitting it returns (`Fitted`).

Cheap to import: no TensorFlow. The training and serving modules a spec names are imported
only when they are needed.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import numpy as np

    from ..settings import Pipeline

# What a model's Keras graph outputs, and the scoring errors that fit it.
RECONSTRUCTION = "reconstruction"  # an image like its input: scored by how far it is from the input
ERROR_MAP = "error_map"  # the per-pixel error map itself: scored as it is
ERRORS_FOR_OUTPUT = {
    RECONSTRUCTION: ("squared", "absolute", "ssim"),
    ERROR_MAP: ("distance",),
}
_OUTPUT_WORDS = {RECONSTRUCTION: "a reconstruction of its input", ERROR_MAP: "the error map itself"}


@dataclass
class Fitted:
    """A trained model and what the threshold will be calibrated on."""

    model: Any  # the Keras model, saved as the bundle's model.keras
    scores: np.ndarray  # image scores of good images the model did not learn from
    maps: np.ndarray  # their error maps (N, H, W): they set the heatmap colour scale
    calibrated_on: str  # what those good images are, in words for the bundle and the summary
    trained_on: int  # images the model learnt from
    held_out: int  # good images scored for calibration
    epochs: int = 0  # epochs run; 0 for a model fitted without epochs
    losses: list[float] = field(default_factory=list)  # training loss per epoch
    seconds: float = 0.0  # time spent fitting (not loading images or saving)


@dataclass(frozen=True)
class ModelSpec:
    """One architecture: its name, output, pipeline keys and where its code lives."""

    name: str
    output: str  # RECONSTRUCTION or ERROR_MAP
    # Frozen dataclass of the [model] keys this architecture takes besides the common ones:
    # field defaults give defaults and types, `validate(where)` checks values (ConfigError).
    settings: type
    # Module with build(settings, shape), fit(arrays, pipeline, seed, epochs, on_epoch) and
    # benchmark_model(arrays, pipeline). Serving never imports it.
    training: str
    # Module that registers the custom Keras layers a saved model of this architecture needs
    # (`keras.saving.register_keras_serializable`); None when it uses built-in layers only.
    serving: str | None = None
    # For an architecture fitted without epochs: what `inspector train` says instead of an
    # epoch progress bar ({count}: the number of images), and what it prints for epochs.
    no_epochs_announcement: str = "Fitting {count} good images (no epochs)"
    no_epochs_summary: str = "none"

    def __post_init__(self):
        if self.output not in ERRORS_FOR_OUTPUT:
            raise ValueError(f"{self.name}: output must be one of {', '.join(ERRORS_FOR_OUTPUT)}")

    @property
    def errors(self) -> tuple[str, ...]:
        """The `scoring.error` values this architecture's output can be scored with."""
        return ERRORS_FOR_OUTPUT[self.output]

    @property
    def output_words(self) -> str:
        return _OUTPUT_WORDS[self.output]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.settings))

    def planned_epochs(self, settings: Any, override: int | None = None, images: int | None = None,
                       holdout_fraction: float = 0.0) -> int | None:
        """Epochs `fit` will run (on `images` good images, when the architecture's settings make
        that depend on how many: `epochs_for`), or None for an architecture fitted without epochs."""
        if "epochs" not in self.keys:
            return None
        if override:
            return override
        epochs_for = getattr(settings, "epochs_for", None)
        return epochs_for(images, holdout_fraction) if epochs_for and images else settings.epochs

    def planned_passes(self, settings: Any, override: int | None, images: int, holdout_fraction: float) -> int | None:
        """What `fit`'s `on_epoch` will count: its epochs, and as many more passes as the
        settings' training after the epochs takes (`passes_after_epochs`, the discriminator's),
        or None for an architecture fitted without epochs."""
        epochs = self.planned_epochs(settings, override, images, holdout_fraction)
        after = getattr(settings, "passes_after_epochs", None)
        return epochs + after(epochs, images, holdout_fraction) if epochs is not None and after else epochs

    def build(self, settings: Any, shape: tuple[int, int]):
        """An untrained Keras model for images of `shape` (height, width)."""
        return self._training().build(settings, shape)

    def fit(
        self,
        arrays: np.ndarray,
        pipeline: Pipeline,
        seed: int,
        epochs: int | None = None,
        on_epoch: Callable[[int, float], None] | None = None,
        variants: np.ndarray | None = None,
    ) -> Fitted:
        """Train on good preprocessed images (N, H, W) and score good images it did not learn from.

        `variants` (N, K, H, W): K copies of each image under random line nuisances, made when
        the settings ask for them (`nuisance_copies`); architectures that take none ignore them.
        """
        return self._training().fit(arrays, pipeline, seed, epochs, on_epoch, variants)

    def nuisance_copies(self, settings: Any) -> int:
        """How many nuisance copies of each good image `fit` wants (0: none)."""
        return int(getattr(settings, "nuisance_copies", 0))

    def nuisance_names(self, settings: Any) -> tuple[str, ...]:
        """The nuisances those copies are drawn from (empty: any)."""
        return tuple(getattr(settings, "nuisances", ()))

    def benchmark_model(self, arrays: np.ndarray, pipeline: Pipeline):
        """A model as costly to run as a trained one, made quickly from `arrays`, to time scoring."""
        return self._training().benchmark_model(arrays, pipeline)

    def load_serving(self) -> None:
        """Make this architecture's custom Keras layers known, so its saved models load."""
        if self.serving:
            importlib.import_module(self.serving)

    def _training(self) -> ModuleType:
        return importlib.import_module(self.training)
