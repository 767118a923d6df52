"""Late labels: log actuals to Arize for predictions already sent, and update the drift history's accuracy.

Labels come days after the predictions. :func:`log_actuals` takes a file of ``prediction_id,
actual_label`` rows and runs these steps:

1. :func:`read_labels`: the file (CSV, JSON Lines or Parquet; local, ``gs://``, ``s3://``,
   ``minio://``), each label read as a class name or index (:func:`class_name`); rows without an ID
   or a label, labels that are no class, unreadable lines, duplicates and conflicting labels of one
   ID are kept aside with their reason (:data:`REASONS`);
2. :func:`read_predictions`: every ``production.parquet`` under ``prepared_uri`` gives, for the IDs
   the file names, when the prediction was made and what was predicted; labels of IDs found in none
   are kept aside (``unknown_prediction_id``), never sent;
3. the :class:`ActualsLedger` (one Parquet file) holds every late label accepted and whether Arize
   has it (``pending``, ``in_flight``, ``sent``): a label already there is not taken again
   (``already_recorded``; a different label for it: ``relabelled``, kept aside);
4. every chunk to send through the SDK's own validation (:func:`validate_actuals`); then the new
   labels are recorded in the ledger (``pending``);
5. the drift history (``history_uri``): every window's late-label counts and accuracy recomputed from
   all the labels of the ledger (``components.common.history.update_accuracy``), written back atomically;
6. with credentials, :func:`send_pending`: the pending labels, chunk after chunk, with the SDK's
   delayed-actuals call (:func:`send_actuals_chunk`: ``client.ml.log`` with a ``Schema`` of
   ``prediction_id`` and ``actual_label`` only, environment production). Each chunk is marked
   ``in_flight`` in the ledger *before* it is sent and ``sent`` after Arize's answer, so a rerun never
   sends a label twice; a chunk left in flight (killed, no answer) is reported as uncertain and sent
   again only with ``resend_uncertain``. Retries and their classification are the arize stage's
   (:mod:`components.arize.log`).

Without credentials the labels are recorded and the history updated; nothing is sent and the summary
says so (a later run with credentials sends the pending labels). See ``components/arize/README.md``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.arize.actuals_config import ActualsConfig
from components.arize.log import (
    ENV_API_KEY,
    ENV_SPACE_ID,
    ArizeSendError,
    ArizeValidationError,
    ChunkNotSent,
    ChunkUncertain,
    Credentials,
    CredentialsError,
    arize_client,
    credentials_from_env,
    log_with_retries,
)
from components.common import files, schema, storage
from components.common.history import LABEL_CORRECT, LABEL_TS, AccuracyUpdate, update_accuracy
from components.common.schema import PreparedColumns as P

LABEL_COLUMNS = (P.PREDICTION_ID, P.ACTUAL_LABEL)
PREDICTION_COLUMNS = (P.PREDICTION_ID, P.PREDICTION_TS, P.PREDICTION_LABEL)
PRODUCTION_FILE = schema.prepared_file(schema.PRODUCTION)
LEDGER_SUFFIX = ".actuals.parquet"
PARQUET_TYPE = "application/vnd.apache.parquet"
FORMATS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}

# Why a row of the labels file is not sent (the `reason` column of the rejected file).
NO_ID, NO_LABEL, NOT_A_CLASS, UNREADABLE = "no_prediction_id", "no_label", "not_a_class", "unreadable_row"
DUPLICATE, CONFLICTING, UNKNOWN_ID = "duplicate", "conflicting_labels", "unknown_prediction_id"
ALREADY, RELABELLED = "already_recorded", "relabelled"
REASONS = {
    NO_ID: "no prediction_id",
    NO_LABEL: "no actual_label",
    NOT_A_CLASS: f"actual_label is not a class (a name of {', '.join(schema.CLASS_NAMES)} or an index 0-{schema.NUM_CLASSES - 1})",
    UNREADABLE: "the line is not a JSON object",
    DUPLICATE: "the same label of the same prediction_id again in the file (the first is taken)",
    CONFLICTING: "the file gives this prediction_id different labels (none is taken)",
    UNKNOWN_ID: "no prepared prediction has this prediction_id (not found under prepared_uri)",
    ALREADY: "already recorded by an earlier run with the same label (sent or pending): not sent twice",
    RELABELLED: "an earlier run recorded another label for this prediction_id: not changed, not sent",
}
REJECTED_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        (P.PREDICTION_ID, pa.string()),
        (P.ACTUAL_LABEL, pa.string()),
        ("reason", pa.string()),
    ]
)

# A label's state in the ledger: recorded, not sent yet; being sent (intent recorded); Arize has it.
PENDING, IN_FLIGHT, SENT = "pending", "in_flight", "sent"
LEDGER_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        (P.PREDICTION_ID, pa.string()),
        (P.ACTUAL_LABEL, pa.string()),
        (P.PREDICTION_LABEL, pa.string()),
        (P.PREDICTION_TS, schema.TIMESTAMP_TYPE),
        ("model_version", pa.string()),
        ("state", pa.string()),
        ("chunk", pa.string()),
        ("recorded_at", pa.string()),
        ("sent_at", pa.string()),
    ]
)


# ---------------------------------------------------------------- 1. the labels file


@dataclass(frozen=True)
class Rejection:
    """A row of the labels file that is not sent: its row number (1-based), ID, label as given, reason."""

    row: int
    prediction_id: str | None
    actual_label: str | None
    reason: str


@dataclass(frozen=True)
class LabelRow:
    """A usable row of the labels file: its row number, prediction ID and class name."""

    row: int
    prediction_id: str
    label: str
    given: str  # the label as the file gives it


def class_name(value: Any) -> tuple[str | None, str]:
    """The class name of a label given as a name or an index; ``(None, reason)`` when it is none.

    Names match exactly or ignoring case and surrounding spaces; indices are 0..9 as an integer, an
    integral float or digits in a string.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, NO_LABEL
    if isinstance(value, bool):
        return None, NOT_A_CLASS
    index: int | None = None
    if isinstance(value, int):
        index = value
    elif isinstance(value, float):
        index = int(value) if value.is_integer() else None
    else:
        text = str(value).strip()
        if not text:
            return None, NO_LABEL
        if text.isdigit():
            index = int(text)
        else:
            folded = {name.casefold(): name for name in schema.CLASS_NAMES}
            name = folded.get(text.casefold())
            return (name, "") if name else (None, NOT_A_CLASS)
    if index is not None and 0 <= index < schema.NUM_CLASSES:
        return schema.CLASS_NAMES[index], ""
    return None, NOT_A_CLASS


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def label_format(uri: str) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from the file name's extension; a ValueError for another."""
    suffix = PurePosixPath(uri.split("://", 1)[-1]).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"labels_uri={uri!r}: unknown format {suffix or '(no extension)'}; expected a file ending in "
            f"{', '.join(FORMATS)} (CSV, JSON Lines, Parquet)"
        )
    return FORMATS[suffix]


