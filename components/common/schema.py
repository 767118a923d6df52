"""The column contract between stages: names, types and class names.

Every stage and every test imports column names from here; no stage spells a
column name as a string literal of its own.  See ``shared/DESIGN.md``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import pyarrow as pa

# Fashion-MNIST class names, in label order (0..9).
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)

# Split names of the data set, which are also the Arize environments.
TRAINING = "training"
VALIDATION = "validation"
PRODUCTION = "production"
SPLITS: tuple[str, ...] = (TRAINING, VALIDATION, PRODUCTION)

# Kinds of degradation applied to production images (ground truth for drift
# evaluation, never a model input).
DEGRADATION_NONE = "none"
DEGRADATION_ROTATE = "rotate"
DEGRADATION_BLUR = "blur"
DEGRADATION_BOTH = "rotate+blur"
DEGRADATIONS: tuple[str, ...] = (
    DEGRADATION_NONE,
    DEGRADATION_ROTATE,
    DEGRADATION_BLUR,
    DEGRADATION_BOTH,
)
# Production rows that arrive from outside (the ingest stage): nobody knows what happened to the image.
# Not one of DEGRADATIONS, which are the kinds the data stage applies (its card has one column each).
DEGRADATION_UNKNOWN = "unknown"


class DatasetColumns:
    """Rows of the data stage's ``datasets`` folder (one ``DatasetDict``)."""

    IMAGE = "image"  # datasets.Image (PNG bytes), greyscale 28x28 for Fashion-MNIST
    LABEL = "label"  # datasets.ClassLabel(names=CLASS_NAMES); NO_LABEL (-1) = not known yet (ingest)
    PREDICTION_TS = "prediction_ts"  # timestamp[us, tz=UTC]
    IMAGE_ID = "image_id"  # string, stable across runs with the same seed
    URL = "url"  # string, link to the image file, may be empty
    DEGRADATION = "degradation"  # string, one of DEGRADATIONS

    ALL: tuple[str, ...] = (IMAGE, LABEL, PREDICTION_TS, IMAGE_ID, URL, DEGRADATION)


class EmbedColumns:
    """Rows of the embed stage's Parquet output (one row per image)."""

    IMAGE_ID = "image_id"  # string
    SPLIT = "split"  # string, one of SPLITS
    LABEL = "label"  # int64, actual class index; NO_LABEL (-1) = not known yet (production rows only)
    PREDICTION = "prediction"  # int64, predicted class index (the registered model's)
    PREDICTION_SCORE = "prediction_score"  # float32, top softmax probability
    PROBABILITIES = "probabilities"  # list<float32>, NUM_CLASSES long
    EMBEDDING = "embedding"  # list<float32>, mean of the last hidden state
    PREDICTION_TS = "prediction_ts"  # timestamp[us, tz=UTC]
    DEGRADATION = "degradation"  # string, carried through for evaluation only
    MODEL_VERSION = "model_version"  # string, identifies the trained model
    BRIGHTNESS = "brightness"  # float32, mean intensity in [0, 1]
    CONTRAST = "contrast"  # float32, standard deviation of intensity
    SHARPNESS = "sharpness"  # float32, variance of the Laplacian

    FEATURES: tuple[str, ...] = (BRIGHTNESS, CONTRAST, SHARPNESS)
    ALL: tuple[str, ...] = (
        IMAGE_ID,
        SPLIT,
        LABEL,
        PREDICTION,
        PREDICTION_SCORE,
        PROBABILITIES,
        EMBEDDING,
        PREDICTION_TS,
        DEGRADATION,
        MODEL_VERSION,
        BRIGHTNESS,
        CONTRAST,
        SHARPNESS,
    )
    # Optional, after ALL: what the serving system logged (ServedColumns of an ingested split), carried
    # through when the data set has them; null on rows (and splits) without them. Same names as
    # ServedColumns. A file has all three or none (EMBED_SERVED_ARROW_SCHEMA or EMBED_ARROW_SCHEMA).
    GIVEN_PREDICTION_ID = "prediction_id"  # string, null: the serving system's id of the prediction
    SERVED_LABEL = "served_label"  # int64, null: class index the serving system predicted
    SERVED_SCORE = "served_score"  # float32, null: the score it gave that class
    SERVED: tuple[str, ...] = (GIVEN_PREDICTION_ID, SERVED_LABEL, SERVED_SCORE)


