"""`patch_memory`: a part is compared, patch by patch, with the most similar good parts.

Works on pose-normalised images (every part lies at the same place and angle, head left), so a
patch of a new part only needs comparing with the patches at about the same place on the good
parts the model remembers. Its Keras graph outputs the error map itself: the per-pixel distance
to the closest good patch. "Training" is remembering, calibrated by cross-validation (`fit`);
the layer that serves it, and its settings, are shared with the denoising autoencoder's second
opinion (`inspector.models.components`: `patch_memory_layer`, `patch_memory`).
"""

from __future__ import annotations

from ..components.patch_memory import PatchMemorySettings
from ..spec import ERROR_MAP, ModelSpec

SPEC = ModelSpec(
    name="patch_memory",
    output=ERROR_MAP,
    settings=PatchMemorySettings,
    training=f"{__name__}.fit",
    # The layer is shared with the denoising autoencoder's second opinion.
    serving="inspector.models.components.patch_memory_layer",
    no_epochs_announcement="Remembering {count} good images (patch memory: no epochs)",
    no_epochs_summary="none (patch memory remembers the images)",
)
