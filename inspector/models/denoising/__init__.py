"""`denoising_autoencoder`: a convolutional autoencoder that learns to restore good parts.

Trained on pose-normalised crops of good parts, some with synthetic defects pasted in (the
target is always the part without them) and some under a line's nuisances (uneven light,
defocus, noise, JPEG, a lower resolution: the target keeps them). So it learns to give back a
good part as it was photographed and to leave a defect out. Its squared reconstruction error,
smoothed, is divided by how large that error usually is at each pixel on good parts the model
did not learn from, and kept to the part; with `structure_error`, so is 1 - SSIM between the part
and its reconstruction, and the two maps are added. With `discriminator_steps`, a small
segmentation network trained afterwards on the input beside its reconstruction adds its map of
the chance of a defect at each pixel, normalised the same way.

With `second_opinion = "patch_memory"` the patch memory's map (each patch against the closest
good patches) is added, each map in units of its own typical score on good parts, so both
count equally (the memory's `memory_weight` times as much, if set). The Keras graph outputs the
error map itself; its layers are in `layers`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from ...nuisance_names import NAMES as NUISANCE_NAMES
from ...validation import check_choice, check_range
from ..components.autoencoder import AutoencoderSettings, check_filters, held_out_count
from ..components.patch_memory import PatchMemorySettings
from ..spec import ERROR_MAP, ModelSpec

SECOND_OPINIONS = ("none", "patch_memory")
LAYOUTS = ("strided", "paired")
LEARNING_RATE_DECAYS = ("constant", "cosine")
DISCRIMINATOR_SHRINKS = (1, 2, 4)


@dataclass(frozen=True)
class DenoisingSettings(AutoencoderSettings, PatchMemorySettings):
    epochs: int = 60
    # Encoder stages, each halving the resolution, with this many channels.
    filters: tuple[int, ...] = (32, 64, 128)
    # "paired": each encoder stage a 3x3 convolution then a strided one, the decoder mirroring it
    # (a transposed convolution and a 3x3 convolution per stage). "strided": each encoder stage one
    # strided convolution; each decoder stage a transposed convolution up to the next finer stage's
    # channels (`head_filters` at full resolution), followed by a 3x3 convolution on the coarser
    # half of the stages only. The default's strided 32/64/128/128 costs a fifth of the earlier
    # paired 32/64/128 and scored better on the validation defects (docs/results/2026-12-quality.md).
    layout: str = "paired"
    head_filters: int = 8
    # Autoencoders of this shape trained side by side from different starting weights on the
    # same batches, each on its own loss, the restoration their mean (each costs a training and
    # a forward pass). 1 in every shipped pipeline.
    members: int = 1
    # Training steps compiled by XLA: faster on a CPU; a compiled training repeats itself, and
    # follows the plain one closely but not bit for bit (operations fused and reordered).
    compile_training: bool = False
    # "cosine": the learning rate falls along a cosine to 5% of `learning_rate` by the last epoch.
    learning_rate_decay: str = "constant"
    # At least this many training steps (batches): a small training set runs more epochs than
    # `epochs`, so it is not left with a fraction of the training a full one gets (0: no minimum).
    min_steps: int = 0
    # Share of training copies given a synthetic defect, and given a random line nuisance.
    defect_share: float = 0.6
    # The weakest a synthetic blob or scratch is blended in (its strength drawn from this to 1):
    # lower, it is meant to teach the autoencoder to leave faint marks out too (a light scratch).
    defect_min_strength: float = 0.4
    nuisance_share: float = 0.6
    # Share of the synthetic defects that take a stretch of thin structure away (a lead or wire
    # cut or missing: there the frame's grey opening or closing), so the autoencoder learns to
    # give a missing stretch back (0: none, and no random number drawn for it).
    removal_share: float = 0.0
    # Share of those removals that take the structure from a point to one of its ends instead of
    # a stretch (a lead cut short: the rest of it gone), so the autoencoder learns to give back a
    # structure's end, not only a gap between two ends (0: none, and no random number drawn for it).
    removal_to_end: float = 0.0
    # Those removals to the end take a long thin structure (across at least 0.15 of the frame's
    # shorter side: a lead, a wire) from part way along it, instead of the structure through the
    # point changed most, which is seldom a lead on a board full of other structure.
    removal_to_end_long: bool = False
    # Nuisance copies made of each good image before training (0: no nuisances), each under one or
    # two of `nuisances` (names from inspector.nuisance_names.NAMES; empty: any of them).
    nuisance_copies: int = 5
    nuisances: tuple[str, ...] = ()
    # Weight of the structural (SSIM) term beside the squared error in the training loss.
    ssim_weight: float = 1.0
    # Weight of a third term: the mean of each image's worst `worst_error_share` of its squared
    # error, averaged over 5x5 windows. A part's score is the hottest spot of its map, so a mean
    # alone leaves the worst-restored spots of good parts (a rarely seen head, an edge) where the
    # scores of good parts come from (0: no such term).
    worst_error_weight: float = 0.0
    worst_error_share: float = 0.01
    # Gaussian sigma (pixels) smoothing the squared error before it is normalised.
    error_sigma: float = 2.0
    # Add a second map of the same reconstruction, 1 - SSIM (a wrong structure, whatever its
    # contrast), normalised the same way, to the squared error's (layers.StructureError).
    structure_error: bool = False
    # Add a map of how far the input is from the mean good input at each pixel, normalised the
    # same way (layers.AppearanceError): for registered frames, where a part missing from its
    # place restores well and shows in no reconstruction error.
    appearance_error: bool = False
    # Batches of training, after the autoencoder, for a discriminator: a small segmentation network
    # shown each input beside its reconstruction that learns where the synthetic defects are
    # (`discriminator`); its map, the chance of a defect at each pixel, is added as one more map
    # (0: no discriminator).
    discriminator_steps: int = 0
    # Its channels at full resolution and at each of three halvings (the model's cost grows with
    # their square).
    discriminator_filters: tuple[int, ...] = (16, 32, 64, 64)
    # The discriminator looks at the input and its reconstruction averaged down this many times on
    # each side (1, 2 or 4) and its chances are enlarged back: its cost falls with the square.
    discriminator_shrink: int = 1
    # The discriminator's map counts this many times as much as each other map in the sum.
    discriminator_weight: float = 1.0
    second_opinion: str = "patch_memory"
    # The second opinion's map counts this many times as much as each of the other maps in the
    # sum (every map is first put in units of its typical score on good parts).
    memory_weight: float = 1.0
    # Each map's per-pixel statistics from the median and median absolute deviation of good
    # images' maps instead of their mean and standard deviation (false: mean and deviation).
    robust_spread: bool = False
    # The second opinion's settings (neighbours, search_radius, patch_size: see patch_memory).
    patch_size: int = 6

    def validate(self, where: str) -> None:
        AutoencoderSettings.validate(self, where)
        PatchMemorySettings.validate(self, where)
        check_filters(f"{where}.filters", self.filters, 4)
        check_choice(f"{where}.layout", self.layout, LAYOUTS)
        check_range(f"{where}.head_filters", self.head_filters, 1, 512)
        check_range(f"{where}.members", self.members, 1, 8)
        check_choice(f"{where}.learning_rate_decay", self.learning_rate_decay, LEARNING_RATE_DECAYS)
        check_range(f"{where}.min_steps", self.min_steps, 0, 1_000_000)
        check_range(f"{where}.defect_share", self.defect_share, 0.0, 1.0)
        check_range(f"{where}.defect_min_strength", self.defect_min_strength, 0.05, 1.0)
        check_range(f"{where}.nuisance_share", self.nuisance_share, 0.0, 1.0)
        check_range(f"{where}.removal_share", self.removal_share, 0.0, 1.0)
        check_range(f"{where}.removal_to_end", self.removal_to_end, 0.0, 1.0)
        if self.removal_to_end and not self.removal_share:
            raise ConfigError(f"'{where}.removal_to_end' takes a share of the removals, and "
                              f"'{where}.removal_share' is 0: set removal_share too, or removal_to_end to 0")
        if self.removal_to_end_long and not self.removal_to_end:
            raise ConfigError(f"'{where}.removal_to_end_long' says which structure the removals to the end take, "
                              f"and '{where}.removal_to_end' is 0: set removal_to_end too, or removal_to_end_long "
                              f"to false")
        check_range(f"{where}.nuisance_copies", self.nuisance_copies, 0, 50)
        for name in self.nuisances:
            check_choice(f"{where}.nuisances", name, NUISANCE_NAMES)
        if len(set(self.nuisances)) != len(self.nuisances):
            raise ConfigError(f"'{where}.nuisances' names a nuisance twice: {list(self.nuisances)}")
        check_range(f"{where}.ssim_weight", self.ssim_weight, 0.0, 100.0)
        check_range(f"{where}.worst_error_weight", self.worst_error_weight, 0.0, 100.0)
        check_range(f"{where}.worst_error_share", self.worst_error_share, 1e-4, 1.0)
        check_range(f"{where}.error_sigma", self.error_sigma, 0.1, 20.0)
        check_range(f"{where}.discriminator_steps", self.discriminator_steps, 0, 1_000_000)
        check_filters(f"{where}.discriminator_filters", self.discriminator_filters, 4)
        if len(self.discriminator_filters) != 4:
            raise ConfigError(f"'{where}.discriminator_filters' takes four channel counts (full resolution and "
                              f"three halvings), got {list(self.discriminator_filters)}")
        if isinstance(self.discriminator_shrink, bool) or self.discriminator_shrink not in DISCRIMINATOR_SHRINKS:
            raise ConfigError(f"'{where}.discriminator_shrink' must be one of "
                              f"{', '.join(map(str, DISCRIMINATOR_SHRINKS))}; got {self.discriminator_shrink!r}")
        check_range(f"{where}.discriminator_weight", self.discriminator_weight, 0.05, 20.0)
        check_choice(f"{where}.second_opinion", self.second_opinion, SECOND_OPINIONS)
        check_range(f"{where}.memory_weight", self.memory_weight, 0.05, 20.0)

    def batch_for(self, trained: int) -> int:
        """The batch size training on `trained` images uses (the whole set when it is smaller)."""
        return max(1, min(self.batch_size, trained))

    def steps_per_epoch(self, trained: int) -> int:
        """Batches an epoch over `trained` images runs: full batches only."""
        return max(1, trained // self.batch_for(trained))

    def epochs_for(self, images: int, holdout_fraction: float) -> int:
        """Epochs `fit` runs on `images` good images (of which `holdout_fraction` is held out):
        `epochs`, or as many more as `min_steps` batches take."""
        per_epoch = self.steps_per_epoch(images - held_out_count(images, holdout_fraction))
        return max(self.epochs, -(-self.min_steps // per_epoch))

    def discriminator_steps_for(self, epochs: int) -> int:
        """Batches the discriminator trains after `epochs` epochs of the autoencoder:
        `discriminator_steps`, fewer in proportion when the autoencoder runs fewer than the
        settings' `epochs` (a quick training, `--epochs`), at least one; 0 without a discriminator."""
        return -(-self.discriminator_steps * min(epochs, self.epochs) // self.epochs) if self.discriminator_steps else 0

    def passes_after_epochs(self, epochs: int, images: int, holdout_fraction: float) -> int:
        """How many epochs' worth of batches (as the autoencoder's training counts them) the
        discriminator's training runs: what a progress bar adds for it."""
        per_epoch = self.steps_per_epoch(images - held_out_count(images, holdout_fraction))
        return -(-self.discriminator_steps_for(epochs) // per_epoch)


SPEC = ModelSpec(
    name="denoising_autoencoder",
    output=ERROR_MAP,
    settings=DenoisingSettings,
    training=f"{__name__}.fit",
    serving=f"{__name__}.layers",
)
