"""Prepare stage: timestamps, IDs, labels, vectors, images, chunking, bad input, kfp.local."""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from components.common import schema
from components.common.config import config_from_args
from components.common.files import MANIFEST_FILE
from components.common.schema import EmbedColumns as E
from components.common.schema import PreparedColumns as P
from components.common.schema import PreparedImageColumns as I
from components.common.schema import prediction_id
from components.common.storage import StorageConfig
from components.prepare.config import PrepareConfig, parse_now
from components.prepare.prepare import (
    ImageTarget,
    Plan,
    open_embeds,
    prepare_records,
    scan_embeds,
    validate_scan,
)
from tests.fixtures import prepare_inputs
from tests.prepare.conftest import COUNTS

NOW = "2026-11-28T12:00:00Z"
NOW_DT = datetime(2026, 11, 28, 12, tzinfo=UTC)
DIM = 16


def embed_tables(**kw) -> dict[str, pa.Table]:
    """One embed table per split; production spaced 7 min, training/validation 3 min, older."""
    newest = {
        schema.TRAINING: datetime(2024, 1, 10, tzinfo=UTC),
        schema.VALIDATION: datetime(2024, 1, 20, tzinfo=UTC),
        schema.PRODUCTION: datetime(2024, 3, 1, tzinfo=UTC),
    }
    return {
        split: prepare_inputs.embed_table(
            split,
            n,
            dim=DIM,
            seed=i,
            newest=newest[split],
            spacing=timedelta(minutes=7 if split == schema.PRODUCTION else 3),
            **kw,
        )
        for i, (split, n) in enumerate(COUNTS.items())
    }


def write_embeds(root: Path, tables: dict[str, pa.Table]) -> list[Path]:
    return [prepare_inputs.write_embed_dir(root / f"embed-{split}", t) for split, t in tables.items()]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, dataset_dir):
    root = tmp_path_factory.mktemp("prep")
    tables = embed_tables()
    result = prepare_records(
        write_embeds(root, tables),
        dataset_dir,
        root / "out",
        PrepareConfig(now=NOW, chunk_rows=8),
        progress=False,
    )
    return result, tables, root / "out"


def read_env(out: Path, env: str) -> pa.Table:
    return pq.read_table(out / schema.prepared_file(env))


def test_timestamps_newest_production_is_now_and_spacing_kept(prepared):
    result, tables, out = prepared
    prod = read_env(out, schema.PRODUCTION)
    assert pc.max(prod[P.PREDICTION_TS]).as_py() == NOW_DT
    shift = NOW_DT - datetime(2024, 3, 1, tzinfo=UTC)
    assert result.time_shift_seconds == shift.total_seconds()
    for env in schema.SPLITS:
        got = read_env(out, env)[P.PREDICTION_TS].to_pylist()
        before = tables[env][E.PREDICTION_TS].to_pylist()
        assert got == [t + shift for t in before]  # same offset for every environment: spacing kept
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["time_shift_seconds"] == shift.total_seconds()
    assert manifest["rows"] == COUNTS and manifest["rejected"] == 0
    assert manifest["model_version"] == "v-test"


def test_ids_stable_across_runs_unique_and_tied_to_model_version(prepared, dataset_dir, tmp_path):
    _, tables, out = prepared
    again = prepare_records(
        write_embeds(tmp_path, tables),
        dataset_dir,
        tmp_path / "again",
        PrepareConfig(now="", chunk_rows=100),
        progress=False,
    )
    ids = []
    for env in schema.SPLITS:
        first = read_env(out, env)[P.PREDICTION_ID].to_pylist()
        assert read_env(tmp_path / "again", env)[P.PREDICTION_ID].to_pylist() == first
        ids += first
    assert len(set(ids)) == len(ids) == sum(COUNTS.values())
    assert again.rows == COUNTS
    assert prediction_id("v-test", "production-00000") != prediction_id("v-other", "production-00000")
    assert read_env(out, schema.PRODUCTION)[P.PREDICTION_ID][0].as_py() == prediction_id(
        "v-test", "production-00000"
    )


