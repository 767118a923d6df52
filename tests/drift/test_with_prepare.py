"""The drift stage on a folder written by the real prepare stage (its images files, links, timestamps)."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common import schema
from components.drift import view as v
from components.drift.config import DriftConfig
from components.drift.stage import image_scope, run_drift
from components.prepare.config import PrepareConfig
from components.prepare.prepare import prepare_records
from tests.fixtures import prepare_inputs
from tests.fixtures.drift_rows import report_points

P = schema.PreparedColumns
I = schema.PreparedImageColumns  # noqa: E741 - the module's short name for the images columns
COUNTS = {schema.TRAINING: 300, schema.VALIDATION: 200, schema.PRODUCTION: 300}
NOW = "2026-11-28T12:00:00Z"


def _embed(tmp_path, counts):
    table = pa.concat_tables(
        [prepare_inputs.embed_table(split, n, dim=16, seed=i) for i, (split, n) in enumerate(counts.items())]
    )
    return prepare_inputs.write_embed_dir(tmp_path / "embed", table)


def test_drift_reads_what_prepare_writes(tmp_path):
    """No image store: every thumbnail of the view comes from the artifact's images files (links are null)."""
    dataset = prepare_inputs.write_dataset(tmp_path / "dataset", COUNTS)
    prepared = tmp_path / "prepared"
    prepare_records([_embed(tmp_path, COUNTS)], dataset, prepared, PrepareConfig(now=NOW), progress=False)
    production = pq.read_table(prepared / schema.prepared_file(schema.PRODUCTION))
    assert production[P.IMAGE_LINK].null_count == production.num_rows
    cfg = DriftConfig(projection="pca", drift_resamples=200, false_alarm_rate=0.05, umap_sample=200)
    result = run_drift(prepared, prepared, tmp_path / "report.html", tmp_path / "table.parquet", cfg)
    assert result.metrics["rejected_rows"] == 0
    assert result.metrics["baseline_rows"] == COUNTS[schema.TRAINING]
    assert result.table["n_rows"].sum() == COUNTS[schema.PRODUCTION]
    # every point of the view shows the image prepare carried inside the artifact
    thumbs, texts = report_points((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert len(thumbs) == len(texts)
    assert sum(t.startswith("baseline") for t in texts) == 100  # half of umap_sample=200
    assert thumbs and all(t.startswith("data:image/") for t in thumbs)
    assert not any("thumbnails could not be read" in s or "thumbnails skipped" in s for s in result.summary)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A prepared folder of 12 training and 12 production rows, no image store; and its data set."""
    root = tmp_path_factory.mktemp("small")
    counts = {schema.TRAINING: 12, schema.PRODUCTION: 12}
    dataset = prepare_inputs.write_dataset(root / "dataset", counts)
    prepare_records(
        [_embed(root, counts)], dataset, root / "prepared", PrepareConfig(now=NOW), progress=False
    )
    return root


def _ids_and_images(prepared, env=schema.PRODUCTION):
    table = pq.read_table(prepared / schema.prepared_images_file(env))
    return table[I.PREDICTION_ID].to_pylist(), table[I.IMAGE].to_pylist()


def test_thumbnails_are_found_by_prediction_id_in_the_images_files(small):
    prepared = small / "prepared"
    scope = image_scope(prepared, prepared, DriftConfig())
    assert set(scope.image_files) == {
        prepared / schema.prepared_images_file(e) for e in (schema.TRAINING, schema.PRODUCTION)
    }
    ids, images = _ids_and_images(prepared)
    assert v.read_images(scope.image_files, [ids[3], ids[0], "no-such-id"]) == {
        ids[3]: images[3],
        ids[0]: images[0],
    }
    loaded = v.load_thumbnails(["", "", "/etc/passwd"], scope, keys=[ids[0], "no-such-id", ""])
    assert loaded.uris[0].startswith("data:image/") and loaded.uris[1:] == ["", ""]
    assert (loaded.from_artifact, loaded.unreadable, loaded.outside) == (1, 1, 1)


def test_a_symlinked_or_damaged_images_file_is_never_read(small, tmp_path):
    prepared = small / "prepared"
    ids, _ = _ids_and_images(prepared)
    other = tmp_path / "other"
    other.mkdir()
    # a prepared folder whose images file is a symlink (to real images elsewhere): not taken
    (other / schema.prepared_images_file(schema.PRODUCTION)).symlink_to(
        prepared / schema.prepared_images_file(schema.PRODUCTION)
    )
    assert v.ImageScope.of([str(other)], artifacts=[other]).image_files == ()
    # a damaged images file: skipped, its rows counted unreadable, the report goes on
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / schema.prepared_images_file(schema.PRODUCTION)).write_bytes(b"PAR1 not parquet")
    scope = v.ImageScope.of([], artifacts=[damaged])
    assert len(scope.image_files) == 1
    loaded = v.load_thumbnails(["", ""], scope, keys=ids[:2])
    assert (loaded.uris, loaded.unreadable, loaded.from_artifact) == (["", ""], 2, 0)


def test_without_images_files_the_image_store_links_are_read(small, tmp_path):
    """A prepared folder with an image store, its images files gone: the links (in scope) stand in."""
    store = tmp_path / "store"
    counts = {schema.TRAINING: 12, schema.PRODUCTION: 12}
    prepared = tmp_path / "prepared"
    config = PrepareConfig(now=NOW, image_store=str(store))
    prepare_records([_embed(tmp_path, counts)], small / "dataset", prepared, config, progress=False)
    links = pq.read_table(prepared / schema.prepared_file(schema.PRODUCTION))[P.IMAGE_LINK].to_pylist()
    ids, _ = _ids_and_images(prepared)
    for env in counts:
        (prepared / schema.prepared_images_file(env)).unlink()
    scope = image_scope(prepared, prepared, DriftConfig())  # the manifest's image_store widens it
    loaded = v.load_thumbnails(links, scope, keys=ids)
    assert all(u.startswith("data:image/") for u in loaded.uris)
    assert (loaded.from_artifact, loaded.unreadable, loaded.outside) == (0, 0, 0)
    shutil.rmtree(store)  # and a store that lost them: counted, not fatal
    assert v.load_thumbnails(links, scope, keys=ids).unreadable == len(links)
