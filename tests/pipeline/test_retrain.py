"""The retraining trigger: the rule that confirms an alert, the training run it creates on the loopback KFP
API (pipeline version and parameters), and the monitoring pipeline's step, never fired by an unconfirmed alert."""

import contextlib
import io
import re
from datetime import UTC, datetime

import datasets
import pandas as pd
import pytest
from kfp.dsl import Dataset

from components.common import helpers, schema
from components.common.history import write_history
from components.common.retrain import alert_runs, confirmation
from components.pipelines import cli
from components.pipelines.definitions import PIPELINE_NAMES, TRAINING

TRAINING_PIPELINE = PIPELINE_NAMES[TRAINING]


def _history(flags_per_run: list[bool]) -> pd.DataFrame:
    """A drift history of one window per run, oldest run first."""
    rows = []
    for i, flagged in enumerate(flags_per_run):
        rows.append(
            {
                "window_start": pd.Timestamp(datetime(2026, 11, 1 + i, tzinfo=UTC)),
                "window": "daily",
                "flagged": flagged,
                "recorded_at": pd.Timestamp(datetime(2026, 11, 1 + i, 23, tzinfo=UTC)),
            }
        )
    return pd.DataFrame(rows)


def test_confirmed_only_with_labels_and_an_alert_that_held():
    held = _history([False, True, True])
    assert alert_runs(held) == [True, True, False]  # newest first
    assert confirmation(True, 500, 100, 2, held).confirmed
    # each missing condition on its own keeps it unconfirmed, and says why
    no_alert = confirmation(False, 500, 100, 2, held)
    assert not no_alert.confirmed and "no drift alert" in no_alert.reason
    few = confirmation(True, 99, 100, 2, held)
    assert not few.confirmed and "99 labelled row(s), fewer than retrain_min_labelled=100" in few.reason
    once = confirmation(True, 500, 100, 2, _history([True, False, True]))
    assert not once.confirmed and "newest first: alert, no alert" in once.reason
    assert not confirmation(True, 500, 100, 3, held).confirmed  # 3 runs asked, the oldest was quiet
    assert not confirmation(True, 500, 100, 4, held).confirmed  # fewer runs recorded than asked
    no_history = confirmation(True, 500, 100, 2, None)
    assert not no_history.confirmed and "history_uri" in no_history.reason
    assert confirmation(True, 500, 100, 1, None).confirmed  # 1: this run's alert is enough


def _uploaded(fake_kfp, versions: int = 2) -> str:
    """The training pipeline registered on the loopback KFP with ``versions`` versions; returns the newest id."""
    fake_kfp.pipelines["pl-1"] = {"pipeline_id": "pl-1", "display_name": TRAINING_PIPELINE}
    return [fake_kfp._add_version("pl-1", f"{TRAINING_PIPELINE} v{i}") for i in range(versions)][-1][
        "pipeline_version_id"
    ]


def _drift_table(path, sharpness_smd: float = -1.4):
    """A drift table written by the drift stage's writer, its explanation naming sharpness."""
    from components.drift.explain import Explanation, FeatureShift
    from components.drift.stage import write_drift_table

    table = pd.DataFrame({"window_start": pd.to_datetime(["2026-11-24"], utc=True), "flagged": [True]})
    shift = FeatureShift("sharpness", 10.0, 6.0, sharpness_smd, abs(sharpness_smd), 0.5, 1e-12)
    e = Explanation(pd.Timestamp("2026-11-24", tz="UTC"), "2026-11-24", 300, features=[shift])
    write_drift_table(table, path, [e])
    return path


def _call(fake_kfp, tmp_path, labelled: int, confirm_runs: int, history_uri: str = "", params: str = ""):
    _drift_table(tmp_path / "drift_table")
    return helpers.start_retraining(
        drift_table=Dataset(name="drift_table", uri="minio://mlpipeline/v2/run-9/drift/drift_table"),
        batch=Dataset(
            name="batch",
            uri="minio://mlpipeline/v2/run-9/ingest/batch",
            metadata={"rows": 700, "labelled": labelled},
        ),
        history_uri=history_uri,
        registry_uri="minio://mlpipeline/model-registry",
        registered_model="fashion",
        retrain_augment="auto",
        retrain_confirm_runs=confirm_runs,
        retrain_min_labelled=100,
        retrain_params=params,
        retrain_pipeline=TRAINING_PIPELINE,
        kfp_host=fake_kfp.url,
        run_id="run-9",
    )


@pytest.fixture
def local_drift_table(monkeypatch, tmp_path):
    """start_retraining reads the drift table at its local path (what the launcher downloaded)."""
    monkeypatch.setattr(Dataset, "path", property(lambda self: str(tmp_path / self.name)))


