"""Prepare with production rows of an ingested batch: no label yet, served predictions, given prediction IDs."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common import schema
from components.common.files import MANIFEST_FILE
from components.common.schema import EmbedColumns as E
from components.common.schema import PreparedColumns as P
from components.prepare.config import PrepareConfig
from components.prepare.prepare import prepare_records
from tests.fixtures import prepare_inputs
from tests.prepare.conftest import COUNTS

NOW = "2026-11-28T12:00:00Z"
N = COUNTS[schema.PRODUCTION]  # 25
UNLABELLED = [4, 9, 14, 19, 24]  # production rows with label -1
SERVED = 20  # rows 0..19 carry a served prediction, 20..24 none
DISAGREE = {2: 3, 7: 3, 12: 5}  # row -> offset: served class = (model class + offset) % 10
NO_SCORE = 17  # a served label without a served score
GIVEN = {0: "given-0", 1: "given-1"}


def production_table() -> tuple[pa.Table, list[int]]:
    """25 production embed rows as an ingested batch gives them; and the model's predictions."""
    table = prepare_inputs.embed_table(schema.PRODUCTION, N, seed=2)
    model = table.column(E.PREDICTION).to_pylist()
    labels = [
        schema.NO_LABEL if i in UNLABELLED else v for i, v in enumerate(table.column(E.LABEL).to_pylist())
    ]
    served = [(model[i] + DISAGREE.get(i, 0)) % 10 if i < SERVED else None for i in range(N)]
    scores = [None if i == NO_SCORE or i >= SERVED else round(0.5 + i / 100, 2) for i in range(N)]
    table = prepare_inputs.with_labels(table, labels)
    table = prepare_inputs.with_served(table, served, scores, [GIVEN.get(i) for i in range(N)])
    return table, model


def write_inputs(root: Path, production: pa.Table) -> list[Path]:
    """Embed folders: training and validation as the data stage gives them, production as ingested."""
    dirs = [
        prepare_inputs.write_embed_dir(root / f"embed-{split}", prepare_inputs.embed_table(split, n, seed=i))
        for i, (split, n) in enumerate(COUNTS.items())
        if split != schema.PRODUCTION
    ]
    return [*dirs, prepare_inputs.write_embed_dir(root / "embed-production", production)]


@pytest.fixture(scope="module")
def served_run(tmp_path_factory, dataset_dir):
    root = tmp_path_factory.mktemp("served")
    production, model = production_table()
    result = prepare_records(
        write_inputs(root, production),
        dataset_dir,
        root / "out",
        PrepareConfig(now=NOW, chunk_rows=8),
        progress=False,
    )
    return result, production, model, root / "out"


def test_unlabelled_rows_get_a_null_actual_label(served_run):
    result, production, _, out = served_run
    table = pq.read_table(out / schema.prepared_file(schema.PRODUCTION))
    actual = table.column(P.ACTUAL_LABEL).to_pylist()
    assert [i for i, a in enumerate(actual) if a is None] == UNLABELLED
    labels = production.column(E.LABEL).to_pylist()
    assert [a for i, a in enumerate(actual) if i not in UNLABELLED] == [
        schema.CLASS_NAMES[labels[i]] for i in range(N) if i not in UNLABELLED
    ]
    assert result.labels == {
        schema.TRAINING: {"labelled": 30, "unlabelled": 0},
        schema.VALIDATION: {"labelled": 10, "unlabelled": 0},
        schema.PRODUCTION: {"labelled": 20, "unlabelled": 5},
    }
    assert "Rows without a label yet (logged to Arize with the prediction only, `actual_label` null): " in (
        result.summary_markdown()
    )
    assert "production 5 of 25." in result.summary_markdown()


def test_served_prediction_is_the_one_reported_model_prediction_kept_beside(served_run):
    _, production, model, out = served_run
    table = pq.read_table(out / schema.prepared_file(schema.PRODUCTION))
    assert table.schema == schema.PREPARED_SERVED_ARROW_SCHEMA
    served = production.column(E.SERVED_LABEL).to_pylist()
    model_score = production.column(E.PREDICTION_SCORE).to_pylist()
    want_label = [schema.CLASS_NAMES[served[i] if i < SERVED else model[i]] for i in range(N)]
    assert table.column(P.PREDICTION_LABEL).to_pylist() == want_label
    assert table.column(P.MODEL_PREDICTION_LABEL).to_pylist() == [schema.CLASS_NAMES[m] for m in model]
    assert table.column(P.MODEL_PREDICTION_SCORE).to_pylist() == pytest.approx(model_score)
    scores = table.column(P.PREDICTION_SCORE).to_pylist()
    assert scores[NO_SCORE] is None  # served label without a score: null, never the model's
    assert scores[:NO_SCORE] == pytest.approx([0.5 + i / 100 for i in range(NO_SCORE)])
    assert scores[SERVED:] == pytest.approx(model_score[SERVED:])
    assert table.column(P.PREDICTION_SOURCE).to_pylist() == ["served"] * SERVED + ["model"] * (N - SERVED)
    # the embed file without served columns gets the same schema: every row the model's
    training = pq.read_table(out / schema.prepared_file(schema.TRAINING))
    assert training.schema == schema.PREPARED_SERVED_ARROW_SCHEMA
    assert set(training.column(P.PREDICTION_SOURCE).to_pylist()) == {"model"}
    assert training.column(P.PREDICTION_LABEL).equals(training.column(P.MODEL_PREDICTION_LABEL))


