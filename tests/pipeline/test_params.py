"""``--param`` values read as the compiled pipeline's declared types (issue 14, item 8).

Every case goes through the command line: ``run --local`` on the stand-in stages (fakes.py, with a
train and an arize that record what they received) and ``submit`` / ``schedule`` against the
loopback KFP server, asserting what the server RECEIVED, or that nothing was sent. Two cases run
the real ``python pipeline.py`` in a subprocess (real stages): the refusal has no traceback, and
the server receives the converted values. The rows of /work/reliability-D.md name these tests.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from kfp.dsl import ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.common.images import build_component
from components.pipelines import cli
from components.pipelines.params import ParamError, convert_params, convert_value, declared_type
from tests.pipeline import fakes

ROOT = Path(__file__).resolve().parents[2]
URIS = [
    "--param",
    "production_uri=minio://mlpipeline/batches/{date}",
    "--param",
    "model_uri=minio://mlpipeline/models/v1",
    "--param",
    "baseline_uri=minio://mlpipeline/baseline/v1",
]


# ---- stand-ins that record what kfp.local handed them -------------------------------------------
def recording_train(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    profile: str = "local",
    model_name: str = "",
    epochs: float = 0.0,
    batch_size: int = 0,
    learning_rate: float = 0.0,
    max_steps: int = -1,
    seed: int = 0,
    allow_cpu: bool = False,
    augment: str = "",
    drift_uri: str = "",
    extra_training_uri: str = "",
):
    import json
    import os

    os.makedirs(model.path)
    got = {"epochs": epochs, "learning_rate": learning_rate, "max_steps": max_steps, "seed": seed}
    got["model_name"] = model_name
    got = {k: [v, type(v).__name__] for k, v in got.items()}
    open(os.path.join(model.path, "received.json"), "w").write(json.dumps(got))
    metrics.log_metric("accuracy", 0.5)


def recording_arize(
    prepared: Input[Dataset],
    summary: Output[Markdown],
    arize_model_name: str = "fashion-mnist-classifier",
    model_version: str = "",
    require_arize_credentials: bool = False,
    chunk_rows: int = 1000,
    ledger_uri: str = "",
    resend_uncertain: bool = False,
):
    import json

    got = {"require_arize_credentials": [require_arize_credentials, type(require_arize_credentials).__name__]}
    open(summary.path, "w").write(json.dumps(got))


@pytest.fixture
def recording_stages(with_fake_stages, monkeypatch):
    monkeypatch.setitem(
        fakes.FACTORIES, "train", lambda images: build_component(recording_train, "train", images)
    )
    monkeypatch.setitem(
        fakes.FACTORIES, "arize", lambda images: build_component(recording_arize, "arize", images)
    )


def _run_local(tmp_path: Path, *params: str) -> int:
    args = ["run", "--local", "--output-dir", str(tmp_path / "out")]
    for p in params:
        args += ["--param", p]
    return cli.main(args)


def _one_clear_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Exception" not in err
    return lines[0]


# ---- run --local: converted ---------------------------------------------------------------------
def test_run_local_converts_each_value_to_its_declared_type(recording_stages, tmp_path, capsys):
    rc = _run_local(
        tmp_path,
        "epochs=1",  # Integer text for a Float: 1.0 (kfp.local raised InconsistentTypeException)
        "learning_rate=0",
        "seed=2.0",  # a whole Float for an Integer: 2
        "max_steps=-1",
        "model_name=1.10",  # a String stays the text given, not the number 1.1
        "require_arize_credentials=TRUE",  # any case of true/false/1/0 for a Boolean
    )
    assert rc == 0, capsys.readouterr().err
    (received,) = (tmp_path / "out").glob("*/recording-train/model/received.json")
    assert json.loads(received.read_text()) == {
        "epochs": [1.0, "float"],
        "learning_rate": [0.0, "float"],
        "max_steps": [-1, "int"],
        "seed": [2, "int"],
        "model_name": ["1.10", "str"],
    }
    (summary,) = (tmp_path / "out").glob("*/recording-arize/summary")
    assert json.loads(summary.read_text()) == {"require_arize_credentials": [True, "bool"]}


@pytest.mark.parametrize(("given", "sent"), [("0", False), ("false", False), ("1", True), ("True", True)])
def test_run_local_reads_boolean_words_and_digits(recording_stages, tmp_path, given, sent):
    assert _run_local(tmp_path, f"require_arize_credentials={given}") == 0
    (summary,) = (tmp_path / "out").glob("*/recording-arize/summary")
    assert json.loads(summary.read_text())["require_arize_credentials"] == [sent, "bool"]


# ---- run --local: refused, nothing created --------------------------------------------------------
REFUSED = [
    # (param, what the one line must say)
    (
        "seed=abc",
        "--param seed=abc: seed takes an Integer (a whole number); abc is not a number; e.g. --param seed=0",
    ),
    ("seed=2.5", "--param seed=2.5: seed takes an Integer (a whole number); 2.5 has a fractional part"),
    ("batch_size=true", "batch_size takes an Integer (a whole number); true is a Boolean, not a number"),
    (
        "epochs=fast",
        "--param epochs=fast: epochs takes a Float (a number); fast is not a number; e.g. --param epochs=",
    ),
    (
        "degraded_share=NaN",
        "degraded_share takes a Float (a number); NaN is not a finite number; e.g. --param degraded_share=0.5",
    ),
    (
        "false_alarm_rate=Infinity",
        "false_alarm_rate takes a Float (a number); Infinity is not a finite number",
    ),
    (
        "num_shards=[2]",
        "--param num_shards=[2]: num_shards takes an Integer (a whole number); [2] is a List, not a number",
    ),
    (
        "require_arize_credentials=yes",
        "require_arize_credentials takes a Boolean (true, false, 1 or 0); yes is none of them; e.g. --param require_arize_credentials=false",
    ),
    (
        "require_arize_credentials=2",
        "require_arize_credentials takes a Boolean (true, false, 1 or 0); 2 is none of them",
    ),
    (
        "training_size=",
        "--param training_size=: training_size takes an Integer (a whole number);  is not a number; e.g. --param training_size=30000",
    ),
]


@pytest.mark.parametrize(("param", "says"), REFUSED, ids=[p for p, _ in REFUSED])
def test_run_local_refuses_a_wrong_type_in_one_line(with_fake_stages, tmp_path, capsys, param, says):
    assert _run_local(tmp_path, param) == 2
    line = _one_clear_line(capsys.readouterr().err)
    assert line.startswith("pipeline.py run: --param ")
    assert says in line
    assert not (tmp_path / "out").exists()  # refused before kfp.local created anything


def test_run_local_refuses_an_unknown_name_listing_the_known(with_fake_stages, tmp_path, capsys):
    assert _run_local(tmp_path, "epoch=1") == 2
    line = _one_clear_line(capsys.readouterr().err)
    assert "unknown parameter(s) epoch for fashion-drift-training; it takes: source, training_size" in line
    assert ", epochs," in line
    assert not (tmp_path / "out").exists()


def test_run_local_refuses_a_param_without_equals(with_fake_stages, tmp_path, capsys):
    assert _run_local(tmp_path, "seed") == 2
    assert "--param 'seed': expected name=value, e.g. --param num_shards=4" in _one_clear_line(
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ([], ["production_uri", "model_uri", "baseline_uri"]),
        (["production_uri=/data/batch", "model_uri="], ["model_uri", "baseline_uri"]),  # empty is missing
    ],
)
def test_monitoring_run_says_which_uris_are_missing(with_fake_stages, tmp_path, capsys, given, missing):
    args = ["run", "--local", "--pipeline", "monitoring", "--output-dir", str(tmp_path / "out")]
    for p in given:
        args += ["--param", p]
    assert cli.main(args) == 2
    line = _one_clear_line(capsys.readouterr().err)
    needs = " ".join(f"--param {n}=..." for n in missing)
    assert f"pipeline.py run: fashion-drift-monitoring needs {needs}; missing or empty: " in line
    assert "model_uri (a trained Model folder (the train stage's output) or a registered version)" in line
    if "production_uri" not in missing:
        assert "production_uri" not in line
    assert not (tmp_path / "out").exists()


def test_pipeline_py_refusal_has_no_traceback(tmp_path):
    """The real entry point and the real stages: one line, exit 2, nothing written."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), "run", "--local", "--output-dir", str(tmp_path / "o")]
        + ["--param", "epochs=1", "--param", "seed=abc"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "pipeline.py run: --param seed=abc: seed takes an Integer (a whole number); abc is not a number; "
        "e.g. --param seed=0\n"
    )
    assert not (tmp_path / "o").exists()


