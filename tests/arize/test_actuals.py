"""Late labels: actuals sent to the loopback Arize server (decoded from what the real SDK posts), the
drift history's accuracy updated for exactly the windows the labels belong to, nothing sent twice."""

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.arize import actuals as act
from components.arize.__main__ import actuals_parser, main
from components.arize.actuals_config import ActualsConfig
from components.arize.component import ACTUALS_ARTIFACTS, ACTUALS_CONFIG, component_actuals, log_actuals
from components.arize.log import ArizeSendError, CredentialsError
from components.common import history as hist
from components.common import schema
from components.common.config import component_fields, default_of, help_of, signature_mismatches
from components.common.schema import PreparedColumns as P

MODEL = "fm-actuals"


@pytest.fixture
def production(prepared_dir) -> pd.DataFrame:
    """The prepared production rows: id, time, predicted label; with each row's hourly window start."""
    df = pq.read_table(prepared_dir / "production.parquet", columns=list(act.PREDICTION_COLUMNS)).to_pandas()
    df["hour"] = df[P.PREDICTION_TS].dt.floor("h")
    return df


@pytest.fixture
def history_uri(tmp_path, production) -> str:
    """A drift history of hourly windows: one before the production rows (no label will fall there), then
    one per hour holding production rows; every accuracy 0.25 (the drift stage's, say)."""
    hours = sorted(production["hour"].unique())
    starts = [hours[0] - pd.Timedelta(hours=1), *hours]
    table = pd.DataFrame(
        {
            "window_start": starts,
            "window_end": [s + pd.Timedelta(hours=1) for s in starts],
            "n_rows": [0] + [int((production["hour"] == h).sum()) for h in hours],
            "accuracy": 0.25,
            "status": "ok",
            "flagged": False,
            "fired": "",
            "window": "hourly",
        }
    )
    uri = str(tmp_path / "history" / "drift_history.parquet")
    hist.update_history(uri, table, datetime(2024, 3, 1, tzinfo=UTC), "v-test")
    return uri


def _other(label: str) -> str:
    return schema.CLASS_NAMES[(schema.CLASS_NAMES.index(label) + 1) % schema.NUM_CLASSES]


def _config(tmp_path, labels: Path, prepared: Path, history_uri: str = "", **kw) -> ActualsConfig:
    return ActualsConfig(
        labels_uri=str(labels),
        prepared_uri=str(prepared),
        history_uri=history_uri,
        arize_model_name=MODEL,
        actuals_ledger_uri=str(tmp_path / "ledger" / "actuals.parquet"),
        backoff_s=0.0,
        timeout_s=5.0,
        **kw,
    )


def _run(tmp_path, config: ActualsConfig, name: str = "run"):
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    result = act.log_actuals(out / "summary.md", out / "rejected.parquet", config)
    return result, (out / "summary.md").read_text(), pd.read_parquet(out / "rejected.parquet")


def _sent(fake) -> list[tuple[str, str]]:
    return [
        (pid, label)
        for r in fake.received
        for pid, label in zip(
            r.table.column(P.PREDICTION_ID).to_pylist(),
            r.table.column(P.ACTUAL_LABEL).to_pylist(),
            strict=True,
        )
    ]


