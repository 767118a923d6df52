"""An ingested batch through embed, prepare and arize: unlabelled rows, served predictions, a given ID.

A prediction log (CSV manifest) of 16 real Fashion-MNIST test images in mixed formats: 4 rows
without a label yet, 12 rows with the serving system's prediction (3 of them disagreeing with the
registered model, one without a score), one row with the serving system's prediction id. The
served labels are chosen from the model's own predictions (a first ingest + embed without them),
so the disagreement is known exactly. Arize is the loopback server decoding what the real SDK sends.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from components.arize.config import ArizeConfig
from components.arize.log import log_prepared
from components.common import schema
from components.common.files import MANIFEST_FILE
from components.common.schema import DatasetColumns as C
from components.common.schema import EmbedColumns as E
from components.common.schema import PreparedColumns as P
from components.data.build import build_dataset
from components.data.config import DataConfig
from components.embed.config import EmbedConfig
from components.embed.embed import embed_dataset
from components.ingest.config import IngestConfig
from components.ingest.ingest import ingest_batch
from components.prepare.config import PrepareConfig
from components.prepare.prepare import prepare_records
from components.train.config import TrainConfig
from components.train.train import train_model
from tests.arize.conftest import credentials, fake_arize  # noqa: F401
from tests.ingest.conftest import KINDS, encode, fashion, write_manifest

pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)

N = 16
UNLABELLED = (3, 7, 11, 15)  # label cell empty: no label yet
SERVED = 12  # rows 0..11 carry the serving system's prediction, 12..15 none
DISAGREE = (1, 5, 9)  # served class = the model's + 1
NO_SCORE = 10  # a served label without a score
GIVEN_ID = "serve-000042"  # row 0's prediction id; the others have none


@pytest.fixture(scope="module")
def model_dir(fashion_dir, tmp_path_factory) -> Path:
    """A model folder of the train stage after 3 real steps on a small data set."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("downstream-model")
    build_dataset(
        DataConfig(source=str(fashion_dir), training_size=64, validation_size=16, production_size=30, seed=3),
        root / "dataset",
        quiet=True,
    )
    train_model(root / "dataset", root / "model", TrainConfig(max_steps=3, batch_size=32, threads=1))
    return root / "model"


def manifest_rows(folder: Path, served: list[int] | None) -> list[dict[str, str]]:
    """The log's rows (images written under ``folder/img``); ``served`` = the served classes of rows 0..11."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    images, labels = fashion(N, offset=200)
    rows = []
    for i in range(N):
        data, suffix, _ = encode(images[i], KINDS[i % len(KINDS)])
        name = f"img/{i:03d}{suffix}"
        (folder / name).write_bytes(data)
        label = "" if i in UNLABELLED else (schema.CLASS_NAMES[labels[i]] if i % 2 else str(labels[i]))
        row = {
            "image_uri": name,
            "timestamp": f"2026-11-20T{i:02d}:30:00Z",
            "label": label,
            "store": f"s{i % 3}",
        }
        if served is not None:
            row["prediction_id"] = GIVEN_ID if i == 0 else ""
            row["prediction_label"] = schema.CLASS_NAMES[served[i]] if i < SERVED else ""
            row["prediction_score"] = "" if i >= SERVED or i == NO_SCORE else f"{0.6 + i / 100:.2f}"
        rows.append(row)
    return rows


def ingest_and_embed(root: Path, model_dir: Path, served: list[int] | None):
    """Ingest the log written under ``root``, embed its production split; (ingest result, embed table)."""
    manifest = write_manifest(manifest_rows(root, served), root / "log.csv", "csv")
    result = ingest_batch(
        IngestConfig(source_uri=str(manifest), read_workers=2, chunk_rows=5),
        root / "batch",
        root / "rejected.parquet",
        quiet=True,
    )
    embed_dataset(
        root / "batch",
        model_dir,
        root / "embeddings",
        EmbedConfig(splits=schema.PRODUCTION, embed_batch_size=8, threads=1),
        progress=False,
    )
    return result, pq.read_table(root / "embeddings" / schema.EMBED_FILE)


@pytest.fixture(scope="module")
def model_predictions(model_dir, tmp_path_factory) -> list[int]:
    """The registered model's class for each of the 16 images (an ingest + embed of the log without served columns)."""
    _, table = ingest_and_embed(tmp_path_factory.mktemp("first"), model_dir, None)
    return table.column(E.PREDICTION).to_pylist()