def test_class_names_and_scores(prepared):
    _, tables, out = prepared
    for env in schema.SPLITS:
        got, src = read_env(out, env), tables[env]
        assert got[P.PREDICTION_LABEL].to_pylist() == [
            schema.CLASS_NAMES[i] for i in src[E.PREDICTION].to_pylist()
        ]
        assert got[P.ACTUAL_LABEL].to_pylist() == [schema.CLASS_NAMES[i] for i in src[E.LABEL].to_pylist()]
        assert got[P.PREDICTION_SCORE].to_pylist() == src[E.PREDICTION_SCORE].to_pylist()


def test_vectors_are_float32_lists_of_one_length(prepared):
    _, tables, out = prepared
    for env in schema.SPLITS:
        got = read_env(out, env)
        assert got.schema == schema.PREPARED_ARROW_SCHEMA
        assert got.schema.field(P.IMAGE_VECTOR).type == pa.list_(pa.float32())
        assert set(pc.list_value_length(got[P.IMAGE_VECTOR]).to_pylist()) == {DIM}
        np.testing.assert_array_equal(
            np.stack(got[P.IMAGE_VECTOR].to_numpy(zero_copy_only=False)),
            np.stack(tables[env][E.EMBEDDING].to_numpy(zero_copy_only=False)),
        )


def read_images(out: Path, env: str) -> pa.Table:
    return pq.read_table(out / schema.prepared_images_file(env))


def test_images_travel_inside_the_artifact_in_one_file_per_environment(prepared, images):
    """No image store: the real PNGs are in images-<env>.parquet (same rows, same order), links null."""
    result, _, out = prepared
    first = {schema.TRAINING: 0, schema.VALIDATION: COUNTS[schema.TRAINING]}
    first[schema.PRODUCTION] = COUNTS[schema.TRAINING] + COUNTS[schema.VALIDATION]  # write_dataset's order
    for env in schema.SPLITS:
        rows, imgs = read_env(out, env), read_images(out, env)
        assert imgs.schema.equals(schema.PREPARED_IMAGES_ARROW_SCHEMA)
        assert imgs[I.PREDICTION_ID].to_pylist() == rows[P.PREDICTION_ID].to_pylist()
        assert imgs[I.IMAGE_ID].to_pylist() == rows[P.IMAGE_ID].to_pylist()
        assert rows[P.IMAGE_LINK].null_count == rows.num_rows  # no image store: nothing to link
        pngs = imgs[I.IMAGE].to_pylist()
        for k in (0, len(pngs) - 1):
            assert pngs[k][:8] == b"\x89PNG\r\n\x1a\n"
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(pngs[k]))), images[first[env] + k])
    # a handful of objects, none per image
    names = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert names == sorted(
        [MANIFEST_FILE, schema.PREPARED_REJECTED_FILE]
        + [schema.prepared_file(e) for e in schema.SPLITS]
        + [schema.prepared_images_file(e) for e in schema.SPLITS]
    )
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["image_files"] == {e: schema.prepared_images_file(e) for e in schema.SPLITS}
    assert manifest["image_store"] == "" and manifest["image_links"]["kind"] == "none"
    summary = result.summary_markdown()
    assert "`images-production.parquet`" in summary and f"`{P.IMAGE_LINK}` is null" in summary