def test_late_labels_are_sent_as_actuals_and_update_exactly_their_windows(
    tmp_path, prepared_dir, production, history_uri, fake_arize, credentials
):
    first_hour = production["hour"].min()
    in_first = production[production["hour"] == first_hour]
    assert len(in_first) >= 2  # 9 rows 5 minutes apart: at least 2 share an hour
    ids, preds = in_first[P.PREDICTION_ID].tolist(), in_first[P.PREDICTION_LABEL].tolist()
    # the first right (by name), the others wrong (by index, as digits)
    given = [preds[0]] + [str(schema.CLASS_NAMES.index(_other(p))) for p in preds[1:]]
    rows = [(i, g) for i, g in zip(ids, given, strict=True)]
    rows += [
        ("no-such-prediction", "Dress"),  # unknown id
        (ids[0], given[0]),  # a duplicate of the first row
        (ids[1], "Jacket"),  # not a class
        ("", "Bag"),  # no id
        (ids[-1], ""),  # no label (its other row is still taken)
    ]
    labels = tmp_path / "labels.csv"
    labels.write_text("prediction_id,actual_label\n" + "".join(f"{i},{g}\n" for i, g in rows))

    result, summary, rejected = _run(tmp_path, _config(tmp_path, labels, prepared_dir, history_uri))

    # exactly the known ids, as delayed actuals: two columns, production, no prediction sent
    assert len(fake_arize.received) == 1
    got = fake_arize.received[0]
    # (the SDK drops extraneous columns through a set: their order varies with the hash seed)
    assert sorted(got.table.column_names) == sorted([P.PREDICTION_ID, P.ACTUAL_LABEL])
    assert got.environment == "production" and got.model_id == MODEL and got.model_version == "v-test"
    assert got.path == "/v1/pandas_arrow" and got.headers["number-of-rows"] == str(len(ids))
    expected_labels = [preds[0]] + [_other(p) for p in preds[1:]]
    assert _sent(fake_arize) == list(zip(ids, expected_labels, strict=True))

    assert result.rows_read == len(rows) and result.accepted == len(ids) and result.rows_sent == len(ids)
    assert result.unknown == 1 and result.duplicates == 1
    assert dict(result.rejected) == {
        act.UNKNOWN_ID: 1,
        act.DUPLICATE: 1,
        act.NOT_A_CLASS: 1,
        act.NO_ID: 1,
        act.NO_LABEL: 1,
    }
    assert sorted(rejected["reason"]) == sorted(result.rejected.elements())
    assert rejected.loc[rejected["reason"] == act.UNKNOWN_ID, P.PREDICTION_ID].tolist() == [
        "no-such-prediction"
    ]
    assert rejected.loc[rejected["reason"] == act.NOT_A_CLASS, P.ACTUAL_LABEL].tolist() == ["Jacket"]
    assert f"# Arize actuals: {len(ids)} sent" in summary and "unknown_prediction_id" in summary

    # the history: the first hour's window gets 1 correct of len(ids); every other window is unchanged
    table = pd.read_parquet(history_uri)
    first = table["window_start"] == first_hour
    assert table.loc[first, hist.LABELLED_ROWS].tolist() == [len(ids)]
    assert table.loc[first, hist.CORRECT_ROWS].tolist() == [1]
    assert table.loc[first, "accuracy"].tolist() == pytest.approx([1 / len(ids)])
    assert (table.loc[~first, hist.LABELLED_ROWS] == 0).all()
    assert (table.loc[~first, "accuracy"] == 0.25).all()
    assert [w.window_start for w in result.history.changed] == [first_hour]
    assert "1 window(s) updated" in summary

    # a rerun of the same file sends nothing and changes nothing
    before = Path(history_uri).read_bytes()
    again, summary2, rejected2 = _run(tmp_path, _config(tmp_path, labels, prepared_dir, history_uri), "again")
    assert len(fake_arize.received) == 1 and again.rows_sent == 0 and again.accepted == 0
    assert again.rejected[act.ALREADY] == len(ids) and again.history.changed == []
    assert Path(history_uri).read_bytes() == before
    assert "0 window(s) updated" in summary2

    # a later file (JSON Lines, index labels) with one more id: only it is sent, only its window changes
    later = production[production["hour"] != first_hour].iloc[0]
    more = tmp_path / "more.jsonl"
    more.write_text(
        json.dumps(
            {
                "prediction_id": later[P.PREDICTION_ID],
                "actual_label": schema.CLASS_NAMES.index(later[P.PREDICTION_LABEL]),
            }
        )
        + "\nnot json\n"
        + json.dumps({"prediction_id": ids[0], "actual_label": _other(preds[0])})  # relabelled: kept aside
        + "\n"
    )
    third, _, rejected3 = _run(tmp_path, _config(tmp_path, more, prepared_dir, history_uri), "third")
    assert (
        _sent(fake_arize)[-1] == (later[P.PREDICTION_ID], later[P.PREDICTION_LABEL]) and third.rows_sent == 1
    )
    assert dict(third.rejected) == {act.UNREADABLE: 1, act.RELABELLED: 1}
    assert [w.window_start for w in third.history.changed] == [later["hour"]]
    table = pd.read_parquet(history_uri)
    row = table[table["window_start"] == later["hour"]].iloc[0]
    assert (row[hist.LABELLED_ROWS], row[hist.CORRECT_ROWS], row["accuracy"]) == (1, 1, 1.0)
    assert len(fake_arize.prediction_ids()) == len(set(fake_arize.prediction_ids()))  # nothing twice