def test_disagreement_rate_count_and_top_pairs(served_run):
    result, _, model, out = served_run
    pairs = Counter(
        (schema.CLASS_NAMES[(model[i] + k) % 10], schema.CLASS_NAMES[model[i]]) for i, k in DISAGREE.items()
    )
    assert sorted(pairs.values(), reverse=True) == [2, 1]  # two rows disagree the same way here
    served = result.served
    assert (served["rows"], served["disagree"], served["without_score"]) == (20, 3, 1)
    assert served["disagreement_rate"] == pytest.approx(0.15)
    assert served["by_environment"] == {
        schema.PRODUCTION: {"rows": 20, "disagree": 3, "disagreement_rate": 0.15}
    }
    assert [(d["served"], d["model"], d["rows"]) for d in served["top_disagreements"]] == [
        (s, m, n) for (s, m), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    assert sum(v["disagree"] for v in served["by_served_class"].values()) == 3
    assert sum(v["rows"] for v in served["by_served_class"].values()) == 20
    sentence = (
        "Served and registered model disagree on 15.0% of rows (3 of 20 with a served prediction): "
        "serving may run another model."
    )
    assert served["sentence"] == sentence
    text = result.summary_markdown()
    assert sentence in text and "1 row(s) have a served label without a score" in text
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["served_predictions"] == served


def test_given_prediction_ids_replace_the_derived_ones_and_are_recorded(served_run, dataset_dir, tmp_path):
    result, production, _, out = served_run
    ids = pq.read_table(out / schema.prepared_file(schema.PRODUCTION)).column(P.PREDICTION_ID).to_pylist()
    image_ids = production.column(E.IMAGE_ID).to_pylist()
    assert ids[:2] == ["given-0", "given-1"]
    assert ids[2:] == [schema.prediction_id("v-test", i) for i in image_ids[2:]]
    digest = hashlib.sha256(b"given-0\ngiven-1\n").hexdigest()
    assert result.given_prediction_ids == {schema.PRODUCTION: {"rows": 2, "sha256": digest}}
    assert (
        json.loads((out / MANIFEST_FILE).read_text())["given_prediction_ids"] == result.given_prediction_ids
    )
    assert "2 row(s) keep the prediction id the serving system gave" in result.summary_markdown()
    # one chunk gives the same tables and the same record
    again = prepare_records(
        write_inputs(tmp_path, production_table()[0]),
        dataset_dir,
        tmp_path / "out",
        PrepareConfig(now=NOW, chunk_rows=4096),
        progress=False,
    )
    assert again.given_prediction_ids == result.given_prediction_ids and again.served == result.served
    for env in schema.SPLITS:
        name = schema.prepared_file(env)
        assert (
            pq.read_table(tmp_path / "out" / name)
            .drop_columns([P.IMAGE_LINK])
            .equals(pq.read_table(out / name).drop_columns([P.IMAGE_LINK]))
        )


def test_without_served_columns_nothing_changes(tmp_path, dataset_dir):
    dirs = [
        prepare_inputs.write_embed_dir(tmp_path / split, prepare_inputs.embed_table(split, n, seed=i))
        for i, (split, n) in enumerate(COUNTS.items())
    ]
    result = prepare_records(dirs, dataset_dir, tmp_path / "out", PrepareConfig(now=NOW), progress=False)
    for env in schema.SPLITS:
        assert (
            pq.read_table(tmp_path / "out" / schema.prepared_file(env)).schema == schema.PREPARED_ARROW_SCHEMA
        )
    assert result.served == {} and result.given_prediction_ids == {}
    assert "Served" not in result.summary_markdown()


def test_rows_that_cannot_be_used_are_kept_aside_with_the_reason(tmp_path, dataset_dir):
    production, _ = production_table()
    served = production.column(E.SERVED_LABEL).to_pylist()
    scores = production.column(E.SERVED_SCORE).to_pylist()
    given = production.column(E.GIVEN_PREDICTION_ID).to_pylist()
    served[3], scores[5], given[6], given[8] = 12, 1.5, "given-0", "x" * 513
    production = production.drop_columns(list(E.SERVED))
    production = prepare_inputs.with_served(production, served, scores, given)
    training = prepare_inputs.embed_table(schema.TRAINING, COUNTS[schema.TRAINING], seed=0)
    training = prepare_inputs.with_labels(
        training,
        [schema.NO_LABEL if i == 2 else v for i, v in enumerate(training.column(E.LABEL).to_pylist())],
    )
    dirs = [
        prepare_inputs.write_embed_dir(tmp_path / "t", training),
        prepare_inputs.write_embed_dir(tmp_path / "p", production),
    ]
    result = prepare_records(dirs, dataset_dir, tmp_path / "out", PrepareConfig(now=NOW), progress=False)
    rejected = pq.read_table(tmp_path / "out" / schema.PREPARED_REJECTED_FILE).to_pylist()
    got = {(r[E.SPLIT], r["row"]): r["reason"] for r in rejected}
    assert got == {
        (schema.TRAINING, 2): "label -1 (no label yet) in 'training': only production rows may lack a label; "
        "expected a class index 0..9",
        (schema.PRODUCTION, 3): "served_label 12 is not a class index 0..9",
        (schema.PRODUCTION, 5): "served_score 1.5 is not a number in [0, 1]",
        (schema.PRODUCTION, 6): "duplicate prediction_id 'given-0' (an earlier row has it)",
        (schema.PRODUCTION, 8): "given prediction_id has 513 characters; Arize takes at most 512",
    }
    assert result.rows == {schema.TRAINING: 29, schema.PRODUCTION: 21}
    assert result.labels[schema.PRODUCTION] == {"labelled": 16, "unlabelled": 5}