def _raw_rows(uri: str, data: bytes, kind: str) -> list[tuple[int, Any, Any] | int]:
    """``(row, id, label)`` per row, or the bare row number of an unreadable JSON line."""
    if kind == "parquet":
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"labels_uri={uri!r}: not a readable Parquet file ({exc})") from None
        schema.require_columns(table.column_names, LABEL_COLUMNS, f"labels_uri={uri!r}")
        ids, labels = (table.column(c).to_pylist() for c in LABEL_COLUMNS)
        return [(i + 1, pid, label) for i, (pid, label) in enumerate(zip(ids, labels, strict=True))]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"labels_uri={uri!r}: not UTF-8 text ({exc})") from None
    if kind == "csv":
        reader = csv.DictReader(io.StringIO(text))
        schema.require_columns(reader.fieldnames or [], LABEL_COLUMNS, f"labels_uri={uri!r}")
        return [(i + 1, r.get(P.PREDICTION_ID), r.get(P.ACTUAL_LABEL)) for i, r in enumerate(reader)]
    if text.lstrip().startswith("["):  # a .json file holding one array of objects
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"labels_uri={uri!r}: not JSON ({exc})") from None
        lines = [json.dumps(item) for item in items]
    else:
        lines = text.splitlines()
    out: list[tuple[int, Any, Any] | int] = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            out.append(i)
            continue
        out.append((i, obj.get(P.PREDICTION_ID), obj.get(P.ACTUAL_LABEL)))
    return out


def read_labels(
    uri: str, config: storage.StorageConfig | None = None
) -> tuple[list[LabelRow], list[Rejection]]:
    """The usable rows of the labels file (one per prediction ID, file order) and the rows kept aside.

    Raises:
        FileNotFoundError: no file at ``uri``.
        ValueError: an unknown format, a missing column, a file that cannot be parsed at all.
    """
    kind = label_format(uri)
    rows: list[LabelRow] = []
    rejected: list[Rejection] = []
    for item in _raw_rows(uri, storage.read_bytes(uri, config=config), kind):
        if isinstance(item, int):
            rejected.append(Rejection(item, None, None, UNREADABLE))
            continue
        row, raw_id, raw_label = item
        pid, given = _text(raw_id), _text(raw_label)
        name, reason = class_name(raw_label)
        if pid is None:
            rejected.append(Rejection(row, None, given, NO_ID))
        elif name is None:
            rejected.append(Rejection(row, pid, given, reason))
        else:
            rows.append(LabelRow(row, pid, name, given or name))
    return _one_per_id(rows, rejected), rejected