def test_a_local_image_store_gets_one_png_per_image_and_the_links(tmp_path, dataset_dir):
    tables = {schema.PRODUCTION: embed_tables()[schema.PRODUCTION]}
    store = tmp_path / "store"
    result = prepare_records(
        write_embeds(tmp_path, tables),
        dataset_dir,
        tmp_path / "out",
        PrepareConfig(image_store=str(store), now=NOW, image_workers=3),
        progress=False,
    )
    links = read_env(tmp_path / "out", schema.PRODUCTION)[P.IMAGE_LINK].to_pylist()
    assert links[0] == str(store / schema.PRODUCTION / "production-00000.png")
    assert len(list((store / schema.PRODUCTION).glob("*.png"))) == COUNTS[schema.PRODUCTION]
    inside = read_images(tmp_path / "out", schema.PRODUCTION)[I.IMAGE].to_pylist()
    assert [Path(link).read_bytes() for link in links] == inside  # the same bytes in both places
    assert result.image_links["kind"] == "url" and result.image_store == str(store)
    assert not list((tmp_path / "out").rglob("*.png"))


def test_chunked_processing_matches_one_chunk(prepared, dataset_dir, tmp_path):
    """A table bigger than the chunk (8 rows) gives the same rows as one chunk, written chunk by chunk."""
    _, tables, out = prepared
    prepare_records(
        write_embeds(tmp_path, tables),
        dataset_dir,
        tmp_path / "one",
        PrepareConfig(now=NOW, chunk_rows=10_000),
        progress=False,
    )
    for env in schema.SPLITS:  # the same rows and images
        assert read_env(out, env).equals(read_env(tmp_path / "one", env))
        assert read_images(out, env).equals(read_images(tmp_path / "one", env))
    # chunk_rows=8: each chunk of the 25 production rows became its own row group
    assert pq.ParquetFile(out / schema.prepared_file(schema.PRODUCTION)).num_row_groups == 4
    assert pq.ParquetFile(tmp_path / "one" / schema.prepared_file(schema.PRODUCTION)).num_row_groups == 1


def test_remote_image_store_goes_through_storage(monkeypatch, dataset_dir, tmp_path):
    written: dict[str, bytes] = {}

    def fake_write(uri: str, data: bytes, content_type: str | None = None) -> str:
        written[uri] = data
        return "https://storage.example/" + uri.removeprefix("gs://")

    monkeypatch.setattr("components.common.storage.write_bytes", fake_write)
    tables = {schema.PRODUCTION: embed_tables()[schema.PRODUCTION]}
    prepare_records(
        write_embeds(tmp_path, tables),
        dataset_dir,
        tmp_path / "out",
        PrepareConfig(image_store="gs://b/imgs", now=NOW),
        progress=False,
    )
    links = read_env(tmp_path / "out", schema.PRODUCTION)[P.IMAGE_LINK].to_pylist()
    assert len(written) == COUNTS[schema.PRODUCTION]
    assert links[0] == "https://storage.example/b/imgs/production/production-00000.png"
    assert all(uri.startswith("gs://b/imgs/production/") for uri in written)
    assert not (tmp_path / "out" / "images").exists()
    assert not (tmp_path / "out" / schema.prepared_file(schema.TRAINING)).exists()  # absent environment


# ---------------------------------------------------------------- bad input


def run_bad(tmp_path, dataset_dir, tables):
    return prepare_records(
        write_embeds(tmp_path, tables),
        dataset_dir,
        tmp_path / "out",
        PrepareConfig(now=NOW, chunk_rows=8),
        progress=False,
    )


def test_missing_column_names_file_and_column(tmp_path, dataset_dir):
    tables = embed_tables()
    tables[schema.VALIDATION] = tables[schema.VALIDATION].drop_columns([E.EMBEDDING])
    with pytest.raises(
        ValueError, match=rf"embed-validation/{schema.EMBED_FILE}.*missing column\(s\) {E.EMBEDDING}"
    ):
        run_bad(tmp_path, dataset_dir, tables)
    assert not (tmp_path / "out" / MANIFEST_FILE).exists()


def rejected(out: Path) -> pa.Table:
    return pq.read_table(out / schema.PREPARED_REJECTED_FILE)