# ---- submit and schedule: what the server received -------------------------------------------------
def _sent(fake_kfp, path: str) -> dict:
    (call,) = fake_kfp.calls("POST", path)
    return call.body["runtime_config"]["parameters"]


def _typed(params: dict) -> dict:
    return {k: [v, type(v).__name__] for k, v in params.items()}


CONVERTED = ["epochs=1", "learning_rate=0", "seed=2.0", "model_name=1.10", "require_arize_credentials=1"]
RECEIVED = {
    "epochs": [1.0, "float"],
    "learning_rate": [0.0, "float"],
    "seed": [2, "int"],
    "model_name": ["1.10", "str"],
    "require_arize_credentials": [True, "bool"],
}


def _with_params(*params: str) -> list[str]:
    return [a for p in params for a in ("--param", p)]


def test_submit_sends_the_converted_values(with_fake_stages, fake_kfp):
    assert cli.main(["submit", "--host", fake_kfp.url, *_with_params(*CONVERTED)]) == 0
    assert _typed(_sent(fake_kfp, "/apis/v2beta1/runs")) == RECEIVED


def test_submit_upload_sends_the_converted_values(with_fake_stages, fake_kfp):
    assert cli.main(["submit", "--host", fake_kfp.url, "--upload", *_with_params(*CONVERTED)]) == 0
    assert _typed(_sent(fake_kfp, "/apis/v2beta1/runs")) == RECEIVED


