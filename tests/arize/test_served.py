"""Arize on prepared rows of an ingested batch: no actual yet, served predictions, given prediction IDs."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.arize.config import ArizeConfig
from components.arize.log import ArizeValidationError, log_prepared, sent_frame, validate_frame
from components.common import schema
from components.common.schema import EmbedColumns as E
from components.common.schema import PreparedColumns as P
from components.prepare.prepare import prepare_records
from tests.arize.conftest import COUNTS, DIM
from tests.fixtures import prepare_inputs

UNLABELLED = (2, 5, 8)  # production rows without a label yet
GIVEN = {0: "serve-0", 4: "serve-4"}


def log(prepared: Path, summary: Path, **kw):
    """``log_prepared`` with short waits, no progress bar."""
    return log_prepared(
        prepared, summary, ArizeConfig(**{"backoff_s": 0.01, "timeout_s": 10.0, **kw}), progress=False
    )


@pytest.fixture(scope="module")
def served_prepared(tmp_path_factory, fashion_dir) -> Path:
    """12 training, 5 validation, 9 production rows; production as ingested (3 unlabelled, 2 given IDs)."""
    root = tmp_path_factory.mktemp("arize-served")
    images = prepare_inputs.read_idx_images(fashion_dir / "t10k-images-idx3-ubyte.gz", sum(COUNTS.values()))
    prepare_inputs.write_dataset(root / "dataset", COUNTS, images)
    dirs = []
    for i, (split, n) in enumerate(COUNTS.items()):
        table = prepare_inputs.embed_table(split, n, dim=DIM, seed=i, spacing=timedelta(minutes=5))
        if split == schema.PRODUCTION:
            labels = table.column(E.LABEL).to_pylist()
            table = prepare_inputs.with_labels(
                table, [schema.NO_LABEL if r in UNLABELLED else v for r, v in enumerate(labels)]
            )
            model = table.column(E.PREDICTION).to_pylist()
            table = prepare_inputs.with_served(
                table,
                [(m + (r == 1)) % 10 if r < 6 else None for r, m in enumerate(model)],
                None,
                [GIVEN.get(r) for r in range(n)],
            )
        dirs.append(prepare_inputs.write_embed_dir(root / f"embed-{split}", table))
    prepare_records(dirs, root / "dataset", root / "prepared", progress=False)
    return root / "prepared"


def copy(prepared: Path, tmp_path: Path) -> Path:
    out = tmp_path / "prepared"
    shutil.copytree(prepared, out)
    return out


def test_rows_without_actual_are_logged_with_the_prediction_only(
    fake_arize, credentials, served_prepared, tmp_path
):
    result = log(served_prepared, tmp_path / "s.md", chunk_rows=4)
    assert result.sent and result.environments[schema.PRODUCTION].rows_without_actual == 3
    assert [r.rows_without_actual for r in result.environments.values()] == [0, 0, 3]
    received = fake_arize.by_environment()
    # a chunk whose actuals are all missing comes as a null-typed column (the SDK via pandas)
    prod = pa.concat_tables([r.table for r in received[schema.PRODUCTION]], promote_options="permissive")
    table = pq.read_table(served_prepared / schema.prepared_file(schema.PRODUCTION))
    assert prod.num_rows == 9
    # chunk_rows=4: the last production chunk is row 8 alone, whose actual is missing: a null-typed column
    assert received[schema.PRODUCTION][-1].table.column(P.ACTUAL_LABEL).type == pa.null()
    actual = prod.column(P.ACTUAL_LABEL).to_pylist()
    assert [i for i, a in enumerate(actual) if a is None] == list(UNLABELLED)
    assert actual == table.column(P.ACTUAL_LABEL).to_pylist()
    assert prod.column(P.PREDICTION_LABEL).to_pylist() == table.column(P.PREDICTION_LABEL).to_pylist()
    assert prod.column(P.PREDICTION_ID).to_pylist() == table.column(P.PREDICTION_ID).to_pylist()
    assert prod.column(P.PREDICTION_ID).to_pylist()[0] == "serve-0"
    assert prod.column(P.PREDICTION_ID).to_pylist()[4] == "serve-4"
    # embed's own prediction stays home: only the sent columns leave
    assert P.MODEL_PREDICTION_LABEL not in prod.column_names and P.PREDICTION_SOURCE not in prod.column_names
    for env in (schema.TRAINING, schema.VALIDATION):
        assert all(
            r.table.column(P.ACTUAL_LABEL).null_count == 0 for r in received[env]
        )  # labelled everywhere else
    text = (tmp_path / "s.md").read_text()
    assert (
        "logged with the prediction only (the actual can be sent later for the same prediction ID): " in text
    )
    assert "production 3 of 9." in text


def test_given_ids_must_be_the_ones_the_manifest_records(no_credentials, served_prepared, tmp_path):
    manifest = json.loads((served_prepared / "manifest.json").read_text())
    digest = hashlib.sha256(b"serve-0\nserve-4\n").hexdigest()
    assert manifest["given_prediction_ids"] == {schema.PRODUCTION: {"rows": 2, "sha256": digest}}
    assert log(served_prepared, tmp_path / "ok.md").environments[schema.PRODUCTION].rows == 9

    # a given ID changed after prepare
    bad = copy(served_prepared, tmp_path / "a")
    path = bad / schema.prepared_file(schema.PRODUCTION)
    table = pq.read_table(path)
    ids = table.column(P.PREDICTION_ID).to_pylist()
    ids[4] = "serve-5"
    pq.write_table(table.set_column(0, P.PREDICTION_ID, pa.array(ids, pa.string())), path)
    with pytest.raises(ArizeValidationError) as err:
        log(bad, tmp_path / "a.md")
    assert (
        "production (2 of 9 rows, first: row 0, image_id 'production-00000'): prediction_id neither derives "
        "from the manifest's model version 'v-test' nor is one of the given IDs the manifest records (2 rows)"
        in str(err.value)
    )

    # the manifest of another model version: the derived IDs are foreign too
    bad = copy(served_prepared, tmp_path / "b")
    (bad / "manifest.json").write_text(json.dumps({**manifest, "model_version": "v-other"}))
    with pytest.raises(ArizeValidationError, match=r"production \(9 of 9 rows.*neither derives"):
        log(bad, tmp_path / "b.md")

    # a manifest that records given IDs the table does not have
    bad = copy(served_prepared, tmp_path / "c")
    record = {schema.TRAINING: {"rows": 1, "sha256": digest}, **manifest["given_prediction_ids"]}
    (bad / "manifest.json").write_text(json.dumps({**manifest, "given_prediction_ids": record}))
    with pytest.raises(
        ArizeValidationError,
        match=r"training \(12 rows\): the manifest records 1 rows with a given prediction_id",
    ):
        log(bad, tmp_path / "c.md")


def test_the_sdk_refuses_a_missing_actual_outside_production(served_prepared):
    """Why prepare keeps -1 labels out of training and validation: Arize needs their actuals."""
    table = pq.read_table(served_prepared / schema.prepared_file(schema.VALIDATION))
    df = sent_frame(table.combine_chunks().to_batches()[0])  # what the stage validates and sends
    assert validate_frame(df, schema.VALIDATION, "m", "v-test") == []
    df.loc[1, P.ACTUAL_LABEL] = None
    errors = validate_frame(df, schema.VALIDATION, "m", "v-test")
    assert len(errors) == 1 and "full of null values" in errors[0] and "actual_label" in errors[0]
    assert validate_frame(df, schema.PRODUCTION, "m", "v-test") == []