def test_ingest_embed_prepare_arize(model_dir, model_predictions, tmp_path, fake_arize, credentials):  # noqa: F811
    model = model_predictions
    served = [(m + (i in DISAGREE)) % 10 for i, m in enumerate(model)]

    # ingest: 16 rows, 12 labelled, 12 with a served label, 1 with a prediction id
    ingested, table = ingest_and_embed(tmp_path, model_dir, served)
    assert (ingested.rows_written, ingested.labelled, ingested.served, ingested.with_prediction_id) == (
        16,
        12,
        12,
        1,
    )
    assert sum(ingested.rejected.values()) == 0

    # embed: labels -1 kept, served columns carried, the model's prediction unchanged
    assert table.schema.equals(schema.EMBED_SERVED_ARROW_SCHEMA, check_metadata=False)
    labels = table.column(E.LABEL).to_pylist()
    assert [i for i, v in enumerate(labels) if v == schema.NO_LABEL] == list(UNLABELLED)
    assert table.column(E.PREDICTION).to_pylist() == model
    assert table.column(E.SERVED_LABEL).to_pylist() == served[:SERVED] + [None] * (N - SERVED)
    assert table.column(E.GIVEN_PREDICTION_ID).to_pylist() == [GIVEN_ID] + [None] * (N - 1)
    image_ids = table.column(E.IMAGE_ID).to_pylist()
    assert image_ids[0] == GIVEN_ID  # ingest: a given prediction id is the image id too

    # prepare: served prediction reported, the model's beside it, the given id used, no actual for -1
    result = prepare_records(
        [tmp_path / "embeddings"], tmp_path / "batch", tmp_path / "prepared", PrepareConfig(), progress=False
    )
    version = result.model_version
    assert result.rows == {schema.PRODUCTION: 16} and result.rejected == 0
    assert result.labels == {schema.PRODUCTION: {"labelled": 12, "unlabelled": 4}}
    assert (result.served["rows"], result.served["disagree"], result.served["without_score"]) == (12, 3, 1)
    assert result.served["disagreement_rate"] == pytest.approx(0.25)
    sentence = (
        "Served and registered model disagree on 25.0% of rows (3 of 12 with a served prediction): "
        "serving may run another model."
    )
    assert result.served["sentence"] == sentence and sentence in result.summary_markdown()
    assert sum(d["rows"] for d in result.served["top_disagreements"]) == 3
    assert {(d["served"], d["model"]) for d in result.served["top_disagreements"]} == {
        (schema.CLASS_NAMES[served[i]], schema.CLASS_NAMES[model[i]]) for i in DISAGREE
    }
    digest = hashlib.sha256(f"{GIVEN_ID}\n".encode()).hexdigest()
    assert result.given_prediction_ids == {schema.PRODUCTION: {"rows": 1, "sha256": digest}}
    manifest = json.loads((tmp_path / "prepared" / MANIFEST_FILE).read_text())
    assert manifest["served_predictions"] == result.served and manifest["labels"] == result.labels

    prepared = pq.read_table(tmp_path / "prepared" / schema.prepared_file(schema.PRODUCTION))
    want_ids = [GIVEN_ID] + [schema.prediction_id(version, i) for i in image_ids[1:]]
    assert prepared.column(P.PREDICTION_ID).to_pylist() == want_ids
    want_labels = [schema.CLASS_NAMES[served[i] if i < SERVED else model[i]] for i in range(N)]
    assert prepared.column(P.PREDICTION_LABEL).to_pylist() == want_labels
    assert prepared.column(P.MODEL_PREDICTION_LABEL).to_pylist() == [schema.CLASS_NAMES[m] for m in model]
    sources = prepared.column(P.PREDICTION_SOURCE).to_pylist()
    assert sources.count(schema.PREDICTION_SERVED) == 12 and sources.count(schema.PREDICTION_MODEL) == 4
    scores = prepared.column(P.PREDICTION_SCORE).to_pylist()
    assert [i for i, s in enumerate(scores) if s is None] == [NO_SCORE]
    assert scores[:NO_SCORE] == pytest.approx([0.6 + i / 100 for i in range(NO_SCORE)])
    assert scores[SERVED:] == pytest.approx(prepared.column(P.MODEL_PREDICTION_SCORE).to_pylist()[SERVED:])
    actual = prepared.column(P.ACTUAL_LABEL).to_pylist()
    assert [i for i, a in enumerate(actual) if a is None] == list(UNLABELLED)
    _, true_labels = fashion(N, offset=200)
    assert [a for a in actual if a is not None] == [
        schema.CLASS_NAMES[true_labels[i]] for i in range(N) if i not in UNLABELLED
    ]
    # the images prepare exported are the ingested ones
    batch_ids = pq.read_table(tmp_path / "embeddings" / schema.EMBED_FILE).column(C.IMAGE_ID)
    assert prepared.column(P.IMAGE_ID).equals(batch_ids)

    # arize: the SDK validates, the loopback server decodes 16 rows, no actual for the 4 unlabelled
    logged = log_prepared(
        tmp_path / "prepared",
        tmp_path / "arize.md",
        ArizeConfig(backoff_s=0.01, timeout_s=10.0, chunk_rows=8),
        progress=False,
    )
    assert logged.sent and logged.environments[schema.PRODUCTION].rows_sent == 16
    assert logged.environments[schema.PRODUCTION].rows_without_actual == 4
    received = fake_arize.by_environment()
    assert list(received) == [schema.PRODUCTION] and len(received[schema.PRODUCTION]) == 2
    assert {r.model_version for r in received[schema.PRODUCTION]} == {version}
    sent = pa.concat_tables([r.table for r in received[schema.PRODUCTION]], promote_options="permissive")
    assert sent.column(P.PREDICTION_ID).to_pylist() == want_ids == fake_arize.prediction_ids()
    assert sent.column(P.PREDICTION_LABEL).to_pylist() == want_labels
    assert [i for i, a in enumerate(sent.column(P.ACTUAL_LABEL).to_pylist()) if a is None] == list(UNLABELLED)
    assert pc.sum(pc.is_null(sent.column(P.PREDICTION_SCORE))).as_py() == 1
    assert "production 4 of 16." in (tmp_path / "arize.md").read_text()