def replace_vectors(table: pa.Table, rows: dict[int, list[float]]) -> pa.Table:
    vectors = table[E.EMBEDDING].to_pylist()
    for i, v in rows.items():
        vectors[i] = v
    idx = table.schema.get_field_index(E.EMBEDDING)
    return table.set_column(idx, E.EMBEDDING, pa.array(vectors, pa.list_(pa.float32())))


def test_mixed_lengths_nan_and_inf_rows_kept_aside(tmp_path, dataset_dir):
    tables = embed_tables()
    tables[schema.PRODUCTION] = replace_vectors(
        tables[schema.PRODUCTION],
        {2: [0.5] * (DIM + 3), 5: [float("nan")] + [0.0] * (DIM - 1), 9: [0.0] * (DIM - 1) + [float("inf")]},
    )
    result = run_bad(tmp_path, dataset_dir, tables)
    assert result.rows[schema.PRODUCTION] == COUNTS[schema.PRODUCTION] - 3
    assert result.rejected == 3
    rej = rejected(tmp_path / "out")
    assert rej["row"].to_pylist() == [2, 5, 9]
    assert rej[E.IMAGE_ID].to_pylist() == ["production-00002", "production-00005", "production-00009"]
    reasons = rej["reason"].to_pylist()
    assert f"has {DIM + 3} values; expected {DIM}" in reasons[0]
    assert "NaN or infinite" in reasons[1] and "NaN or infinite" in reasons[2]
    kept = read_env(tmp_path / "out", schema.PRODUCTION)[P.IMAGE_ID].to_pylist()
    assert "production-00002" not in kept and "production-00003" in kept
    manifest = json.loads((tmp_path / "out" / MANIFEST_FILE).read_text())
    reasons_by_kind = {
        f"{E.EMBEDDING} has … values; expected … like most rows": 1,
        f"{E.EMBEDDING} holds NaN or infinite values": 2,
    }
    assert manifest["rejected"] == 3 and manifest["rejected_reasons"] == reasons_by_kind
    summary = result.summary_markdown()
    assert "| rejected (kept aside in `rejected.parquet`) | 3 |" in summary
    assert (
        "| reason rows were kept aside | rows |\n|---|---:|\n"
        + "".join(f"| {r} | {n} |\n" for r, n in sorted(reasons_by_kind.items()))
        in summary
    )


def test_unparseable_timestamps_kept_aside(tmp_path, dataset_dir):
    tables = embed_tables()
    prod = tables[schema.PRODUCTION]
    ts = [t.isoformat() for t in prod[E.PREDICTION_TS].to_pylist()]
    ts[3] = "yesterday-ish"
    idx = prod.schema.get_field_index(E.PREDICTION_TS)
    tables[schema.PRODUCTION] = prod.set_column(idx, E.PREDICTION_TS, pa.array(ts, pa.string()))
    result = run_bad(tmp_path, dataset_dir, tables)
    assert result.rejected == 1
    assert (
        rejected(tmp_path / "out")["reason"][0].as_py()
        == f"{E.PREDICTION_TS} 'yesterday-ish' cannot be parsed"
    )
    assert pc.max(read_env(tmp_path / "out", schema.PRODUCTION)[P.PREDICTION_TS]).as_py() == NOW_DT


def test_empty_environment_is_an_error(tmp_path, dataset_dir):
    tables = embed_tables()
    n = COUNTS[schema.VALIDATION]
    tables[schema.VALIDATION] = replace_vectors(
        tables[schema.VALIDATION], {i: [float("nan")] * DIM for i in range(n)}
    )
    with pytest.raises(ValueError, match=rf"environment {schema.VALIDATION}: all {n} rows were rejected"):
        run_bad(tmp_path, dataset_dir, tables)
    assert not list((tmp_path / "out").glob("*.parquet"))  # nothing written half