def test_a_confirmed_alert_creates_a_run_of_the_newest_training_version(
    fake_kfp, tmp_path, local_drift_table, capsys
):
    newest = _uploaded(fake_kfp)
    history = str(tmp_path / "history.parquet")
    write_history(history, _history([True, True]))
    run_id = _call(fake_kfp, tmp_path, 640, 2, history, params='{"profile": "cluster", "augment": "noise"}')
    (created,) = (r.body for r in fake_kfp.calls("POST", "/apis/v2beta1/runs"))
    assert run_id == "run-1" and created["display_name"] == "retrain after run-9"
    assert created["pipeline_version_reference"] == {"pipeline_id": "pl-1", "pipeline_version_id": newest}
    assert created["runtime_config"]["parameters"] == {
        "profile": "cluster",  # retrain_params, passed on
        "extra_training_uri": "minio://mlpipeline/v2/run-9/ingest/batch",  # the batch's labelled rows
        "augment": "blur",  # auto: sharpness fell in the flagged window (retrain_params cannot override it)
        "registry_uri": "minio://mlpipeline/model-registry",  # so the release gate decides
        "registered_model": "fashion",
    }
    (experiment,) = fake_kfp.experiments.values()
    assert created["experiment_id"] == experiment["experiment_id"]
    assert experiment["display_name"] == "fashion-drift-retraining"
    assert "retraining started: run run-1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "labelled, confirm_runs, flags, says",
    [
        (0, 1, None, "0 labelled row(s)"),  # no labels yet: nothing new to learn from
        (640, 2, [True, False], "did not hold on the last 2 runs"),  # the alert did not hold
        (640, 2, None, "needs the drift history"),  # no history to confirm it with
    ],
)
def test_an_unconfirmed_alert_never_creates_a_run(
    fake_kfp, tmp_path, local_drift_table, capsys, labelled, confirm_runs, flags, says
):
    _uploaded(fake_kfp)
    history = ""
    if flags is not None:
        history = str(tmp_path / "history.parquet")
        write_history(history, _history(flags))
    assert _call(fake_kfp, tmp_path, labelled, confirm_runs, history) == ""
    assert fake_kfp.calls("POST", "/apis/v2beta1/runs") == []
    assert says in capsys.readouterr().out


def test_a_training_pipeline_not_uploaded_is_a_clear_error(fake_kfp, tmp_path, local_drift_table):
    with pytest.raises(LookupError, match="no pipeline named 'fashion-drift-training' in KFP: upload"):
        _call(fake_kfp, tmp_path, 640, 1)
    assert fake_kfp.calls("POST", "/apis/v2beta1/runs") == []
    with pytest.raises(ValueError, match="retrain_params: expected a JSON object"):
        _call(fake_kfp, tmp_path, 640, 1, params="[1]")


def _batch(path):
    """A tiny data-stage folder for the stand-in ingest to copy."""
    ds = datasets.Dataset.from_dict({schema.DatasetColumns.LABEL: [1, 2]})
    datasets.DatasetDict({schema.PRODUCTION: ds}).save_to_disk(str(path))
    return path


def _monitoring(tmp_path, fake_kfp, **params) -> list[str]:
    args = ["run", "--local", "--pipeline", "monitoring", "--output-dir", str(tmp_path / "out")]
    given = {
        "production_uri": str(_batch(tmp_path / "batch")),
        "model_uri": str(tmp_path),  # stand-in stages: any folder
        "baseline_uri": str(tmp_path),
        "retrain": True,
        "retrain_confirm_runs": 1,
        "retrain_min_labelled": 5,  # the stand-in ingest reports 5 labelled rows
        "kfp_host": fake_kfp.url,
        **params,
    }
    for name, value in given.items():
        args += ["--param", f"{name}={value}"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert cli.main(args) == 0, err.getvalue()[-3000:]
    return out.getvalue().splitlines()


def test_the_monitoring_step_starts_training_on_a_confirmed_alert_only(with_fake_stages, fake_kfp, tmp_path):
    _uploaded(fake_kfp, versions=1)
    model = tmp_path / "model"
    fakes_model = model / "config.json"
    fakes_model.parent.mkdir()
    fakes_model.write_text("{}")
    lines = _monitoring(tmp_path / "a", fake_kfp, model_uri=str(model))
    started = [line for line in lines if line.startswith("start-retraining")]
    assert len(started) == 1 and re.search(r"run run-1$", started[0]), lines
    (created,) = (r.body for r in fake_kfp.calls("POST", "/apis/v2beta1/runs"))
    parameters = created["runtime_config"]["parameters"]
    assert re.fullmatch(r".*/ingest/batch", parameters["extra_training_uri"])  # the run's ingested batch
    assert "drift_uri" not in parameters  # its windows hold the batch's rows, not the training data set's
    assert parameters["augment"] == ""  # the stand-in drift's table explains nothing
    # no alert (the stand-in drift tests no window): the step never runs, whatever retrain says
    lines = _monitoring(tmp_path / "b", fake_kfp, model_uri=str(model), min_window_rows=5000)
    assert not any(line.startswith("start-retraining") for line in lines)
    assert len(fake_kfp.calls("POST", "/apis/v2beta1/runs")) == 1


def test_retraining_is_off_by_default_and_sits_inside_the_alert_branch():
    from components.pipelines.definitions import build_monitoring_pipeline

    pipeline = build_monitoring_pipeline()
    assert pipeline.component_spec.inputs["retrain"].default is False
    spec = pipeline.pipeline_spec
    conditions = {}  # condition component -> (its trigger condition, the tasks inside)
    for dag in [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]:
        for name, task in dag.tasks.items():
            conditions[task.component_ref.name] = (task.trigger_policy.condition, name)
    inner = next(c for c, comp in spec.components.items() if "start-retraining" in comp.dag.tasks)
    condition, _ = conditions[inner]
    assert "pipelinechannel--retrain" in condition and "true" in condition.lower()
    outer = next(c for c, comp in spec.components.items() if conditions[inner][1] in comp.dag.tasks)
    assert "alert-gate" in conditions[outer][0]  # only when this run's alert fired