def _one_per_id(rows: list[LabelRow], rejected: list[Rejection]) -> list[LabelRow]:
    """The first row of each ID; repeats go to ``rejected`` (duplicate, or all conflicting)."""
    by_id: dict[str, list[LabelRow]] = {}
    for r in rows:
        by_id.setdefault(r.prediction_id, []).append(r)
    kept = []
    for pid, group in by_id.items():
        if len({r.label for r in group}) > 1:
            rejected.extend(Rejection(r.row, pid, r.given, CONFLICTING) for r in group)
            continue
        kept.append(group[0])
        rejected.extend(Rejection(r.row, pid, r.given, DUPLICATE) for r in group[1:])
    return sorted(kept, key=lambda r: r.row)


# ---------------------------------------------------------------- 2. the prepared predictions


@dataclass(frozen=True)
class Prediction:
    """A prepared production prediction: when it was made, what was predicted, the model version."""

    ts_us: int  # microseconds since the epoch, UTC
    label: str
    model_version: str


def production_tables(prepared_uri: list[str], config: storage.StorageConfig | None = None) -> list[str]:
    """Every ``production.parquet`` of the given folders or prefixes (a ``.parquet`` URI: itself).

    Raises:
        ValueError: none found; the message names what was searched.
    """
    found: list[str] = []
    for base in prepared_uri:
        if base.endswith(".parquet"):
            found.append(base)
            continue
        for item in storage.list_prefix(base, config=config):
            if PurePosixPath(item.relative).name == PRODUCTION_FILE:
                found.append(
                    storage.join(base, item.relative)
                    if storage.is_remote(base)
                    else str(Path(base, item.relative))
                )
    if not found:
        raise ValueError(
            f"prepared_uri={','.join(prepared_uri)!r}: no {PRODUCTION_FILE} found there; give the prepare "
            "stage's output folder(s) of the monitoring runs whose predictions were labelled"
        )
    return found


def _parquet(uri: str, config: storage.StorageConfig | None) -> pq.ParquetFile:
    try:
        if storage.is_remote(uri):
            return pq.ParquetFile(pa.BufferReader(storage.read_bytes(uri, config=config)))
        return pq.ParquetFile(uri)
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{uri}: not a readable Parquet file ({exc}); expected a prepared table") from None


def _manifest_version(table_uri: str, config: storage.StorageConfig | None) -> str:
    parent = table_uri.rsplit("/", 1)[0] if storage.is_remote(table_uri) else str(Path(table_uri).parent)
    manifest = (
        storage.join(parent, files.MANIFEST_FILE)
        if storage.is_remote(parent)
        else str(Path(parent, files.MANIFEST_FILE))
    )
    try:
        data = json.loads(storage.read_bytes(manifest, config=config))
    except (FileNotFoundError, ValueError):
        return ""
    return str(data.get("model_version") or "") if isinstance(data, dict) else ""


def read_predictions(
    tables: list[str], wanted: set[str], model_version: str = "", config: storage.StorageConfig | None = None
) -> dict[str, Prediction]:
    """The predictions of the ``wanted`` IDs found in ``tables`` (the first table holding an ID wins).

    ``model_version`` ``""``: each table's manifest's. Reads only the three columns it needs, batch
    by batch, and keeps only the wanted rows.
    """
    found: dict[str, Prediction] = {}
    for uri in tables:
        parquet = _parquet(uri, config)
        schema.require_columns(parquet.schema_arrow.names, PREDICTION_COLUMNS, uri)
        version = model_version or _manifest_version(uri, config)
        for batch in parquet.iter_batches(columns=list(PREDICTION_COLUMNS), batch_size=65536):
            ids = batch.column(P.PREDICTION_ID).to_pylist()
            ts = batch.column(P.PREDICTION_TS).cast(schema.TIMESTAMP_TYPE).cast(pa.int64()).to_pylist()
            labels = batch.column(P.PREDICTION_LABEL).to_pylist()
            for pid, when, label in zip(ids, ts, labels, strict=True):
                if pid in wanted and pid not in found and when is not None:
                    found[pid] = Prediction(int(when), str(label or ""), version)
    return found