class PreparedColumns:
    """Rows of the prepare stage's Parquet output, one file per environment."""

    # string: the serving system's id when the row has one (EmbedColumns.GIVEN_PREDICTION_ID), else
    # deterministic from model version + image_id (prediction_id() below)
    PREDICTION_ID = "prediction_id"
    PREDICTION_TS = "prediction_ts"  # timestamp[us, tz=UTC], shifted so newest production = now
    # string, class name: the SERVED prediction where the row has one, else the registered model's
    PREDICTION_LABEL = "prediction_label"
    # string, class name; null = no label yet (production rows only: Arize logs the prediction alone)
    ACTUAL_LABEL = "actual_label"
    PREDICTION_SCORE = "prediction_score"  # float32, null: the served score (null when none was logged)
    IMAGE_VECTOR = "image_vector"  # list<float32>
    IMAGE_LINK = "image_link"  # string, URL or local path of the image file
    PROBABILITIES = "probabilities"  # list<float32>, kept for prediction-drift tests
    IMAGE_ID = "image_id"  # string, to find the image again
    DEGRADATION = "degradation"  # string, evaluation only, never sent as a feature
    BRIGHTNESS = EmbedColumns.BRIGHTNESS
    CONTRAST = EmbedColumns.CONTRAST
    SHARPNESS = EmbedColumns.SHARPNESS

    FEATURES: tuple[str, ...] = EmbedColumns.FEATURES
    ALL: tuple[str, ...] = (
        PREDICTION_ID,
        PREDICTION_TS,
        PREDICTION_LABEL,
        ACTUAL_LABEL,
        PREDICTION_SCORE,
        IMAGE_VECTOR,
        IMAGE_LINK,
        PROBABILITIES,
        IMAGE_ID,
        DEGRADATION,
        BRIGHTNESS,
        CONTRAST,
        SHARPNESS,
    )
    # Optional, after ALL: written (on every row of every table of the run) when an embed input
    # carries served predictions (PREPARED_SERVED_ARROW_SCHEMA); absent otherwise.
    MODEL_PREDICTION_LABEL = "model_prediction_label"  # string, class name the registered model predicts
    MODEL_PREDICTION_SCORE = "model_prediction_score"  # float32, its top softmax probability
    PREDICTION_SOURCE = "prediction_source"  # string: PREDICTION_SERVED or PREDICTION_MODEL
    SERVED: tuple[str, ...] = (MODEL_PREDICTION_LABEL, MODEL_PREDICTION_SCORE, PREDICTION_SOURCE)


class PreparedImageColumns:
    """Rows of a prepared folder's image files (``images-<environment>.parquet``): one row per image.

    The images travel inside the ``prepared`` artifact in one file per environment (not one file
    per image: the KFP launcher moves an artifact's files one request at a time). Same rows and order
    as the environment's table; the drift stage looks its thumbnails up by ``prediction_id``.
    """

    PREDICTION_ID = PreparedColumns.PREDICTION_ID  # string, the key: unique within a prepare run
    IMAGE_ID = PreparedColumns.IMAGE_ID  # string
    IMAGE = "image"  # binary, the image file's bytes (PNG)

    ALL: tuple[str, ...] = (PREDICTION_ID, IMAGE_ID, IMAGE)


# PreparedColumns.PREDICTION_SOURCE: whose prediction prediction_label / prediction_score hold.
PREDICTION_SERVED = "served"  # the serving system's (the row had a served label)
PREDICTION_MODEL = "model"  # the registered model's, from embed (no served label)


class ServedColumns:
    """Extra columns of an ingested production split: what the serving system logged with each image.

    The ingest stage writes all three on every row it ingests (null where the manifest has no value);
    a data-stage folder built by the data stage has none of them, so readers test for presence.
    """

    PREDICTION_ID = PreparedColumns.PREDICTION_ID  # string, the serving system's id of the prediction
    SERVED_LABEL = "served_label"  # int64, class index the serving system predicted
    SERVED_SCORE = "served_score"  # float32, the score it gave that class

    ALL: tuple[str, ...] = (PREDICTION_ID, SERVED_LABEL, SERVED_SCORE)


# A production row whose actual label is not known yet (late labels): the value of DatasetColumns.LABEL.
NO_LABEL = -1

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

EMBED_ARROW_SCHEMA = pa.schema(
    [
        (EmbedColumns.IMAGE_ID, pa.string()),
        (EmbedColumns.SPLIT, pa.string()),
        (EmbedColumns.LABEL, pa.int64()),
        (EmbedColumns.PREDICTION, pa.int64()),
        (EmbedColumns.PREDICTION_SCORE, pa.float32()),
        (EmbedColumns.PROBABILITIES, pa.list_(pa.float32())),
        (EmbedColumns.EMBEDDING, pa.list_(pa.float32())),
        (EmbedColumns.PREDICTION_TS, TIMESTAMP_TYPE),
        (EmbedColumns.DEGRADATION, pa.string()),
        (EmbedColumns.MODEL_VERSION, pa.string()),
        (EmbedColumns.BRIGHTNESS, pa.float32()),
        (EmbedColumns.CONTRAST, pa.float32()),
        (EmbedColumns.SHARPNESS, pa.float32()),
    ]
)

