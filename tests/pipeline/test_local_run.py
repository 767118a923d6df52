"""The README's main command, end to end through kfp.local on a small slice of real Fashion-MNIST,
then the monitoring pipeline on what it produced."""

import contextlib
import io
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from components.common import schema
from components.pipelines import cli

SMALL = {
    "training_size": 600,
    "validation_size": 200,
    "production_size": 700,
    "production_days": 7,
    "window_days": 2,
    "max_steps": 5,
    "num_shards": 2,
    "projection": "pca",
}
PROGRESS = re.compile(r"^(\S+(?: \d+/\d+)?) +\d+(?:\.\d)?s(?:  (.*))?$")


def _run(args: list[str]) -> tuple[list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(args)
    assert rc == 0, (out.getvalue() + err.getvalue())[-5000:]
    return [line for line in out.getvalue().splitlines() if line.strip()], err.getvalue()


def _listing(lines: list[str], count: int) -> dict[str, str]:
    """The `  name: path` lines printed before the last line."""
    return dict(line.strip().split(": ", 1) for line in lines[-count - 1 : -1])


def _progress(lines: list[str]) -> dict[str, str]:
    return {m[1]: m[2] or "" for m in map(PROGRESS.match, lines) if m}


@pytest.fixture(scope="module")
def training_run(fashion_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("local-run")
    args = ["run", "--local", "--output-dir", str(root), "--param", f"source={fashion_dir}"]
    for name, value in SMALL.items():
        args += ["--param", f"{name}={value}"]
    lines, err = _run(args)
    return root, lines, err


@pytest.mark.slow
def test_run_local_prints_one_line_per_task_and_ends_with_the_report_path(training_run):
    root, lines, err = training_run
    progress = _progress(lines)
    assert set(progress) == {
        "data",
        "shard-indices",
        "train",
        "embed 1/2",
        "embed 2/2",
        "prepare",
        "arize",
        "drift",
        "evaluate",
        "decision-gate",
        "register-model",  # the gate's promote branch: run --local's registry (<output-dir>/registry) is new
    }
    assert progress["decision-gate"] == "decision promote"  # no production model yet
    assert progress["register-model"] == "v1 promoted to production"
    assert (root / "registry").is_dir()
    assert progress["data"] == "1,500 rows, 100 degraded"  # 600 + 200 + 700; 100 in the degraded window
    assert re.fullmatch(r"accuracy 0\.\d{3}", progress["train"])
    assert progress["embed 1/2"] == "750 rows" and progress["embed 2/2"] == "750 rows"
    prepared_rows, rejected_rows = map(int, re.findall(r"\d+", progress["prepare"].replace(",", "")))
    assert prepared_rows + rejected_rows == 1500
    assert progress["arize"] == "nothing sent (no credentials)"
    assert re.fullmatch(r"\d+/\d+ windows flagged, alert (True|False)", progress["drift"])
    assert len(lines) == 1 + 11 + 1 + 4 + 1, "\n".join(lines)  # no executor input, no task log
    assert "Got executor_input" not in err and "Executing task" not in err

    assert lines[-1].startswith("drift report: ")
    report = Path(lines[-1].removeprefix("drift report: "))
    assert report.is_file() and report.is_relative_to(root) and report.suffix == ".html"
    html = report.read_text()
    assert html.lstrip().lower().startswith(("<!doctype html", "<html")) and len(html) > 10_000
    listed = _listing(lines, 4)
    assert set(listed) == {"drift_table", "model", "prepared", "data_card"}

    prepared = Path(listed["prepared"])
    for env in schema.SPLITS:
        table = pq.read_table(prepared / schema.prepared_file(env))
        assert table.num_rows > 0
        assert set(schema.PreparedColumns.ALL) <= set(table.column_names)
    expected = SMALL["training_size"] + SMALL["validation_size"] + SMALL["production_size"]
    rows = sum(pq.read_metadata(prepared / schema.prepared_file(env)).num_rows for env in schema.SPLITS)
    rejected = pq.read_metadata(prepared / schema.PREPARED_REJECTED_FILE).num_rows
    assert rows + rejected == expected  # both embed shards were gathered, nothing dropped
    assert (rows, rejected) == (prepared_rows, rejected_rows)
    summary = json.loads((Path(listed["model"]) / "training_summary.json").read_text())
    assert summary["model_version"]
    assert Path(listed["data_card"]).read_text().startswith("#")
    flagged, windows = map(int, progress["drift"].split()[0].split("/"))
    table = pq.read_table(listed["drift_table"])
    assert table.num_rows == windows and sum(table.column("flagged").to_pylist()) == flagged


@pytest.mark.slow
def test_monitoring_runs_on_the_stored_training_outputs(training_run, tmp_path):
    _, lines, _ = training_run
    listed = _listing(lines, 4)
    dataset = Path(listed["data_card"]).parent / "dataset"  # the data task's Dataset folder
    args = [
        "run", "--local", "--pipeline", "monitoring", "--output-dir", str(tmp_path),
        "--param", f"production_uri={dataset}", "--param", f"model_uri={listed['model']}",
        "--param", f"baseline_uri={listed['prepared']}", "--param", "projection=pca",
    ]  # fmt: skip
    out, _ = _run(args)
    assert out[-1].startswith("drift report: ")
    monitored = _listing(out, 6)
    assert set(monitored) == {"alert", "status", "drift_table", "prepared", "rejected", "ingest_summary"}
    assert monitored["alert"] in ("True", "False")
    assert monitored["status"] in ("drift", "no-drift")  # 700 rows over 7 days: windows were tested
    progress = _progress(out)
    assert progress["alert-gate"] == f"alert {monitored['alert']}"
    assert progress["status-gate"] == f"status {monitored['status']}"
    # the data task's folder, read by ingest as a data-stage folder and copied unchanged
    assert progress["ingest"] == "700 rows (dataset), 0 kept aside"  # its production rows
    assert Path(monitored["ingest_summary"]).read_text().startswith("# Ingest")
    assert pq.read_metadata(monitored["rejected"]).num_rows == 0
    production = pq.read_metadata(Path(monitored["prepared"]) / schema.prepared_file(schema.PRODUCTION))
    assert production.num_rows > 0
    assert not (Path(monitored["prepared"]) / schema.prepared_file(schema.TRAINING)).exists()
    # dsl.If: the alert task ran exactly when drift raised the alert.
    notices = list(tmp_path.glob("*/drift-alert/notice"))
    assert len(notices) == (1 if monitored["alert"] == "True" else 0)
    if notices:
        assert notices[0].read_text().startswith("# Embedding drift alert")


def test_monitoring_without_its_inputs_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["run", "--local", "--pipeline", "monitoring", "--output-dir", str(tmp_path)]) == 2
    assert "needs --param production_uri=" in capsys.readouterr().err