def test_without_credentials_labels_are_recorded_and_sent_by_a_later_run(
    tmp_path, prepared_dir, production, history_uri, fake_arize, no_credentials, monkeypatch
):
    rows = production.iloc[:3]
    labels = tmp_path / "labels.parquet"
    pd.DataFrame(
        {P.PREDICTION_ID: rows[P.PREDICTION_ID], P.ACTUAL_LABEL: rows[P.PREDICTION_LABEL]}
    ).to_parquet(labels)
    config = _config(tmp_path, labels, prepared_dir, history_uri)
    first, summary, _ = _run(tmp_path, config)
    assert not first.sent and first.pending == 3 and fake_arize.requests == 0
    assert "NOTHING SENT" in summary
    assert pd.read_parquet(history_uri)[hist.LABELLED_ROWS].sum() == 3  # the history needs no Arize
    with pytest.raises(CredentialsError, match="require_arize_credentials"):
        _run(tmp_path, dataclasses.replace(config, require_arize_credentials=True), "strict")

    monkeypatch.setenv("ARIZE_API_KEY", "k-123")
    monkeypatch.setenv("ARIZE_SPACE_ID", "s-456")
    second, _, _ = _run(tmp_path, config, "later")
    assert second.rows_sent == 3 and second.pending == 0 and second.rejected[act.ALREADY] == 3
    assert sorted(_sent(fake_arize)) == sorted(
        zip(rows[P.PREDICTION_ID], rows[P.PREDICTION_LABEL], strict=True)
    )
    third, _, _ = _run(tmp_path, config, "third")
    assert third.rows_sent == 0 and fake_arize.requests == 1


def test_a_lost_answer_leaves_the_chunk_in_flight_and_it_is_never_resent_blindly(
    tmp_path, prepared_dir, production, fake_arize, credentials
):
    rows = production.iloc[:5]
    labels = tmp_path / "labels.csv"
    rows[[P.PREDICTION_ID, P.PREDICTION_LABEL]].rename(columns={P.PREDICTION_LABEL: P.ACTUAL_LABEL}).to_csv(
        labels, index=False
    )
    config = _config(tmp_path, labels, prepared_dir, actuals_chunk_rows=2)
    fake_arize.drop = {2}  # the second chunk is stored, its answer lost
    with pytest.raises(ArizeSendError, match="got no answer"):
        _run(tmp_path, config)
    assert len(fake_arize.received) == 2
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "STOPPED PART-WAY" in summary

    again, summary, _ = _run(tmp_path, config, "again")  # sends the third chunk, not the uncertain one
    assert again.rows_sent == 1 and len(again.uncertain) == 1 and "UNCERTAIN" in summary
    assert len(fake_arize.prediction_ids()) == 5 == len(set(fake_arize.prediction_ids()))

    forced, _, _ = _run(tmp_path, dataclasses.replace(config, resend_uncertain=True), "forced")
    assert forced.rows_sent == 2 and forced.uncertain == []
    assert len(fake_arize.prediction_ids()) == 7  # the two uncertain labels, sent again on purpose