# EMBED_ARROW_SCHEMA and the served columns: embed's output for a data set whose splits carry them.
EMBED_SERVED_ARROW_SCHEMA = pa.schema(
    [
        *EMBED_ARROW_SCHEMA,
        (EmbedColumns.GIVEN_PREDICTION_ID, pa.string()),
        (EmbedColumns.SERVED_LABEL, pa.int64()),
        (EmbedColumns.SERVED_SCORE, pa.float32()),
    ]
)

PREPARED_ARROW_SCHEMA = pa.schema(
    [
        (PreparedColumns.PREDICTION_ID, pa.string()),
        (PreparedColumns.PREDICTION_TS, TIMESTAMP_TYPE),
        (PreparedColumns.PREDICTION_LABEL, pa.string()),
        (PreparedColumns.ACTUAL_LABEL, pa.string()),
        (PreparedColumns.PREDICTION_SCORE, pa.float32()),
        (PreparedColumns.IMAGE_VECTOR, pa.list_(pa.float32())),
        (PreparedColumns.IMAGE_LINK, pa.string()),
        (PreparedColumns.PROBABILITIES, pa.list_(pa.float32())),
        (PreparedColumns.IMAGE_ID, pa.string()),
        (PreparedColumns.DEGRADATION, pa.string()),
        (PreparedColumns.BRIGHTNESS, pa.float32()),
        (PreparedColumns.CONTRAST, pa.float32()),
        (PreparedColumns.SHARPNESS, pa.float32()),
    ]
)

PREPARED_IMAGES_ARROW_SCHEMA = pa.schema(
    [
        (PreparedImageColumns.PREDICTION_ID, pa.string()),
        (PreparedImageColumns.IMAGE_ID, pa.string()),
        (PreparedImageColumns.IMAGE, pa.binary()),
    ]
)

# PREPARED_ARROW_SCHEMA and embed's own prediction beside the served one: prepare's tables when an
# embed input carries served predictions.
PREPARED_SERVED_ARROW_SCHEMA = pa.schema(
    [
        *PREPARED_ARROW_SCHEMA,
        (PreparedColumns.MODEL_PREDICTION_LABEL, pa.string()),
        (PreparedColumns.MODEL_PREDICTION_SCORE, pa.float32()),
        (PreparedColumns.PREDICTION_SOURCE, pa.string()),
    ]
)

# File names inside folder-shaped artifacts.
EMBED_FILE = "embeddings.parquet"  # inside an embed output folder
EMBED_FAILURES_FILE = "failures.parquet"  # rows whose image did not decode
PREPARED_FILE_TEMPLATE = "{environment}.parquet"  # inside a prepare output folder
PREPARED_IMAGES_FILE_TEMPLATE = "images-{environment}.parquet"  # the images of one environment's table
PREPARED_REJECTED_FILE = "rejected.parquet"  # rows kept aside by prepare, with a reason
INGEST_REJECTED_FILE = "rejected.parquet"  # rows kept aside by ingest, with location and reason


def prepared_file(environment: str) -> str:
    """File name of one environment's table inside a prepare output folder."""
    if environment not in SPLITS:
        raise ValueError(f"unknown environment {environment!r}; expected one of {', '.join(SPLITS)}")
    return PREPARED_FILE_TEMPLATE.format(environment=environment)


def prepared_images_file(environment: str) -> str:
    """File name of one environment's images (``PREPARED_IMAGES_ARROW_SCHEMA``) inside a prepare output folder."""
    prepared_file(environment)  # the same check of the name
    return PREPARED_IMAGES_FILE_TEMPLATE.format(environment=environment)


def missing_columns(present: list[str] | tuple[str, ...], required: tuple[str, ...]) -> list[str]:
    """Required column names that ``present`` lacks, in contract order."""
    have = set(present)
    return [c for c in required if c not in have]


def require_columns(present: Iterable[str], required: tuple[str, ...], where: str) -> None:
    """Raise a ValueError naming ``where`` and every missing column."""
    missing = missing_columns(list(present), required)
    if missing:
        raise ValueError(
            f"{where}: missing column(s) {', '.join(missing)}; expected at least {', '.join(required)}"
        )


def prediction_id(model_version: str, image_id: str) -> str:
    """The deterministic prediction ID: the same model version and image give the same ID.

    prepare derives it for every record; arize checks each row's ID against its manifest's model
    version with it (a retried log then never duplicates, and rows of another model are refused).
    """
    return hashlib.sha256(f"{model_version}\x1f{image_id}".encode()).hexdigest()[:32]