# ---------------------------------------------------------------- 3. the ledger


def ledger_location(config: ActualsConfig, summary: Path) -> str:
    """``actuals_ledger_uri``; '' = ``<history_uri>.actuals.parquet``, or next to the summary."""
    if config.actuals_ledger_uri:
        return config.actuals_ledger_uri
    if config.history_uri:
        base = config.history_uri.removesuffix(".parquet")
        return base + LEDGER_SUFFIX
    return str(summary.with_name(summary.name + LEDGER_SUFFIX))


class ActualsLedger:
    """Every late label accepted for one model, and whether Arize has it: one Parquet file.

    Rewritten whole at each change (one object PUT or one rename: atomic). A label is ``pending``
    when recorded, ``in_flight`` from just before its chunk is sent, ``sent`` after Arize accepted
    it; back to ``pending`` when Arize refused it (nothing stored). Rows of other models sharing the
    file are kept as they are.
    """

    def __init__(self, uri: str, model: str, config: storage.StorageConfig | None = None):
        self.uri, self.model, self.config = uri, model, config
        try:
            table = pq.read_table(pa.BufferReader(storage.read_bytes(uri, config=config)))
        except FileNotFoundError:  # no ledger yet: nothing recorded
            table = LEDGER_SCHEMA.empty_table()
        except (pa.ArrowException, OSError) as exc:
            if isinstance(exc, storage.StorageError):
                raise
            raise ValueError(
                f"{uri}: the actuals ledger is not a readable Parquet file ({exc}); it lists the labels sent, so "
                "it is not ignored: restore it, or move it away to start again (labels in Arize would be sent twice)"
            ) from None
        schema.require_columns(table.column_names, tuple(LEDGER_SCHEMA.names), f"actuals ledger {uri}")
        records = table.select(LEDGER_SCHEMA.names).cast(LEDGER_SCHEMA).to_pylist()
        self.others = [r for r in records if r["model"] != model]
        self.rows: dict[str, dict[str, Any]] = {r[P.PREDICTION_ID]: r for r in records if r["model"] == model}

    def get(self, prediction_id: str) -> dict[str, Any] | None:
        """The ledger's record of a prediction ID (None: not recorded)."""
        return self.rows.get(prediction_id)

    def record(self, labels: list[LabelRow], predictions: dict[str, Prediction]) -> None:
        """Add ``labels`` as pending (with their predictions) and rewrite the ledger."""
        now = datetime.now(UTC).isoformat()
        for r in labels:
            p = predictions[r.prediction_id]
            self.rows[r.prediction_id] = {
                "model": self.model,
                P.PREDICTION_ID: r.prediction_id,
                P.ACTUAL_LABEL: r.label,
                P.PREDICTION_LABEL: p.label,
                P.PREDICTION_TS: datetime.fromtimestamp(p.ts_us / 1e6, UTC),
                "model_version": p.model_version,
                "state": PENDING,
                "chunk": "",
                "recorded_at": now,
                "sent_at": "",
            }
        self.save()

    def mark(self, ids: list[str], state: str, chunk: str = "") -> None:
        """Set the state (and chunk) of ``ids`` and rewrite the ledger."""
        now = datetime.now(UTC).isoformat()
        for pid in ids:
            row = self.rows[pid]
            row["state"], row["chunk"] = state, chunk
            row["sent_at"] = now if state == SENT else ""
            if state == IN_FLIGHT:
                row["recorded_at"] = row["recorded_at"] or now
        self.save()

    def in_state(self, *states: str) -> list[dict[str, Any]]:
        """The records in any of ``states``, in the order they were recorded."""
        return [r for r in self.rows.values() if r["state"] in states]

    def labels_frame(self) -> pd.DataFrame:
        """Every label of this model as ``components.common.history.apply_labels`` reads them."""
        rows = list(self.rows.values())
        return pd.DataFrame(
            {
                LABEL_TS: pd.to_datetime([r[P.PREDICTION_TS] for r in rows], utc=True),
                LABEL_CORRECT: [r[P.ACTUAL_LABEL] == r[P.PREDICTION_LABEL] for r in rows],
            }
        )

    def save(self) -> None:
        """Write the whole ledger (one atomic object or file)."""
        table = pa.Table.from_pylist([*self.others, *self.rows.values()], schema=LEDGER_SCHEMA)
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        data = buf.getvalue().to_pybytes()
        if storage.is_remote(self.uri):
            storage.write_bytes(self.uri, data, PARQUET_TYPE, config=self.config)
        else:
            files.write_bytes_atomic(self.uri, data)


