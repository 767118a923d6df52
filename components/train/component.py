"""KFP wrapper of the train stage: declares inputs and outputs, calls ``train_model``."""

# No `from __future__ import annotations`: kfp reads the real annotation objects of the body.

from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.common.config import component_doc, output_names
from components.common.images import ImageSet, build_component
from components.train.config import TrainConfig, profile_defaults_text

SUMMARY = (
    "Train the image classifier (local: small ResNet from scratch; cluster: fine-tune "
    "microsoft/resnet-50). epochs, batch_size and learning_rate at 0 take the profile's defaults "
    f"({profile_defaults_text()})."
)
CONFIG = TrainConfig
ARTIFACTS = ("dataset", "model", "metrics", "confusion")
ARTIFACT_HELP = {
    "dataset": "the data stage's folder (splits training and validation are used)",
    "model": "the model folder: save_pretrained model, image processor, training_summary.json",
    "metrics": "validation accuracy, F1 (weighted, macro), loss, train loss, epochs, train time",
    "confusion": "the validation confusion matrix",
}


def train(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    profile: str = "local",
    model_name: str = "",
    epochs: float = 0.0,
    batch_size: int = 0,
    learning_rate: float = 0.0,
    max_steps: int = -1,
    seed: int = 0,
    allow_cpu: bool = False,
    augment: str = "",
    drift_uri: str = "",
    extra_training_uri: str = "",
):
    """Train (local: small ResNet from scratch; cluster: fine-tune microsoft/resnet-50)."""
    from components.common.config import config_from
    from components.common.schema import CLASS_NAMES
    from components.train.config import TrainConfig
    from components.train.train import train_model

    result = train_model(dataset.path, model.path, config_from(TrainConfig, locals()))
    model.metadata["model_version"] = result.model_version
    model.metadata["framework"] = "transformers"
    model.metadata["augmentations"] = ",".join(result.summary["augmentations"])
    for name in ("accuracy", "f1_weighted", "f1_macro", "loss", "train_loss", "epochs", "train_time_s"):
        metrics.log_metric(name, float(result.metrics[name]))
    confusion.log_confusion_matrix(list(CLASS_NAMES), result.confusion_matrix)


def component(images: ImageSet | None = None):
    """The train stage as a KFP lightweight component (base image: the train stage's image)."""
    return build_component(
        train, "train", images, doc=component_doc(SUMMARY, TrainConfig, ARTIFACT_HELP, output_names(train))
    )