def test_no_rows_and_mixed_versions(tmp_path, dataset_dir):
    empty = {schema.PRODUCTION: embed_tables()[schema.PRODUCTION].slice(0, 0)}
    with pytest.raises(ValueError, match="no rows"):
        run_bad(tmp_path / "a", dataset_dir, empty)
    tables = embed_tables()
    tables[schema.TRAINING] = embed_tables(model_version="v-other")[schema.TRAINING]
    with pytest.raises(ValueError, match=rf"column {E.MODEL_VERSION} must hold one"):
        run_bad(tmp_path / "c", dataset_dir, tables)


def test_duplicate_and_unknown_image_ids_kept_aside(tmp_path, dataset_dir):
    tables = embed_tables()
    prod = tables[schema.PRODUCTION]
    ids = prod[E.IMAGE_ID].to_pylist()
    ids[4] = ids[1]
    ids[6] = "not-in-the-data-set"
    tables[schema.PRODUCTION] = prod.set_column(0, E.IMAGE_ID, pa.array(ids, pa.string()))
    result = run_bad(tmp_path, dataset_dir, tables)
    reasons = rejected(tmp_path / "out")["reason"].to_pylist()
    assert result.rejected == 2
    assert reasons[0].startswith("duplicate image_id 'production-00001'")
    assert "'not-in-the-data-set' is not in the data set" in reasons[1]


def test_with_the_data_stage_output(tmp_path):
    """The real data stage's folder (components.data.build_dataset, real Fashion-MNIST): images found and exported."""
    import datasets

    from components.data.build import DataConfig, build_dataset

    config = DataConfig(
        training_size=12, validation_size=6, production_size=12, production_days=3, window_days=1
    )
    build_dataset(config, tmp_path / "dataset", quiet=True)
    dirs = [
        prepare_inputs.write_embed_dir(
            tmp_path / f"e-{s}", prepare_inputs.embed_table_for(tmp_path / "dataset", s, seed=i)
        )
        for i, s in enumerate(schema.SPLITS)
    ]
    result = prepare_records(
        dirs, tmp_path / "dataset", tmp_path / "out", PrepareConfig(now=NOW, chunk_rows=5), progress=False
    )
    assert result.rows == {schema.TRAINING: 12, schema.VALIDATION: 6, schema.PRODUCTION: 12}
    assert result.rejected == 0
    prod = read_env(tmp_path / "out", schema.PRODUCTION)
    source = datasets.load_from_disk(str(tmp_path / "dataset"))[schema.PRODUCTION]
    assert prod[P.DEGRADATION].to_pylist() == list(source[schema.DatasetColumns.DEGRADATION])
    assert pc.max(prod[P.PREDICTION_TS]).as_py() == NOW_DT
    k = len(source) - 1
    exported = np.asarray(
        Image.open(io.BytesIO(read_images(tmp_path / "out", schema.PRODUCTION)[I.IMAGE][k].as_py()))
    )
    np.testing.assert_array_equal(exported, np.asarray(source[k][schema.DatasetColumns.IMAGE]))


def test_command_line(dataset_dir, tmp_path):
    from components.prepare.__main__ import main

    tables = {schema.PRODUCTION: embed_tables()[schema.PRODUCTION]}
    dirs = [str(d) for d in write_embeds(tmp_path, tables)]
    args = ["--embeddings", *dirs, "--dataset", str(dataset_dir), "--output", str(tmp_path / "out")]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / schema.prepared_file(schema.TRAINING)).write_bytes(b"left by an earlier run")
    assert main([*args, "--now", NOW, "--chunk-rows", "10", "--summary", str(tmp_path / "s.md")]) == 0
    assert json.loads((tmp_path / "out" / MANIFEST_FILE).read_text())["rows"] == {schema.PRODUCTION: 25}
    assert "| production | 25 |" in (tmp_path / "s.md").read_text()
    assert not (tmp_path / "out" / schema.prepared_file(schema.TRAINING)).exists()


# ---------------------------------------------------------------- config, steps, command line


