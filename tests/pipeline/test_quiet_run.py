"""`pipeline.py run --local` through kfp.local with stand-in stages: what it prints.

One line per finished task with its figures, a failing task's whole log, kfp.local's detail only
with --verbose. The stand-ins run in well under a second each; the real stages are run by
test_local_run.py (slow).
"""

import builtins
import contextlib
import io
import re
from pathlib import Path

import pytest

from components.pipelines import cli, local
from tests.pipeline import fakes

PROGRESS = re.compile(r"^(?P<label>\S+(?: \d+/\d+)?) +(?P<time>\d+(?:\.\d)?s)(?:  (?P<figures>.*))?$")


def _progress(lines: list[str]) -> dict[str, str]:
    """{task label: figures} of the progress lines."""
    found = {}
    for line in lines:
        match = PROGRESS.match(line)
        if match:
            found[match["label"]] = match["figures"] or ""
    return found


@pytest.fixture(scope="module")
def training_run(tmp_path_factory):
    """The training pipeline of stand-ins, run once: (stdout lines, stderr)."""
    real_print = builtins.print
    out, err = io.StringIO(), io.StringIO()
    args = ["run", "--local", "--output-dir", str(tmp_path_factory.mktemp("run")), "--param", "num_shards=2"]
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        fakes.use_fake_stages(mp)
        assert cli.main(args + ["--param", "training_size=100"]) == 0, err.getvalue()
    assert builtins.print is real_print  # kfp.local's indenting print was never installed
    return out.getvalue().splitlines(), err.getvalue()


def test_a_quiet_run_prints_one_line_per_task_with_its_figures(training_run):
    lines, err = training_run
    assert lines[0] == "fashion-drift-training: running each task through kfp.local (--verbose: their logs)"
    assert _progress(lines) == {
        "data": "9,100 rows, 3 degraded",  # 100 + 3,000 + 6,000: the pipeline's other defaults
        "shard-indices": "2 shard(s)",
        "train": "accuracy 0.500",
        "embed 1/2": "10 rows",
        "embed 2/2": "11 rows",
        "prepare": "20 rows, 1 rejected",
        "arize": "nothing sent (no credentials)",
        "drift": "3/7 windows flagged, alert True",
        # the release gate: the stand-in evaluate keeps a model with a registry (run --local's default,
        # <output-dir>/registry) a candidate
        "evaluate": "",
        "decision-gate": "decision candidate",
        "register-model-2": "v1 registered as a candidate",
    }
    # Then the artifacts, and last the report's path; nothing else (no executor input, no task log).
    assert len(lines) == 1 + 11 + 1 + 4 + 1, "\n".join(lines)
    assert lines[12].startswith("artifacts under ")
    assert lines[-1].startswith("drift report: ") and lines[-1].endswith("/drift_report.html")
    assert Path(lines[-1].removeprefix("drift report: ")).read_text().startswith("<html>")
    # A task's warnings are printed in full, each under the task's name, and nothing else is.
    warned = err.splitlines()
    assert len(warned) == 3, err
    assert re.fullmatch(r"train: \S+:\d+: UserWarning: fake train: class 3 has no validation rows", warned[0])
    assert warned[1] == 'train:   warnings.warn("fake train: class 3 has no validation rows", stacklevel=1)'
    assert re.fullmatch(r"train: \[KFP Executor .* WARNING\]: fake train: a logged warning", warned[2])


def test_verbose_adds_kfp_local_detail_and_task_logs(with_fake_stages, tmp_path, capsys):
    args = ["run", "--local", "--output-dir", str(tmp_path), "--verbose"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "Got executor_input:" in out and "Executing task" in out  # kfp.local's detail
    assert "data" in _progress(out.splitlines())  # and still the progress lines


def test_a_failing_task_shows_its_whole_log_once(with_fake_stages, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(fakes.FACTORIES, "data", fakes.FAILING_DATA["data"])
    assert cli.main(["run", "--local", "--output-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert re.search(r"^failing-data FAILED after \d+\.\ds \(exit status 1\); its log:$", err, re.M)
    for i in range(40):  # every line, not a tail
        assert err.count(f"    fake data log line {i}\n") == 1, i  # once: no retries on this machine
    assert "ValueError: fake data stage failed on purpose" in err
    assert "pipeline.py run: Pipeline" in err and "FAILURE" in err
    assert "fake data log line" not in captured.out


def _monitoring(training_run, out_dir: Path, **extra) -> tuple[list[str], str]:
    """The monitoring pipeline of stand-ins on the training run's outputs: (stdout lines, stderr)."""
    lines, _ = training_run
    listed = dict(line.strip().split(": ", 1) for line in lines[-5:-1])
    dataset = Path(listed["data_card"]).parent / "dataset"
    params = {"production_uri": dataset, "model_uri": listed["model"], "baseline_uri": listed["prepared"]}
    args = ["run", "--local", "--pipeline", "monitoring", "--output-dir", str(out_dir)]
    for name, value in {**params, **extra}.items():
        args += ["--param", f"{name}={value}"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert cli.main(args) == 0, err.getvalue()
    return out.getvalue().splitlines(), err.getvalue()


MONITORING_TASKS = {"resolve-batch", "ingest", "embed", "shard-indices", "prepare", "arize", "drift"}
MONITORING_TASKS |= {"alert-gate", "status-gate", "resolve-model"}


def test_monitoring_reports_the_alert_branch(with_fake_stages, training_run, tmp_path):
    lines, _ = _monitoring(training_run, tmp_path / "monitoring")
    progress = _progress(lines)
    assert progress["alert-gate"] == "alert True"
    assert progress["status-gate"] == "status drift"
    assert progress["drift-alert"].startswith("notice: ") and Path(progress["drift-alert"][8:]).is_file()
    # the batch of today's date (no {date} in the URI), read by ingest
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}: /\S+/data/dataset", progress["resolve-batch"])
    assert progress["ingest"] == "5 rows (dataset), 0 kept aside"
    assert set(progress) == MONITORING_TASKS | {"drift-alert", "notify-drift"}
    listed = dict(line.strip().split(": ", 1) for line in lines if line.startswith("  "))
    assert set(listed) == {"alert", "status", "drift_table", "prepared", "rejected", "ingest_summary"}
    assert (listed["alert"], listed["status"]) == ("True", "drift")
    assert Path(listed["ingest_summary"]).read_text().startswith("# Ingest")


def test_monitoring_says_when_drift_could_test_no_window(with_fake_stages, training_run, tmp_path):
    # the stand-in drift reports insufficient-data when min_window_rows exceeds its windows' rows
    lines, err = _monitoring(training_run, tmp_path / "monitoring", min_window_rows=5000)
    progress = _progress(lines)
    assert progress["status-gate"] == "status insufficient-data"
    assert progress["alert-gate"] == "alert False"
    notice = Path(progress["insufficient-data"].removeprefix("notice: "))
    text = notice.read_text()
    assert text.startswith("# Insufficient data: no drift verdict")
    assert "/data/dataset`" in text and "min_window_rows" in text
    assert set(progress) == MONITORING_TASKS | {"insufficient-data"}  # no alert, no webhook message
    # and the run says so where warnings go
    assert re.search(r"^insufficient-data: WARNING: insufficient data: no window of the batch", err, re.M), (
        err
    )


def test_progress_line_layout():
    assert local.progress_line("data", 6.04, "39,000 rows") == "data            6.0s  39,000 rows"
    assert local.progress_line("train", 137.4, "accuracy 0.906") == "train           137s  accuracy 0.906"
    assert local.progress_line("embed 2/4", 12, "") == "embed 2/4        12s"