@pytest.mark.parametrize("param", ["seed=abc", "epochs=1.5x", "require_arize_credentials=maybe", "seed=0.5"])
@pytest.mark.parametrize("upload", [False, True])
def test_submit_sends_nothing_for_a_wrong_type(with_fake_stages, fake_kfp, capsys, param, upload):
    args = ["submit", "--host", fake_kfp.url, "--param", param] + (["--upload"] if upload else [])
    assert cli.main(args) == 2
    line = _one_clear_line(capsys.readouterr().err)
    assert line.startswith(f"pipeline.py submit: --param {param}: {param.split('=')[0]} takes ")
    assert "; e.g. --param " in line
    assert not fake_kfp.requests  # not even the health check


def test_submit_monitoring_without_its_uris_sends_nothing(with_fake_stages, fake_kfp, capsys):
    assert (
        cli.main(["submit", "--host", fake_kfp.url, "--pipeline", "monitoring", "--param", "model_uri=m"])
        == 2
    )
    line = _one_clear_line(capsys.readouterr().err)
    assert "fashion-drift-monitoring needs --param production_uri=... --param baseline_uri=...;" in line
    assert not fake_kfp.requests


def test_schedule_sends_the_converted_values(with_fake_stages, fake_kfp):
    args = ["schedule", "--host", fake_kfp.url, "--cron", "0 0 6 * * *", *URIS]
    args += _with_params("num_shards=2.0", "false_alarm_rate=0.05", "drift_resamples=500", "model_version=2")
    args += _with_params("require_arize_credentials=false", "batch_date=2026-11-28")
    assert cli.main(args) == 0
    sent = _typed(_sent(fake_kfp, "/apis/v2beta1/recurringruns"))
    assert sent == {
        "production_uri": ["minio://mlpipeline/batches/{date}", "str"],
        "model_uri": ["minio://mlpipeline/models/v1", "str"],
        "baseline_uri": ["minio://mlpipeline/baseline/v1", "str"],
        "num_shards": [2, "int"],
        "false_alarm_rate": [0.05, "float"],
        "drift_resamples": [500, "int"],
        "model_version": ["2", "str"],  # a String: the text, not the number 2
        "require_arize_credentials": [False, "bool"],
        "batch_date": ["2026-11-28", "str"],
        "kfp_ui_host": [fake_kfp.url, "str"],
    }