def test_parse_now():
    """'' is the current UTC time; an ISO 8601 time is read as UTC when it has no offset."""
    before = datetime.now(UTC)
    now = parse_now("")
    assert before <= now <= datetime.now(UTC) and now.tzinfo is UTC
    assert parse_now(NOW) == NOW_DT
    assert parse_now("2026-11-28T12:00:00") == NOW_DT
    assert parse_now("2026-11-28T14:00:00+02:00") == NOW_DT
    assert parse_now(datetime(2026, 11, 28, 12)) == NOW_DT
    with pytest.raises(ValueError) as err:
        parse_now("tomorrow")
    assert str(err.value) == (
        "now='tomorrow': expected an ISO 8601 time such as '2026-11-28T12:00:00Z', or '' for the current time"
    )


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"chunk_rows": 0}, "chunk_rows=0: expected a positive number of rows"),
        ({"image_workers": 0}, "image_workers=0: expected at least 1"),
        ({"now": "tomorrow"}, "now='tomorrow': expected an ISO 8601 time such as"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kw, message):
    with pytest.raises(ValueError) as err:
        PrepareConfig(**kw)
    assert str(err.value).startswith(message)


def test_scan_and_validate_steps_find_the_plan(tmp_path):
    """The first two steps: rows, newest time per split, one version, the usual vector length."""
    tables = embed_tables()
    tables[schema.TRAINING] = replace_vectors(tables[schema.TRAINING], {0: [0.0] * (DIM + 1)})
    inputs = open_embeds(write_embeds(tmp_path, tables))
    scan = scan_embeds(inputs, chunk_rows=7)
    assert scan.rows == sum(COUNTS.values())
    assert scan.newest == {
        schema.TRAINING: datetime(2024, 1, 10, tzinfo=UTC),
        schema.VALIDATION: datetime(2024, 1, 20, tzinfo=UTC),
        schema.PRODUCTION: datetime(2024, 3, 1, tzinfo=UTC),
    }
    assert scan.model_versions == {"v-test": sum(COUNTS.values())}
    assert scan.lengths == {DIM: sum(COUNTS.values()) - 1, DIM + 1: 1}
    plan = validate_scan(scan, inputs, NOW_DT)
    assert plan == Plan(
        model_version="v-test",
        vector_length=DIM,
        anchor=datetime(2024, 3, 1, tzinfo=UTC),
        anchor_environment=schema.PRODUCTION,
        now=NOW_DT,
        rows=sum(COUNTS.values()),
    )
    assert plan.shift == NOW_DT - datetime(2024, 3, 1, tzinfo=UTC)
    # without production rows the newest row of any split is the anchor
    no_production = dataclasses.replace(
        scan, newest={k: v for k, v in scan.newest.items() if k != "production"}
    )
    plan = validate_scan(no_production, inputs, NOW_DT)
    assert (plan.anchor_environment, plan.anchor) == (schema.VALIDATION, datetime(2024, 1, 20, tzinfo=UTC))


def test_image_target():
    assert ImageTarget.for_store("gs://b/imgs") == ImageTarget("gs://b/imgs")
    assert ImageTarget.for_store("gs://b/imgs").writes
    none = ImageTarget.for_store("")
    assert (none.writes, none.shown, none.link_kind().style) == (False, "", "none")
    # a link style from the environment alone is ignored without a store; one asked for is refused
    assert ImageTarget.for_store("", StorageConfig(links="signed")) == none
    with pytest.raises(ValueError, match="links=signed: there is no image store to link"):
        ImageTarget.for_store("", StorageConfig(links="signed"), "signed")


def test_command_line_options_come_from_the_config():
    from components.prepare.__main__ import parser

    args = parser().parse_args(
        ["--embeddings", "a", "b", "--dataset", "d", "--output", "o", "--now", NOW, "--image-workers", "2"]
    )
    assert (args.embeddings, args.dataset, args.output, args.summary) == (["a", "b"], "d", "o", "")
    assert config_from_args(PrepareConfig, args) == PrepareConfig(now=NOW, image_workers=2)