def test_a_refused_chunk_stays_pending_and_a_rerun_sends_it(
    tmp_path, prepared_dir, production, fake_arize, credentials
):
    labels = tmp_path / "labels.csv"
    labels.write_text(f"prediction_id,actual_label\n{production[P.PREDICTION_ID].iloc[0]},Bag\n")
    config = _config(tmp_path, labels, prepared_dir)
    fake_arize.fail_with = [400]
    with pytest.raises(ArizeSendError, match="stays pending"):
        _run(tmp_path, config)
    assert fake_arize.received == []
    again, _, _ = _run(tmp_path, config, "again")
    assert again.rows_sent == 1 and again.rejected[act.ALREADY] == 1
    assert _sent(fake_arize) == [(production[P.PREDICTION_ID].iloc[0], "Bag")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Dress", ("Dress", "")),
        (" ankle BOOT ", ("Ankle boot", "")),
        (3, ("Dress", "")),
        ("9", ("Ankle boot", "")),
        (2.0, ("Pullover", "")),
        (10, (None, act.NOT_A_CLASS)),
        (-1, (None, act.NOT_A_CLASS)),
        ("Jacket", (None, act.NOT_A_CLASS)),
        (True, (None, act.NOT_A_CLASS)),
        (2.5, (None, act.NOT_A_CLASS)),
        ("", (None, act.NO_LABEL)),
        (None, (None, act.NO_LABEL)),
        (float("nan"), (None, act.NO_LABEL)),
    ],
)
def test_a_label_is_a_class_name_or_index(value, expected):
    assert act.class_name(value) == expected


def test_files_and_folders_that_cannot_be_read_fail_clearly(tmp_path, prepared_dir):
    txt = tmp_path / "labels.txt"
    txt.write_text("x")
    with pytest.raises(ValueError, match=r"unknown format \.txt"):
        act.read_labels(str(txt))
    bad = tmp_path / "labels.csv"
    bad.write_text("id,label\n1,2\n")
    with pytest.raises(ValueError, match="missing column.*prediction_id, actual_label"):
        act.read_labels(str(bad))
    with pytest.raises(FileNotFoundError):
        act.read_labels(str(tmp_path / "absent.csv"))
    with pytest.raises(ValueError, match="no production.parquet found"):
        act.production_tables([str(tmp_path / "empty")])
    # a prefix holding prepared folders: each production.parquet under it is found
    assert act.production_tables([str(prepared_dir.parent)]) == [str(prepared_dir / "production.parquet")]
    with pytest.raises(ValueError, match="labels_uri is empty"):
        ActualsConfig(labels_uri=" ", prepared_uri="p")
    with pytest.raises(ValueError, match="history_uri=.*http"):
        ActualsConfig(labels_uri="l.csv", prepared_uri="p", history_uri="http://x/h.parquet")


def test_the_command_line_runs_actuals_and_reports_errors_in_one_line(
    tmp_path, prepared_dir, production, no_credentials, capsys
):
    labels = tmp_path / "labels.csv"
    labels.write_text(f"prediction_id,actual_label\n{production[P.PREDICTION_ID].iloc[0]},0\n")
    common = ["actuals", "--summary", str(tmp_path / "s.md"), "--rejected", str(tmp_path / "r.parquet")]
    ok = main([*common, "--labels-uri", str(labels), "--prepared-uri", str(prepared_dir)])
    assert ok == 0 and "NOTHING SENT" in (tmp_path / "s.md").read_text()
    bad = main([*common, "--labels-uri", str(tmp_path / "none.csv"), "--prepared-uri", str(prepared_dir)])
    assert bad == 2 and "arize actuals: error:" in capsys.readouterr().err


# ---- one Config for the entry point: component, command line and KFP help agree with it ------------
def test_the_actuals_component_command_line_and_help_agree_with_the_config():
    assert signature_mismatches(log_actuals, ACTUALS_CONFIG, ACTUALS_ARTIFACTS) == []
    actions = {a.dest: a for a in actuals_parser()._actions}
    for f in dataclasses.fields(ActualsConfig):
        assert f.name in actions, f.name
        assert actions[f.name].default == default_of(f) or default_of(f) is dataclasses.MISSING, f.name
        assert help_of(f) in (actions[f.name].help or ""), f.name
    spec = component_actuals().component_spec
    for f in component_fields(ActualsConfig):
        assert spec.inputs[f.name].description == help_of(f), f.name
    for name in ACTUALS_ARTIFACTS:
        assert spec.outputs[name].description, name


