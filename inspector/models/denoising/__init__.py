"""`denoising_autoencoder`: a convolutional autoencoder that learns to restore good parts.

Trained on pose-normalised crops of good parts, some with synthetic defects pasted in (the
target is always the part without them) and some under a line's nuisances (uneven light,
defocus, noise, JPEG, a lower resolution: the target keeps them). So it learns to give back a
good part as it was photographed and to leave a defect out. Its squared reconstruction error,
smoothed, is divided by how large that error usually is at each pixel on good parts the model
did not learn from, and kept to the part.

With `second_opinion = "patch_memory"` the patch memory's map (each patch against the closest
good patches) is added, each map in units of its own typical score on good parts, so both
count equally. The Keras graph outputs the error map itself; its layers are in `layers`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...validation import check_choice, check_range
from ..autoencoder import AutoencoderSettings, check_filters
from ..patch_memory import PatchMemorySettings
from ..spec import ERROR_MAP, ModelSpec

SECOND_OPINIONS = ("none", "patch_memory")


@dataclass(frozen=True)
class DenoisingSettings(AutoencoderSettings, PatchMemorySettings):
    epochs: int = 60
    # Encoder stages: two 3x3 convolutions each, the second halving the resolution; the decoder
    # mirrors them with transposed convolutions.
    filters: tuple[int, ...] = (32, 64, 128)
    # Share of training copies given a synthetic defect, and given a random line nuisance.
    defect_share: float = 0.6
    nuisance_share: float = 0.6
    # Nuisance copies made of each good image before training (0: no nuisances).
    nuisance_copies: int = 5
    # Weight of the structural (SSIM) term beside the squared error in the training loss.
    ssim_weight: float = 1.0
    # Gaussian sigma (pixels) smoothing the squared error before it is normalised.
    error_sigma: float = 2.0
    second_opinion: str = "patch_memory"
    # The second opinion's settings (neighbours, search_radius, patch_size: see patch_memory).
    patch_size: int = 6

    def validate(self, where: str) -> None:
        AutoencoderSettings.validate(self, where)
        PatchMemorySettings.validate(self, where)
        check_filters(f"{where}.filters", self.filters, 4)
        check_range(f"{where}.defect_share", self.defect_share, 0.0, 1.0)
        check_range(f"{where}.nuisance_share", self.nuisance_share, 0.0, 1.0)
        check_range(f"{where}.nuisance_copies", self.nuisance_copies, 0, 50)
        check_range(f"{where}.ssim_weight", self.ssim_weight, 0.0, 100.0)
        check_range(f"{where}.error_sigma", self.error_sigma, 0.1, 20.0)
        check_choice(f"{where}.second_opinion", self.second_opinion, SECOND_OPINIONS)


SPEC = ModelSpec(
    name="denoising_autoencoder",
    output=ERROR_MAP,
    settings=DenoisingSettings,
    training=f"{__name__}.fit",
    serving=f"{__name__}.layers",
)
