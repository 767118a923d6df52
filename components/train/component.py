"""KFP wrapper of the train stage: declares inputs and outputs, calls ``train_model``."""

from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.common.images import ImageSet


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
):
    """Train (local: small ResNet from scratch; cluster: fine-tune microsoft/resnet-50).

    ``epochs``, ``batch_size`` and ``learning_rate`` at 0 take the profile's defaults
    (local: 3 epochs, batch 128, 3e-3; cluster: 3 epochs, batch 32, 5e-5).
    """
    from components.common.schema import CLASS_NAMES
    from components.train.train import TrainConfig, train_model

    result = train_model(
        dataset.path,
        model.path,
        TrainConfig(
            profile=profile,
            model_name=model_name,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_steps=max_steps,
            seed=seed,
        ),
    )
    model.metadata["model_version"] = result.model_version
    model.metadata["framework"] = "transformers"
    for name in ("accuracy", "f1_weighted", "f1_macro", "loss", "train_loss", "epochs", "train_time_s"):
        metrics.log_metric(name, float(result.metrics[name]))
    confusion.log_confusion_matrix(list(CLASS_NAMES), result.confusion_matrix)


def component(images: ImageSet | None = None):
    """The train stage as a KFP lightweight component (base image: the train stage's image)."""
    from components.common.images import build_component

    return build_component(train, "train", images)
