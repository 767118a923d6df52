"""Prepare stage under bad input and faults: wrong class lists, corrupt files, command-line errors, leftovers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common import files, schema
from components.common.files import MANIFEST_FILE
from components.common.parquet import CorruptParquetError
from components.common.schema import EmbedColumns as E
from tests.prepare.conftest import COUNTS
from tests.prepare.test_prepare import NOW, embed_tables, rejected, run_bad, write_embeds


def set_probabilities(table: pa.Table, rows: dict[int, list[float]]) -> pa.Table:
    probs = [list(p) for p in table[E.PROBABILITIES].to_pylist()]
    for i, p in rows.items():
        probs[i] = p
    idx = table.schema.get_field_index(E.PROBABILITIES)
    return table.set_column(idx, E.PROBABILITIES, pa.array(probs, pa.list_(pa.float32())))


def test_probabilities_not_one_per_class_are_kept_aside(tmp_path, dataset_dir):
    """Rows of a 5-class model (5 probabilities), or with NaN ones, are kept aside naming the column."""
    tables = embed_tables()
    tables[schema.PRODUCTION] = set_probabilities(
        tables[schema.PRODUCTION],
        {1: [0.2] * 5, 3: [0.1] * 11, 4: [float("nan")] + [0.1] * 9, 6: []},
    )
    result = run_bad(tmp_path, dataset_dir, tables)
    assert result.rows[schema.PRODUCTION] == COUNTS[schema.PRODUCTION] - 4
    rej = rejected(tmp_path / "out")
    assert rej["row"].to_pylist() == [1, 3, 4, 6]
    reasons = rej["reason"].to_pylist()
    assert (
        reasons[0]
        == "probabilities has 5 values; expected 10, one per class (a model of another class list?)"
    )
    assert reasons[1].startswith("probabilities has 11 values") and reasons[3].startswith(
        "probabilities has 0 values"
    )
    assert reasons[2] == "probabilities holds NaN or infinite values"
    assert result.rejected_reasons == {
        "probabilities has … values; expected …, one per class (a model of another class list?)": 3,
        "probabilities holds NaN or infinite values": 1,
    }


def test_every_row_of_another_class_list_rejected_shows_the_reasons_with_counts(tmp_path, dataset_dir):
    tables = embed_tables()
    n = COUNTS[schema.VALIDATION]
    tables[schema.VALIDATION] = set_probabilities(tables[schema.VALIDATION], {i: [0.2] * 5 for i in range(n)})
    with pytest.raises(ValueError) as err:
        run_bad(tmp_path, dataset_dir, tables)
    assert str(err.value) == (
        f"environment validation: all {n} rows were rejected, nothing usable is left to log; rows kept "
        f"aside by reason: probabilities has … values; expected …, one per class (a model of another "
        f"class list?): {n}"
    )
    assert not (tmp_path / "out" / MANIFEST_FILE).exists()


def test_truncated_embed_file_is_named(tmp_path, dataset_dir):
    dirs = write_embeds(tmp_path, embed_tables())
    path = dirs[1] / schema.EMBED_FILE
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(
        CorruptParquetError, match=rf"embed-validation/{schema.EMBED_FILE}: not a readable Parquet"
    ):
        from components.prepare.prepare import prepare_records

        prepare_records(dirs, dataset_dir, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / MANIFEST_FILE).exists()


def test_corrupt_pages_inside_an_embed_file_are_named(tmp_path, dataset_dir):
    """Footer intact, data pages overwritten: the error names the file, not a bare Arrow message."""
    from components.prepare.prepare import PrepareConfig, prepare_records

    dirs = write_embeds(tmp_path, embed_tables())
    path = dirs[0] / schema.EMBED_FILE
    pq.write_table(pq.read_table(path), path, compression="snappy")
    raw = bytearray(path.read_bytes())
    raw[8:3008] = b"\xff" * 3000  # just after the leading magic: the first column chunks
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptParquetError, match=rf"embed-training/{schema.EMBED_FILE}: "):
        prepare_records(dirs, dataset_dir, tmp_path / "out", PrepareConfig(now=NOW), progress=False)


def test_corrupt_failures_file_is_named(tmp_path, dataset_dir):
    dirs = write_embeds(tmp_path, embed_tables())
    (dirs[2] / schema.EMBED_FAILURES_FILE).write_bytes(b"not parquet")
    with pytest.raises(
        CorruptParquetError, match=rf"embed-production/{schema.EMBED_FAILURES_FILE}: not a readable"
    ):
        from components.prepare.prepare import PrepareConfig, prepare_records

        prepare_records(dirs, dataset_dir, tmp_path / "out", PrepareConfig(now=NOW), progress=False)


def test_a_corrupt_manifest_is_named(tmp_path):
    from components.prepare.prepare import read_manifest

    (tmp_path / MANIFEST_FILE).write_text("{")
    with pytest.raises(ValueError, match=r"manifest\.json: not JSON"):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing embed folder", "nowhere: embed output not found"),
        ("missing data set", "data set not found"),
        ("bad time", "now='tomorrow': expected an ISO 8601 time"),
        ("corrupt embed file", "not a readable Parquet file"),
        ("every row rejected", "all 30 rows were rejected"),
        ("unwritable image store", "images"),
    ],
)
def test_command_line_prints_one_line_not_a_traceback(case, expected, tmp_path, dataset_dir, capsys):
    from components.prepare.__main__ import main

    tables = embed_tables()
    if case == "every row rejected":
        tables[schema.TRAINING] = set_probabilities(tables[schema.TRAINING], {i: [1.0] for i in range(30)})
    dirs = [str(d) for d in write_embeds(tmp_path, tables)]
    dataset, extra = str(dataset_dir), ["--now", NOW]
    if case == "missing embed folder":
        dirs[0] = str(tmp_path / "nowhere")
    elif case == "missing data set":
        dataset = str(tmp_path / "no-data")
    elif case == "bad time":
        extra = ["--now", "tomorrow"]
    elif case == "corrupt embed file":
        (Path(dirs[1]) / schema.EMBED_FILE).write_bytes(b"PAR1")
    elif case == "unwritable image store":
        (tmp_path / "images").write_text("a file, not a folder")
        extra += ["--image-store", str(tmp_path / "images")]
    code = main(["--embeddings", *dirs, "--dataset", dataset, "--output", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("prepare: error: ")]
    assert code == 2 and expected in line and "Traceback" not in err


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_killed_runs_are_removed(tmp_path, dataset_dir):
    """``.name.tmp-<pid>`` siblings whose process is gone (or is this one) go; a live process's stay."""
    out = tmp_path / "out"
    (out / "images" / schema.PRODUCTION).mkdir(parents=True)
    dead, alive = dead_pid(), os.getppid()
    stale = [
        out / f".production.parquet.tmp-{dead}",
        out / f".manifest.json.tmp-{os.getpid()}",
        out / "images" / schema.PRODUCTION / f".production-00001.png.tmp-{dead}",
    ]
    live = out / f".training.parquet.tmp-{alive}"
    for p in [*stale, live]:
        p.write_bytes(b"half written")
    (out / f".old-folder.old-{dead}").mkdir()
    run_bad(tmp_path, dataset_dir, embed_tables())
    assert [p.exists() for p in stale] == [False] * 3
    assert not (out / f".old-folder.old-{dead}").exists()
    assert live.exists()


def test_remove_stale_temporaries_only_touches_its_names(tmp_path):
    dead = dead_pid()
    mine, other, plain = tmp_path / f".a.txt.tmp-{dead}", tmp_path / f".b.txt.tmp-{dead}", tmp_path / ".c.tmp"
    for p in (mine, other, plain):
        p.write_text("x")
    assert files.remove_stale_temporaries(tmp_path, names=["a.txt"]) == [mine]
    assert other.exists() and plain.exists()
    assert files.remove_stale_temporaries(tmp_path / "missing") == []
    assert files.remove_stale_temporaries(tmp_path) == [other]
