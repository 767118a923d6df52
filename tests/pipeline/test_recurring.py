"""Scheduled monitoring, day after day: the monitoring pipeline under kfp.local over 5 dated batches.

One small data-stage build of real Fashion-MNIST whose production spans 2026-11-24 .. 2026-11-28,
every row of 2026-11-26 degraded, is cut into one batch folder per day (``batches/<date>/``, a
DatasetDict with a production split, as a daily export would write it), except the degraded day,
which arrives as production data does: a folder of PNG files with a ``manifest.csv`` (image path,
timestamp, label, prediction id) and one row whose image is missing. A briefly trained model and a
baseline prepared folder come from the stage functions in-process. Then the monitoring pipeline
runs once per day with ``production_uri=<root>/batches/{date}`` and ``batch_date=<day>`` (ingest
detects each folder's kind), all runs sharing one drift history, and a loopback HTTP server as the
drift webhook (``DRIFT_WEBHOOK_URL`` in the environment, which kfp.local's task subprocesses inherit).

Checked: each run adds its batch's window to the history; a repeated run of a day replaces it; only
the degraded day (read from image files) raises the alert; its missing image is kept aside in the
run's ``rejected`` output; the webhook receives exactly one message, naming that day.
"""

from __future__ import annotations

import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from components.common import schema
from components.pipelines.definitions import MONITORING
from components.pipelines.local import run_local

DAYS = ("2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28")
DEGRADED_DAY = "2026-11-26"
IMAGES_DAY = DEGRADED_DAY  # this day's batch is a folder of image files with a CSV manifest
ROWS_PER_DAY = 150  # enough for every detector to fire on the degraded day, clean days far from it
# The pipeline's small settings: one embed shard, the quick projection, few resamples for 1 in 100.
PARAMS = {
    "num_shards": 1,
    "embed_batch_size": 64,
    "projection": "pca",
    "false_alarm_rate": 0.01,
    "drift_resamples": 500,
    "drift_window": "daily",
    "seed": 0,
}


@pytest.fixture(scope="module")
def inputs(fashion_dir, tmp_path_factory) -> dict[str, Path]:
    """The dated batches, a model and a baseline prepared folder, built with the stage functions."""
    import datasets
    import pyarrow.compute as pc
    import torch

    from components.data.build import build_dataset
    from components.data.config import DataConfig
    from components.embed.config import EmbedConfig
    from components.embed.embed import embed_dataset
    from components.prepare.config import PrepareConfig
    from components.prepare.prepare import prepare_records
    from components.train.config import TrainConfig
    from components.train.train import train_model

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("recurring")
    build_dataset(
        DataConfig(
            source=str(fashion_dir),
            training_size=300,
            validation_size=200,
            production_size=ROWS_PER_DAY * len(DAYS),
            production_days=len(DAYS),
            production_end="2026-11-29T00:00:00Z",
            window_days=1,
            window_start_day=DAYS.index(DEGRADED_DAY),
            degraded_share=1.0,
            seed=3,
        ),
        root / "data",
        quiet=True,
    )
    train_model(root / "data", root / "model", TrainConfig(max_steps=3, batch_size=32, threads=1))
    embed_dataset(
        root / "data",
        root / "model",
        root / "embeddings",
        EmbedConfig(splits=f"{schema.TRAINING},{schema.VALIDATION}", threads=1),
        progress=False,
    )
    prepare_records(
        [root / "embeddings"],
        root / "data",
        root / "baseline",
        PrepareConfig(now="2026-11-23T00:00:00Z"),
        progress=False,
    )
    production = datasets.load_from_disk(str(root / "data"))[schema.PRODUCTION]
    days = pc.strftime(
        production.data.column(schema.DatasetColumns.PREDICTION_TS), format="%Y-%m-%d"
    ).to_pylist()
    for day in DAYS:
        rows = production.select([i for i, d in enumerate(days) if d == day])
        assert len(rows) == ROWS_PER_DAY
        degraded = set(rows[schema.DatasetColumns.DEGRADATION]) != {schema.DEGRADATION_NONE}
        assert degraded == (day == DEGRADED_DAY)
        if day == IMAGES_DAY:
            _write_images_batch(rows, root / "batches" / day)
        else:
            datasets.DatasetDict({schema.PRODUCTION: rows}).save_to_disk(str(root / "batches" / day))
    return {"root": root, "model": root / "model", "baseline": root / "baseline"}


