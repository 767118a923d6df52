"""The train stage's parameters: :class:`TrainConfig` and the profiles' defaults.

Light on purpose (stdlib and ``components.common`` only): the pipelines read its defaults and
``--help`` stays fast. Zero / empty values of the tunable fields take the profile's default
(:data:`PROFILE_DEFAULTS`), resolved in ``TrainConfig.__post_init__``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from components.common.augment import check_augment
from components.common.config import param

LOCAL = "local"
CLUSTER = "cluster"
PROFILES = (LOCAL, CLUSTER)
CLUSTER_MODEL = "microsoft/resnet-50"
# Settings of one run that are not part of what was trained (left out of the training summary).
RUN_ONLY = ("checkpoints", "keep_checkpoints", "allow_cpu")
# Recorded settings that do not change the trained weights: a checkpoint resumes across them.
RESUME_IGNORES = ("threads",)


@dataclass(frozen=True)
class ProfileDefaults:
    """What a profile trains when a parameter is left at 0 / empty."""

    model_name: str  # "" = a small ResNetConfig built from scratch
    image_size: int
    epochs: float
    batch_size: int
    learning_rate: float
    weight_decay: float
    min_crop_scale: float  # RandomResizedCrop keeps at least this share of the image


PROFILE_DEFAULTS: dict[str, ProfileDefaults] = {
    LOCAL: ProfileDefaults("", 32, 4.0, 128, 3e-3, 0.05, 1.0),
    CLUSTER: ProfileDefaults(CLUSTER_MODEL, 224, 3.0, 32, 5e-5, 0.0, 0.5),
}


def profile_defaults_text() -> str:
    """The profiles' defaults in one line, for help texts."""
    return ", ".join(
        f"{p}: epochs {d.epochs:g}, batch {d.batch_size}, lr {d.learning_rate:g}, {d.image_size} px, "
        f"model {d.model_name or 'small ResNetConfig from scratch'}"
        for p, d in PROFILE_DEFAULTS.items()
    )


@dataclass
class TrainConfig:
    """What to train and how.  Zero / empty values take the profile's default."""

    profile: str = param(
        LOCAL,
        "local: small ResNet from scratch at 32 px on CPU; cluster: fine-tune microsoft/resnet-50 at 224 px",
        choices=PROFILES,
    )
    model_name: str = param("", "Hub name or local model folder ('' = the profile's default)")
    epochs: float = param(0.0, "training epochs (0 = the profile's default)")
    batch_size: int = param(0, "training batch size (0 = the profile's default)")
    learning_rate: float = param(0.0, "peak learning rate (0 = the profile's default)")
    max_steps: int = param(-1, "stop after this many optimizer steps (-1: train whole epochs)")
    seed: int = param(0, "random seed of initialisation, shuffling and augmentation")
    allow_cpu: bool = param(
        False,
        "let profile=cluster run on CPU when CUDA is unavailable (False: fail at once, naming the "
        "NVIDIA driver the images need)",
    )
    augment: str = param(
        "",
        "augmentations of the training images matching what drifted: a comma list of rotation, blur, "
        "brightness, noise (strengths of the data stage's degraded production; each applied to half the "
        "images), 'auto' = chosen from the drift explanation in the drift table at drift_uri, '' = none. "
        "Validation images are never augmented",
    )
    drift_uri: str = param(
        "",
        "with augment=auto: the drift stage's drift_table output (a Parquet file, local or gs://, s3://, "
        "minio://) whose explanation of the flagged windows chooses the augmentations",
    )
    extra_training_uri: str = param(
        "",
        "a data-stage folder (local or a bucket prefix; e.g. a monitoring run's ingested batch) whose "
        "labelled rows, of every split, join the training split; rows without a label yet (-1) are left "
        "out and counted. '' = none",
    )
    image_size: int = param(0, "input size in pixels (0 = the profile's default)", component=False)
    weight_decay: float = param(-1.0, "AdamW weight decay (-1 = the profile's default)", component=False)
    min_crop_scale: float = param(
        0.0,
        "smallest share of the image a random resized crop keeps (0 = the profile's default)",
        component=False,
    )
    threads: int = param(0, "torch CPU threads (0 = half the cores)", component=False)
    checkpoints: str = param(
        "",
        "checkpoint folder ('' = <output>.checkpoints); a run resumes from its last checkpoint when "
        "the data set and the settings match what the folder recorded, else starts fresh",
        component=False,
    )
    keep_checkpoints: bool = param(
        False, "keep the checkpoint folder after a successful run", component=False
    )

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile {self.profile!r}: expected one of {', '.join(PROFILES)}")
        d = PROFILE_DEFAULTS[self.profile]
        self.model_name = self.model_name or d.model_name
        self.epochs = float(self.epochs or d.epochs)
        self.batch_size = int(self.batch_size or d.batch_size)
        self.learning_rate = float(self.learning_rate or d.learning_rate)
        self.image_size = int(self.image_size or d.image_size)
        if self.weight_decay < 0:
            self.weight_decay = d.weight_decay
        self.min_crop_scale = float(self.min_crop_scale or d.min_crop_scale)
        if not 0 < self.min_crop_scale <= 1:
            raise ValueError(f"min_crop_scale {self.min_crop_scale}: expected a value in (0, 1]")
        if self.epochs <= 0:
            raise ValueError(f"epochs {self.epochs}: give a positive number (0 = profile default)")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size {self.batch_size}: give a positive number (0 = profile default)")
        if not (0 < self.learning_rate < 1):
            raise ValueError(f"learning_rate {self.learning_rate}: expected a value in (0, 1)")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps {self.max_steps}: give -1 (train whole epochs) or a positive count")
        if self.threads < 0:
            raise ValueError(f"threads {self.threads}: give 0 (automatic) or a positive count")
        if self.image_size < 8:
            raise ValueError(f"image_size {self.image_size}: expected at least 8 pixels")
        self.augment = self.augment.strip().lower()
        check_augment(self.augment, self.drift_uri)

    def trained_with(self) -> dict:
        """The resolved parameters the training summary records (run-only settings left out)."""
        return {k: v for k, v in asdict(self).items() if k not in RUN_ONLY}

    def resume_settings(self) -> dict:
        """The settings a checkpoint must have been trained with to be resumed: those that change the result.

        All of :meth:`trained_with` (model, sizes, epochs / max_steps, which set the learning-rate
        schedule, learning rate, seed, ...) except :data:`RESUME_IGNORES`.
        """
        return {k: v for k, v in self.trained_with().items() if k not in RESUME_IGNORES}