def test_the_actuals_pipeline_takes_the_config_names_and_defaults(tmp_path):
    from components.pipelines.actuals import PIPELINE_NAME, build_actuals_pipeline, compile_actuals_pipeline

    func = build_actuals_pipeline()
    inputs = func.component_spec.inputs
    assert set(inputs) == {f.name for f in component_fields(ActualsConfig)}
    for f in component_fields(ActualsConfig):
        if default_of(f) is not dataclasses.MISSING:
            assert inputs[f.name].default == default_of(f), f.name
        assert inputs[f.name].description == help_of(f), f.name
    path = compile_actuals_pipeline(tmp_path)
    text = path.read_text()
    assert path.name == "actuals.yaml" and PIPELINE_NAME in text and "arize-credentials" in text


# ---- the history's late-label columns survive a drift run -------------------------------------------
def test_a_drift_run_keeps_the_late_label_counts_of_the_windows_it_computes_again(tmp_path, history_uri):
    stored = pd.read_parquet(history_uri)
    ts = stored["window_start"].iloc[1] + pd.Timedelta(minutes=1)
    labels = pd.DataFrame({hist.LABEL_TS: [ts, ts], hist.LABEL_CORRECT: [True, False]})
    update = hist.update_accuracy(history_uri, labels)
    assert update is not None and len(update.changed) == 1 and update.outside == 0
    assert hist.update_accuracy(history_uri, labels).changed == []  # idempotent
    # the drift stage records the same window again, and a new one
    run = stored.drop(columns=list(hist.RUN_COLUMNS)).iloc[[1]].copy()
    new = run.copy()
    new["window_start"] += pd.Timedelta(hours=5)
    new["window_end"] += pd.Timedelta(hours=5)
    merged = hist.update_history(history_uri, pd.concat([run, new]), datetime.now(UTC)).table
    again = merged[merged["window_start"] == stored["window_start"].iloc[1]].iloc[0]
    assert (again[hist.LABELLED_ROWS], again[hist.CORRECT_ROWS], again["accuracy"]) == (2, 1, 0.5)
    assert merged[merged["window_start"] == new["window_start"].iloc[0]][hist.LABELLED_ROWS].tolist() == [0]
    assert np.isclose(merged.loc[merged[hist.LABELLED_ROWS] == 0, "accuracy"], 0.25).all()
    assert hist.update_accuracy(str(tmp_path / "none.parquet"), labels) is None


# ---- through kfp.local --------------------------------------------------------------------------------
def test_the_actuals_pipeline_runs_through_kfp_local(
    tmp_path, monkeypatch, prepared_dir, production, history_uri, fake_arize, credentials
):
    from components.pipelines.actuals import run_actuals_local
    from tests.fixtures import prepare_inputs

    monkeypatch.setenv("PYTHONPATH", prepare_inputs.pythonpath())
    rows = production.iloc[:4]
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "prediction_id,actual_label\n"
        + "".join(f"{i},{p}\n" for i, p in zip(rows[P.PREDICTION_ID], rows[P.PREDICTION_LABEL], strict=True))
        + "unknown-id,Bag\n"
    )
    params = dict(
        labels_uri=str(labels),
        prepared_uri=str(prepared_dir),
        history_uri=history_uri,
        arize_model_name=MODEL,
        actuals_ledger_uri=str(tmp_path / "ledger.parquet"),
    )
    summary = run_actuals_local(tmp_path / "root", params).read_text()
    assert "# Arize actuals: 4 sent" in summary and "unknown_prediction_id" in summary
    assert sorted(_sent(fake_arize)) == sorted(
        zip(rows[P.PREDICTION_ID], rows[P.PREDICTION_LABEL], strict=True)
    )
    assert pd.read_parquet(history_uri)[hist.LABELLED_ROWS].sum() == 4
    assert "test-key" not in summary