# ---------------------------------------------------------------- 4. validate, 6. send


def actuals_schema():
    """The SDK ``Schema`` of delayed actuals: the prediction ID and the actual label, nothing else."""
    from arize.ml.types import Schema

    return Schema(prediction_id_column_name=P.PREDICTION_ID, actual_label_column_name=P.ACTUAL_LABEL)


def actuals_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The DataFrame sent: ``prediction_id`` and ``actual_label`` (class name) of each record."""
    return pd.DataFrame(
        {
            P.PREDICTION_ID: pd.Series([r[P.PREDICTION_ID] for r in records], dtype=object),
            P.ACTUAL_LABEL: pd.Series([r[P.ACTUAL_LABEL] for r in records], dtype=object),
        }
    )


def validate_actuals(df: pd.DataFrame, model_name: str, model_version: str) -> list[str]:
    """The SDK's own validation of one chunk of actuals, as ``ml.log(validate=True)`` runs it."""
    from arize.constants.config import DEFAULT_MAX_PAST_YEARS
    from arize.ml.batch_validation.validator import Validator
    from arize.ml.types import Environments, ModelTypes

    env, sch, kind = Environments.PRODUCTION, actuals_schema(), ModelTypes.SCORE_CATEGORICAL
    kw = dict(dataframe=df, model_id=model_name, environment=env, schema=sch, model_version=model_version)
    errors = Validator.validate_required_checks(**kw, batch_id="")
    if not errors:
        errors = Validator.validate_params(**kw, model_type=kind, batch_id="")
    if not errors:
        table = pa.Table.from_pandas(df, preserve_index=False)
        errors = Validator.validate_types(model_type=kind, schema=sch, pyarrow_schema=table.schema)
    if not errors:
        errors = Validator.validate_values(
            dataframe=df, environment=env, schema=sch, model_type=kind, max_past_years=DEFAULT_MAX_PAST_YEARS
        )
    return [e.error_message() for e in errors]