def _write_images_batch(rows, folder: Path) -> None:
    """``rows`` as production data arrives: PNG files and a manifest.csv, plus one row whose image is missing."""
    import datasets

    C = schema.DatasetColumns
    raw = rows.cast_column(C.IMAGE, datasets.Image(decode=False))
    (folder / "images").mkdir(parents=True)
    records = []
    for i, row in enumerate(raw):
        name = f"images/{i:04d}.png"
        (folder / name).write_bytes(row[C.IMAGE]["bytes"])
        records.append(
            {
                "image_uri": name,
                "timestamp": row[C.PREDICTION_TS].isoformat(),
                "label": schema.CLASS_NAMES[row[C.LABEL]],
                "prediction_id": f"{IMAGES_DAY}-{i:04d}",
            }
        )
    records.append({**records[0], "image_uri": "images/gone.png", "prediction_id": f"{IMAGES_DAY}-gone"})
    pd.DataFrame(records).to_csv(folder / "manifest.csv", index=False)


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append({"path": self.path, "json": json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def webhook(monkeypatch):
    """A loopback webhook recording every message; DRIFT_WEBHOOK_URL points at it."""
    handler = type("Webhook", (_Webhook,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DRIFT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_address[1]}/hooks/drift")
    yield handler.received
    server.shutdown()
    server.server_close()


def _run(inputs, out_dir: Path, day: str, history: Path) -> tuple[dict[str, str], str]:
    params = {
        "production_uri": str(inputs["root"] / "batches" / "{date}"),
        "model_uri": str(inputs["model"]),
        "baseline_uri": str(inputs["baseline"]),
        "batch_date": day,
        "history_uri": str(history),
        "kfp_ui_host": "https://kfp.example.com",
        **PARAMS,
    }
    out, err = io.StringIO(), io.StringIO()
    try:
        paths = run_local(out_dir, params, which=MONITORING, out=out, err=err)
    except Exception as exc:
        raise AssertionError(f"{day}: {exc}\n{out.getvalue()}\n{err.getvalue()[-5000:]}") from exc
    return paths, out.getvalue()


def _windows(history: Path) -> list[str]:
    table = pd.read_parquet(history)
    return [f"{ts:%Y-%m-%d}" for ts in pd.to_datetime(table["window_start"], utc=True)]


@pytest.mark.slow
def test_five_daily_runs_one_alert_one_message(inputs, webhook, tmp_path):
    history = tmp_path / "history.parquet"
    alerts = {}
    for n, day in enumerate(DAYS, start=1):
        paths, out = _run(inputs, tmp_path / f"run-{day}", day, history)
        assert re.search(rf"^resolve-batch .*  {day}: \S+/batches/{day}$", out, re.M), out  # that day's batch
        if day == IMAGES_DAY:  # image files through the manifest; the missing one kept aside
            assert re.search(rf"^ingest .*  {ROWS_PER_DAY} rows \(manifest\), 1 kept aside$", out, re.M), out
            rejected = pd.read_parquet(paths["rejected"])
            assert rejected["reason"].tolist() == ["missing"] and "gone.png" in rejected["location"][0]
        else:  # a data-stage folder, copied unchanged
            assert re.search(rf"^ingest .*  {ROWS_PER_DAY} rows \(dataset\), 0 kept aside$", out, re.M), out
        alerts[day] = paths["alert"]
        # The history grows by this batch's one daily window, on the batch's date.
        assert _windows(history) == list(DAYS[:n]), out
        table = pd.read_parquet(paths["drift_table"])
        assert [f"{ts:%Y-%m-%d}" for ts in pd.to_datetime(table["window_start"], utc=True)] == [day]
    assert alerts == {day: day == DEGRADED_DAY for day in DAYS}

    # A repeated run of a (clean) day replaces its window: nothing duplicated, nothing sent.
    before = pd.read_parquet(history)
    paths, _ = _run(inputs, tmp_path / "rerun", DAYS[1], history)
    assert paths["alert"] is False
    after = pd.read_parquet(history)
    assert _windows(history) == list(DAYS) and len(after) == len(before)
    recorded = pd.to_datetime(after["recorded_at"], utc=True)
    previously = pd.to_datetime(before["recorded_at"], utc=True)
    changed = [
        f"{ts:%Y-%m-%d}"
        for ts, r0, r1 in zip(after["window_start"], previously, recorded, strict=True)
        if r1 != r0
    ]
    assert changed == [DAYS[1]]

    # Exactly one message reached the webhook, naming the degraded day and the run's link.
    assert len(webhook) == 1, webhook
    assert webhook[0]["path"] == "/hooks/drift"
    text = webhook[0]["json"]["text"]
    assert re.findall(r"^• (\d{4}-\d{2}-\d{2}):", text, re.M) == [DEGRADED_DAY], text
    assert "https://kfp.example.com" in text