@pytest.mark.parametrize(
    ("params", "says"),
    [
        (
            ["drift_resamples=1e2.5"],
            "drift_resamples takes an Integer (a whole number); 1e2.5 is not a number",
        ),
        (["num_shards=1.5"], "num_shards takes an Integer (a whole number); 1.5 has a fractional part"),
        (["epochs=1"], "unknown parameter(s) epochs for fashion-drift-monitoring; it takes: production_uri,"),
    ],
)
def test_schedule_sends_nothing_for_a_wrong_value(with_fake_stages, fake_kfp, capsys, params, says):
    args = ["schedule", "--host", fake_kfp.url, "--cron", "0 0 6 * * *", *URIS, *_with_params(*params)]
    assert cli.main(args) == 2
    assert says in _one_clear_line(capsys.readouterr().err)
    assert not fake_kfp.requests


def test_schedule_without_the_uris_says_which_and_sends_nothing(with_fake_stages, fake_kfp, capsys):
    assert cli.main(["schedule", "--host", fake_kfp.url, "--cron", "0 0 6 * * *"]) == 2
    line = _one_clear_line(capsys.readouterr().err)
    assert line.startswith(
        "pipeline.py schedule: fashion-drift-monitoring needs --param production_uri=... --param model_uri=... "
        "--param baseline_uri=...; missing or empty: production_uri (the production batch in any form the "
        "ingest stage reads), "
    )
    assert not fake_kfp.requests


def test_pipeline_py_submit_sends_converted_values_from_the_real_pipeline(fake_kfp, tmp_path):
    """The real entry point compiles the real training pipeline and sends the converted values."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "pipeline.py"),
            "submit",
            "--host",
            fake_kfp.url,
            *_with_params(*CONVERTED),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert _typed(_sent(fake_kfp, "/apis/v2beta1/runs")) == RECEIVED


# ---- the conversion itself -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("type_name", "canonical"),
    [
        ("String", "String"),
        ("Integer", "Integer"),
        ("Float", "Float"),
        ("NUMBER_DOUBLE", "Float"),
        ("NUMBER_INTEGER", "Integer"),
        ("Boolean", "Boolean"),
        ("List", "List"),
        ("Dict", "Dict"),
        ("STRUCT", "Dict"),
        ("Dataset", None),
        (None, None),
    ],
)
def test_declared_type_names(type_name, canonical):
    assert declared_type(type_name) == canonical


@pytest.mark.parametrize(
    ("value", "type_name", "expected"),
    [
        ("1", "Float", 1.0),
        (1, "NUMBER_DOUBLE", 1.0),
        ("1e3", "Integer", 1000),
        (" 7 ", "Integer", 7),
        (3.0, "Integer", 3),
        ("-0.25", "Float", -0.25),
        ("False", "Boolean", False),
        (1, "Boolean", True),
        ('"quoted text"', "String", "quoted text"),
        ("true", "String", "true"),
        ("[1, 2]", "List", [1, 2]),
        ('{"a": 1}', "Dict", {"a": 1}),
        ({"a": 1}, "Dict", {"a": 1}),
        ("anything", "Dataset", "anything"),  # not a parameter type: passed on
    ],
)
def test_convert_value(value, type_name, expected):
    got = convert_value("p", value, type_name)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("value", "type_name", "says"),
    [
        (True, "Integer", "p=true: p takes an Integer (a whole number); true is a Boolean, not a number"),
        (12, "String", "p=12: p takes a String (text); 12 is an Integer; e.g. --param p=some-text"),
        (
            "[1",
            "List",
            'p=[1: p takes a List (a JSON list); [1 is not a JSON list; e.g. --param p=["a", "b"]',
        ),
        ("[1]", "Dict", "p=[1]: p takes a Dict (a JSON object); [1] is a List"),
        (math.inf, "Float", "p=Infinity: p takes a Float (a number); Infinity is not a finite number"),
        (1.0, "Boolean", "p=1.0: p takes a Boolean (true, false, 1 or 0); 1.0 is none of them"),
    ],
)
def test_convert_value_refuses(value, type_name, says):
    with pytest.raises(ParamError) as caught:
        convert_value("p", value, type_name)
    assert str(caught.value).startswith(f"--param {says}")


def test_convert_params_keeps_typed_values_and_leaves_the_input_alone(with_fake_stages):
    from components.pipelines.definitions import BUILDERS

    given = {"epochs": 2, "seed": "4", "profile": "cluster"}
    assert convert_params(BUILDERS["training"](), given) == {"epochs": 2.0, "seed": 4, "profile": "cluster"}
    assert given == {"epochs": 2, "seed": "4", "profile": "cluster"}