def chunks_of(records: list[dict[str, Any]], chunk_rows: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(model_version, records)`` chunks: grouped by model version, at most ``chunk_rows`` each."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(r["model_version"], []).append(r)
    return [
        (version, group[i : i + chunk_rows])
        for version, group in sorted(groups.items())
        for i in range(0, len(group), chunk_rows)
    ]


def send_actuals_chunk(
    client: Any, df: pd.DataFrame, *, space_id: str, model_version: str, config: ActualsConfig
) -> int:
    """Log one chunk of delayed actuals with ``client.ml.log``; returns the retries it took.

    The call: ``ml.log(space_id, model_name, model_type=SCORE_CATEGORICAL, dataframe, schema=Schema(
    prediction_id_column_name, actual_label_column_name), environment=PRODUCTION, model_version)``:
    a schema without prediction columns is the SDK's delayed-actuals path (Arize joins each actual
    to the prediction of the same ID). Retries as the arize stage's chunks (the shared
    :func:`~components.arize.log.log_with_retries`): only what surely stored nothing (429, 5xx,
    connections never made); no answer raises :class:`ChunkUncertain` at once.
    """
    from arize.ml.types import Environments

    return log_with_retries(
        client,
        df,
        space_id=space_id,
        schema=actuals_schema(),
        environment=Environments.PRODUCTION,
        model_version=model_version,
        config=config,
    )


# ---------------------------------------------------------------- the result


@dataclass(frozen=True)
class UncertainActuals:
    """Labels left in flight by a run that was killed or got no answer: Arize may hold them."""

    chunk: str
    rows: int
    first_id: str
    last_id: str

    def text(self) -> str:
        """One line for messages and the summary."""
        return f"chunk {self.chunk}: {self.rows} labels, prediction IDs {self.first_id} .. {self.last_id}"


@dataclass
class ActualsResult:
    """What a run did: labels read, taken, kept aside (by reason), sent, and the history's windows."""

    model_name: str
    labels_uri: str
    ledger: str
    rows_read: int = 0
    accepted: int = 0  # new labels recorded by this run
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> rows
    sent: bool = False  # credentials present: pending labels were sent
    reason: str = ""  # why nothing was sent
    rows_sent: int = 0
    chunks_sent: int = 0
    retries: int = 0
    pending: int = 0  # labels recorded, not sent (no credentials, or stopped)
    uncertain: list[UncertainActuals] = field(default_factory=list)
    history_uri: str = ""
    history: AccuracyUpdate | None = None
    history_note: str = ""
    stopped: str = ""  # why sending stopped part-way

    @property
    def unknown(self) -> int:
        """Labels of prediction IDs that no prepared folder holds."""
        return self.rejected[UNKNOWN_ID]

    @property
    def duplicates(self) -> int:
        """Repeats in the file and labels an earlier run already recorded."""
        return self.rejected[DUPLICATE] + self.rejected[ALREADY]

    def markdown(self) -> str:
        """The Markdown summary the KFP UI shows."""
        if self.stopped:
            title = "STOPPED PART-WAY"
        elif self.sent:
            title = f"{self.rows_sent} sent" + (
                f", {len(self.uncertain)} chunk(s) UNCERTAIN" if self.uncertain else ""
            )
        else:
            title = "NOTHING SENT"
        lines = [
            f"# Arize actuals: {title}",
            "",
            f"Model `{self.model_name}`: late labels from `{self.labels_uri}`, logged as delayed actuals "
            "(environment production, schema `prediction_id` + `actual_label`).",
            "",
        ]
        if not self.sent and self.reason:
            lines += [f"**Nothing was sent to Arize: {self.reason}**", ""]
        if self.stopped:
            lines += [f"**{self.stopped}**", ""]
        lines += [
            "| rows read | new labels | kept aside | sent now | chunks sent | retries | pending | uncertain chunks |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {self.rows_read} | {self.accepted} | {sum(self.rejected.values())} | {self.rows_sent} | "
            f"{self.chunks_sent} | {self.retries} | {self.pending} | {len(self.uncertain)} |",
            "",
        ]
        if self.rejected:
            lines += ["Kept aside (the `rejected` file lists each row with its reason):", ""]
            lines += [f"- {n} x `{reason}`: {REASONS[reason]}" for reason, n in self.rejected.most_common()]
            lines.append("")
        if self.uncertain:
            lines += [
                f"**{len(self.uncertain)} chunk(s) UNCERTAIN, not resent**: an earlier run began sending them and "
                "was killed or got no answer; Arize may hold them. Rerun with resend_uncertain=True to send "
                "them again on purpose.",
                "",
                *(f"- {u.text()}" for u in self.uncertain),
                "",
            ]
        lines += [self.history_note or "No drift history updated (history_uri is empty).", ""]
        if self.history is not None and self.history.changed:
            lines += [
                "| window | start | labelled rows (before) | correct rows | accuracy (before) |",
                "|---|---|---:|---:|---:|",
                *(
                    f"| {w.window} | {w.window_start:%Y-%m-%d %H:%M} | {w.labelled_rows} ({w.labelled_before}) | "
                    f"{w.correct_rows} | {w.accuracy:.3f} ({_fmt(w.accuracy_before)}) |"
                    for w in self.history.changed
                ),
                "",
            ]
        lines.append(f"Actuals ledger: `{self.ledger}` (a rerun never sends a label twice).")
        return "\n".join(lines).rstrip() + "\n"


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


# ---------------------------------------------------------------- the whole run


def log_actuals(
    summary_path: str | Path,
    rejected_path: str | Path,
    config: ActualsConfig,
    *,
    client: Any = None,
    storage_config: storage.StorageConfig | None = None,
) -> ActualsResult:
    """Read late labels, record them, update the history's accuracy, and send them to Arize as actuals.

    Args:
        summary_path: the Markdown summary to write.
        rejected_path: the Parquet file of the rows kept aside (row, prediction_id, actual_label,
            reason); written always, empty when none.
        config: the labels, prepared folders, history, ledger, model and sending settings.
        client: what sends a chunk (its ``ml.log``); None = the SDK's ``ArizeClient`` for the
            credentials and ``config``'s endpoint.
        storage_config: endpoints of the object stores; None = from the environment.

    Raises:
        CredentialsError: credentials missing with ``require_arize_credentials``, or refused.
        ArizeValidationError: the SDK's validation refused a chunk; nothing was recorded or sent.
        ArizeSendError: sending stopped part-way (the summary says what was sent).
        HistoryError: the history cannot be read or is not a drift history.
    """
    summary = Path(summary_path)
    files.remove_stale_temporaries(summary.parent, names=[summary.name])
    creds = credentials_from_env()
    if creds is None and config.require_arize_credentials:
        missing = [n for n in (ENV_API_KEY, ENV_SPACE_ID) if not os.environ.get(n, "").strip()]
        raise CredentialsError(
            f"{' and '.join(missing)} not set in the environment; require_arize_credentials is set. Give the "
            "Arize credentials through a Kubernetes Secret or set require_arize_credentials=False"
        )
    ledger_uri = ledger_location(config, summary)
    result = ActualsResult(
        config.arize_model_name, config.labels_uri, ledger_uri, history_uri=config.history_uri
    )

    rows, rejected = read_labels(config.labels_uri, storage_config)
    result.rows_read = len(rows) + len(rejected)  # each row is taken once or kept aside once
    tables = production_tables(config.prepared_folders(), storage_config)
    predictions = read_predictions(
        tables, {r.prediction_id for r in rows}, config.model_version, storage_config
    )
    ledger = ActualsLedger(ledger_uri, config.arize_model_name, storage_config)
    new: list[LabelRow] = []
    for r in rows:
        earlier = ledger.get(r.prediction_id)
        if r.prediction_id not in predictions and earlier is None:
            rejected.append(Rejection(r.row, r.prediction_id, r.given, UNKNOWN_ID))
        elif earlier is not None:
            same = earlier[P.ACTUAL_LABEL] == r.label
            rejected.append(Rejection(r.row, r.prediction_id, r.given, ALREADY if same else RELABELLED))
        else:
            new.append(r)
    result.rejected = Counter(x.reason for x in rejected)
    result.accepted = len(new)
    _write_rejected(rejected_path, rejected)

    # Validate every chunk that will be sent (earlier pending labels too) before recording anything.
    states = (PENDING, IN_FLIGHT) if config.resend_uncertain else (PENDING,)
    preview = ledger.in_state(*states) + [_preview(r, predictions) for r in new]
    errors = [
        f"chunk {i} (model version {version!r}): {message}"
        for i, (version, chunk) in enumerate(chunks_of(preview, config.actuals_chunk_rows))
        for message in validate_actuals(actuals_frame(chunk), config.arize_model_name, version)
    ]
    if errors:
        raise ArizeValidationError(
            f"{config.labels_uri}: the SDK's validation of the actuals failed, nothing was recorded or sent:\n  "
            + "\n  ".join(errors[:20])
        )
    if new:
        ledger.record(new, predictions)

    if config.history_uri:
        result.history = update_accuracy(config.history_uri, ledger.labels_frame(), storage_config)
        result.history_note = _history_note(config.history_uri, result.history)

    uncertain = ledger.in_state(IN_FLIGHT) if not config.resend_uncertain else []
    result.uncertain = _uncertain_chunks(uncertain)
    if creds is None:
        result.reason = (
            f"{ENV_API_KEY} and {ENV_SPACE_ID} not both set in the environment (labels recorded only)"
        )
        result.pending = len(ledger.in_state(PENDING))
        files.write_text_atomic(summary, result.markdown())
        print(
            f"arize actuals: nothing sent ({result.reason}); {result.accepted} new labels recorded, "
            f"{sum(result.rejected.values())} kept aside, {result.pending} pending"
        )
        return result
    if client is None:
        client = arize_client(creds, config)
    send_pending(client, creds, ledger, config, result, summary)
    return result


def _preview(r: LabelRow, predictions: dict[str, Prediction]) -> dict[str, Any]:
    return {
        P.PREDICTION_ID: r.prediction_id,
        P.ACTUAL_LABEL: r.label,
        "model_version": predictions[r.prediction_id].model_version,
    }


def _history_note(uri: str, update: AccuracyUpdate | None) -> str:
    if update is None:
        return (
            f"No drift history at `{uri}` yet: nothing updated. The labels are kept in the ledger; the next "
            "actuals run after a monitoring run has recorded windows sets their accuracy."
        )
    outside = f" {update.outside} label(s) lie in no stored window." if update.outside else ""
    return (
        f"Drift history `{uri}`: {len(update.changed)} window(s) updated (accuracy over their late-labelled "
        f"rows; the counts are recomputed from every label of the ledger).{outside}"
    )


def _uncertain_chunks(records: list[dict[str, Any]]) -> list[UncertainActuals]:
    by_chunk: dict[str, list[str]] = {}
    for r in records:
        by_chunk.setdefault(str(r["chunk"]), []).append(str(r[P.PREDICTION_ID]))
    return [UncertainActuals(c, len(ids), ids[0], ids[-1]) for c, ids in by_chunk.items()]


def _write_rejected(path: str | Path, rejected: list[Rejection]) -> None:
    rows = sorted(rejected, key=lambda x: x.row)
    table = pa.Table.from_pylist(
        [
            {
                "row": x.row,
                P.PREDICTION_ID: x.prediction_id,
                P.ACTUAL_LABEL: x.actual_label,
                "reason": x.reason,
            }
            for x in rows
        ],
        schema=REJECTED_SCHEMA,
    )
    files.write_with_atomic(path, lambda tmp: pq.write_table(table, tmp))


def send_pending(
    client: Any,
    creds: Credentials,
    ledger: ActualsLedger,
    config: ActualsConfig,
    result: ActualsResult,
    summary: Path,
) -> None:
    """Send the pending labels (and, with ``resend_uncertain``, those in flight), chunk after chunk.

    Each chunk: marked ``in_flight`` in the ledger, sent, marked ``sent``. Refused or never
    reached: back to ``pending`` (a rerun sends it), :class:`ArizeSendError` or
    :class:`CredentialsError`; no answer: stays in flight, :class:`ArizeSendError`. The summary is
    written either way.
    """
    from arize.exceptions.auth import AuthenticationError

    states = (PENDING, IN_FLIGHT) if config.resend_uncertain else (PENDING,)
    run = uuid.uuid4().hex[:12]
    result.sent = True
    for index, (version, chunk) in enumerate(chunks_of(ledger.in_state(*states), config.actuals_chunk_rows)):
        ids = [r[P.PREDICTION_ID] for r in chunk]
        key = f"{run}-{index}"
        where = f"chunk {key} ({len(ids)} labels, prediction IDs {ids[0]} .. {ids[-1]})"
        try:
            ledger.mark(ids, IN_FLIGHT, key)  # the intent, before anything leaves
        except OSError as exc:
            _stop(
                result,
                summary,
                ledger,
                ArizeSendError(f"recording {where} in the ledger {ledger.uri} failed ({exc}); not sent"),
            )
        try:
            result.retries += send_actuals_chunk(
                client, actuals_frame(chunk), space_id=creds.space_id, model_version=version, config=config
            )
        except AuthenticationError as exc:
            ledger.mark(ids, PENDING)
            _stop(
                result,
                summary,
                ledger,
                CredentialsError(
                    f"Arize refused the credentials (HTTP {exc.status_code}) when sending {where}: check that "
                    f"{ENV_API_KEY} is a valid key for the space in {ENV_SPACE_ID} (values not shown)"
                ),
            )
        except ChunkNotSent as exc:
            ledger.mark(ids, PENDING)
            _stop(
                result,
                summary,
                ledger,
                ArizeSendError(
                    f"sending {where} failed after {exc.attempts} attempt(s): {creds.scrub(str(exc))[:500]}; "
                    "it stays pending: run again to send it"
                ),
            )
        except ChunkUncertain as exc:
            result.uncertain.append(UncertainActuals(key, len(ids), ids[0], ids[-1]))
            _stop(
                result,
                summary,
                ledger,
                ArizeSendError(
                    f"sending {where} got no answer ({creds.scrub(str(exc))[:300]}): Arize may hold it; it stays in "
                    "flight in the ledger and is not resent without resend_uncertain=True"
                ),
            )
        result.rows_sent += len(ids)
        result.chunks_sent += 1
        try:
            ledger.mark(ids, SENT, key)
        except OSError as exc:
            result.uncertain.append(UncertainActuals(key, len(ids), ids[0], ids[-1]))
            _stop(
                result,
                summary,
                ledger,
                ArizeSendError(f"{where} was sent, but marking it sent in {ledger.uri} failed ({exc})"),
            )
    result.pending = len(ledger.in_state(PENDING))
    files.write_text_atomic(summary, result.markdown())
    print(
        f"arize actuals: model {config.arize_model_name}: {result.rows_sent} labels sent in {result.chunks_sent} "
        f"chunk(s), {result.accepted} new, {sum(result.rejected.values())} kept aside "
        f"({result.unknown} unknown IDs, {result.duplicates} duplicates), "
        f"{len(result.history.changed) if result.history else 0} history window(s) updated"
    )
    if result.uncertain:
        print(
            f"arize actuals: WARNING {len(result.uncertain)} chunk(s) uncertain, not resent: "
            + "; ".join(u.text() for u in result.uncertain)
        )


def _stop(result: ActualsResult, summary: Path, ledger: ActualsLedger, error: Exception) -> NoReturn:
    result.pending = len(ledger.in_state(PENDING))
    result.stopped = (
        f"{error}. Sent so far by this run: {result.rows_sent} labels in {result.chunks_sent} chunk(s)."
    )
    files.write_text_atomic(summary, result.markdown())
    raise error from None
