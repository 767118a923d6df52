"""Log the prepared tables to Arize with the ``arize`` 8.x SDK, in chunks, with a ledger.

:func:`log_prepared` runs these steps:

1. :func:`read_prepared`: ``manifest.json`` and each ``<environment>.parquet`` of the prepared
   folder (a :class:`PreparedSource`);
2. :func:`validate_all`: every chunk through the SDK's own validation (the checks ``ml.log`` runs:
   required, parameters, types, values); any error stops the stage, listing every error by
   environment, chunk, column and reason, before anything is sent;
3. without credentials (``ARIZE_API_KEY``, ``ARIZE_SPACE_ID`` unset): a summary saying nothing was
   sent and why (or an error when credentials are required);
4. :func:`send_all`: chunk after chunk, each through :func:`send_chunk` (``client.ml.log``,
   retrying refused connections, 429 and 5xx with exponential backoff). The :class:`Ledger`
   records each chunk's intent (rows, batch ID, a hash of the rows) *before* it is sent and marks
   it sent after the answer: a rerun skips the chunks sent, sends the rest, and never resends
   blindly a chunk left *in flight* (killed mid-send, no answer): Arize does not deduplicate, so
   such a chunk is reported as uncertain (its rows and prediction IDs) and sent again only with
   ``resend_uncertain=True``.

The client is a parameter: :func:`arize_client` builds the SDK's ``ArizeClient`` from the
credentials and the endpoint settings when none is given. Credentials are read from the
environment when :func:`log_prepared` runs, never at import, never printed, never written to an
output. See ``components/arize/README.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from components.arize.config import ArizeConfig, ArizeConnection
from components.common import files, schema, storage
from components.common.parquet import iter_parquet, open_parquet
from components.common.schema import PreparedColumns as P

EMBEDDING_FEATURE = "image_embedding"
ENV_API_KEY = "ARIZE_API_KEY"
ENV_SPACE_ID = "ARIZE_SPACE_ID"
LEDGER_SUFFIX = ".ledger.json"
LEDGER_VERSION = 2
IN_FLIGHT, SENT = "in_flight", "sent"  # a chunk's state in the ledger
# Columns sent to Arize (degradation, probabilities and image_id stay home: evaluation only).
SENT_COLUMNS: tuple[str, ...] = (
    P.PREDICTION_ID,
    P.PREDICTION_TS,
    P.PREDICTION_LABEL,
    P.ACTUAL_LABEL,
    P.PREDICTION_SCORE,
    P.IMAGE_VECTOR,
    P.IMAGE_LINK,
    *P.FEATURES,
)


class ArizeValidationError(ValueError):
    """The SDK's validation found errors; nothing was sent."""


class CredentialsError(RuntimeError):
    """Credentials are missing (and required) or were refused by Arize."""


class ArizeSendError(RuntimeError):
    """Sending stopped part-way; the message says which chunks were sent and which were not."""


@dataclass(frozen=True)
class Credentials:
    """The Arize API key and space ID; never shown by ``repr``."""

    api_key: str
    space_id: str

    def __repr__(self) -> str:  # never show the values
        return "Credentials(api_key=***, space_id=***)"

    def scrub(self, text: str) -> str:
        """``text`` with both values replaced by ``***``."""
        for secret in (self.api_key, self.space_id):
            if secret:
                text = text.replace(secret, "***")
        return text


def credentials_from_env() -> Credentials | None:
    """Credentials from ``ARIZE_API_KEY`` and ``ARIZE_SPACE_ID``, read now; None when either is unset."""
    key, space = os.environ.get(ENV_API_KEY, "").strip(), os.environ.get(ENV_SPACE_ID, "").strip()
    if not key or not space:
        return None
    return Credentials(key, space)


def arize_schema():
    """The SDK ``Schema`` of the prepared columns, with the embedding feature ``image_embedding``."""
    from arize.ml.types import EmbeddingColumnNames, Schema

    return Schema(
        prediction_id_column_name=P.PREDICTION_ID,
        timestamp_column_name=P.PREDICTION_TS,
        prediction_label_column_name=P.PREDICTION_LABEL,
        prediction_score_column_name=P.PREDICTION_SCORE,
        actual_label_column_name=P.ACTUAL_LABEL,
        feature_column_names=list(P.FEATURES),
        embedding_feature_column_names={
            EMBEDDING_FEATURE: EmbeddingColumnNames(
                vector_column_name=P.IMAGE_VECTOR, link_to_data_column_name=P.IMAGE_LINK
            )
        },
    )


def sdk_environment(env: str):
    """The SDK's ``Environments`` member of a prepared environment name."""
    from arize.ml.types import Environments

    return {
        schema.TRAINING: Environments.TRAINING,
        schema.VALIDATION: Environments.VALIDATION,
        schema.PRODUCTION: Environments.PRODUCTION,
    }[env]


def batch_id_for(env: str, model_version: str) -> str:
    """Arize wants a batch ID for the validation environment; one per model version."""
    return f"{env}-{model_version}" if env == schema.VALIDATION else ""


def validate_frame(df, env: str, model_name: str, model_version: str) -> list[str]:
    """The SDK's own validation of one chunk, as ``ml.log(validate=True)`` runs it; error messages."""
    import pyarrow as pa
    from arize.constants.config import DEFAULT_MAX_PAST_YEARS
    from arize.ml.batch_validation.validator import Validator
    from arize.ml.types import ModelTypes

    arize_env, sch, batch = sdk_environment(env), arize_schema(), batch_id_for(env, model_version)
    kw = dict(
        dataframe=df, model_id=model_name, environment=arize_env, schema=sch, model_version=model_version
    )
    errors = Validator.validate_required_checks(**kw, batch_id=batch)
    if not errors:
        errors = Validator.validate_params(**kw, model_type=ModelTypes.SCORE_CATEGORICAL, batch_id=batch)
    if not errors:
        table = pa.Table.from_pandas(df, preserve_index=False)
        errors = Validator.validate_types(
            model_type=ModelTypes.SCORE_CATEGORICAL, schema=sch, pyarrow_schema=table.schema
        )
    if not errors:
        errors = Validator.validate_values(
            dataframe=df,
            environment=arize_env,
            schema=sch,
            model_type=ModelTypes.SCORE_CATEGORICAL,
            max_past_years=DEFAULT_MAX_PAST_YEARS,
        )
    return [e.error_message() for e in errors]


@dataclass
class Chunk:
    """One chunk of an environment table: its position, rows, prediction IDs and their digest."""

    environment: str
    index: int
    first_row: int  # position of its first row in the environment's table
    rows: int
    first_id: str
    last_id: str
    ids_digest: str  # sha256 of every prediction ID of the chunk, in order

    @property
    def last_row(self) -> int:
        """Position of its last row in the environment's table."""
        return self.first_row + self.rows - 1

    def key(self, model_name: str, model_version: str) -> str:
        """Identity of a chunk in the ledger: model, environment and every prediction ID it holds."""
        raw = "\x1f".join([model_name, model_version, self.environment, self.ids_digest])
        return hashlib.sha256(raw.encode()).hexdigest()[:24]

    def legacy_key(self, model_name: str, model_version: str) -> str:
        """The key of a version-1 ledger (first and last prediction IDs, rows), read for compatibility."""
        raw = "\x1f".join(
            [model_name, model_version, self.environment, self.first_id, self.last_id, str(self.rows)]
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:24]

    def where(self) -> str:
        """``<env> chunk <i> (rows a-b, prediction IDs x .. y)``, for messages."""
        return (
            f"{self.environment} chunk {self.index} (rows {self.first_row}-{self.last_row}, "
            f"prediction IDs {self.first_id} .. {self.last_id})"
        )


def rows_digest(batch: pa.RecordBatch) -> str:
    """sha256 of the rows sent (the Arrow IPC stream of the sent columns): what the ledger records."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return hashlib.sha256(sink.getvalue()).hexdigest()


def _open_parquet(path: Path) -> pq.ParquetFile:
    return open_parquet(path, "run prepare again")


def _iter_batches(path: Path, chunk_rows: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
    return iter_parquet(path, "run prepare again", batch_size=chunk_rows, columns=columns)


def iter_chunks(
    prepared_dir: Path, env: str, chunk_rows: int, extra: tuple[str, ...] = ()
) -> Iterator[tuple[Chunk, pa.RecordBatch]]:
    """(Chunk, Arrow batch of the sent columns and the ``extra`` ones) for each chunk of one environment."""
    path = prepared_dir / schema.prepared_file(env)
    first_row = 0
    for index, batch in enumerate(_iter_batches(path, chunk_rows, [*SENT_COLUMNS, *extra])):
        ids = batch.column(P.PREDICTION_ID).to_pylist()
        digest = hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()
        yield Chunk(env, index, first_row, len(ids), str(ids[0]), str(ids[-1]), digest), batch
        first_row += len(ids)


def sent_frame(batch: pa.RecordBatch):
    """The pandas DataFrame ``ml.log`` sends: the sent columns of a chunk.

    A chunk whose ``image_link`` is null on every row (prepare ran without an image store: the images
    are inside its artifact, no per-image file exists to link) keeps that column typed as strings:
    the SDK's validation refuses a column of untyped ``None``, and takes null links as "no link".
    """
    df = batch.select(list(SENT_COLUMNS)).to_pandas()
    if df[P.IMAGE_LINK].isna().all():
        df[P.IMAGE_LINK] = df[P.IMAGE_LINK].astype("string")
    return df


def ledger_location(config: ArizeConfig, summary: Path, model_version: str) -> str:
    """Where the ledger is: ``ledger_uri``; under it when it ends in ``/``; ``''`` = next to the summary."""
    uri = config.ledger_uri
    if not uri:
        return str(summary.with_name(summary.name + LEDGER_SUFFIX))
    if uri.endswith("/"):
        safe = [re.sub(r"[^A-Za-z0-9._-]", "_", v) for v in (config.arize_model_name, model_version)]
        return storage.join(uri, f"{safe[0]}--{safe[1]}{LEDGER_SUFFIX}")
    return uri


class Ledger:
    """Chunks in flight and sent, in one JSON object (local path or gs:// / s3:// / minio:// URI).

    Rewritten whole at each change (one object PUT or one rename: atomic). :meth:`begin` records a
    chunk's intent before it is sent (state ``in_flight``), :meth:`done` marks it ``sent`` after
    Arize accepted it, :meth:`forget` removes it when Arize answered with a refusal (nothing was
    stored). A chunk still ``in_flight`` when a run starts was left by a run that was killed or got
    no answer: Arize may hold it or not.
    """

    def __init__(self, uri: str):
        self.uri = uri
        try:
            data = json.loads(storage.read_bytes(uri))
        except FileNotFoundError:  # no ledger yet: nothing was sent
            data = {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"{uri}: the ledger is not JSON ({exc}); it lists what was sent, so it is not ignored: "
                "restore it, or remove it to send everything again (rows already in Arize would be twice)"
            ) from None
        if not isinstance(data, dict):
            raise ValueError(f"{uri}: the ledger holds {type(data).__name__}; expected a JSON object")
        self.chunks: dict[str, dict] = dict(data.get("chunks", {}))
        for key, entry in dict(data.get("sent", {})).items():  # version 1: chunks sent only
            self.chunks.setdefault(key, {**entry, "state": SENT})

    def find(self, chunk: Chunk, model_name: str, model_version: str) -> tuple[str, dict | None]:
        """The chunk's key and its entry (None when the ledger does not hold it)."""
        key = chunk.key(model_name, model_version)
        entry = self.chunks.get(key) or self.chunks.get(chunk.legacy_key(model_name, model_version))
        return key, entry

    def chunk_rows_of(self, model_name: str, model_version: str) -> int | None:
        """The ``chunk_rows`` the ledger's chunks of this model and version were cut with (None: none)."""
        for entry in self.chunks.values():
            if entry.get("model") == model_name and entry.get("model_version") == model_version:
                if entry.get("chunk_rows"):
                    return int(entry["chunk_rows"])
        return None

    def begin(self, key: str, chunk: Chunk, intent: dict) -> None:
        """Record the intent to send ``chunk`` (state ``in_flight``) and rewrite the ledger."""
        self.chunks[key] = {
            "state": IN_FLIGHT,
            "environment": chunk.environment,
            "chunk": chunk.index,
            "first_row": chunk.first_row,
            "last_row": chunk.last_row,
            "rows": chunk.rows,
            "first_prediction_id": chunk.first_id,
            "last_prediction_id": chunk.last_id,
            **intent,
            "started_at": datetime.now(UTC).isoformat(),
        }
        self.save()

    def done(self, key: str) -> None:
        """Mark the chunk sent (Arize accepted it) and rewrite the ledger."""
        self.chunks[key] = {**self.chunks[key], "state": SENT, "sent_at": datetime.now(UTC).isoformat()}
        self.save()

    def forget(self, key: str) -> None:
        """Remove the chunk (Arize refused it: nothing stored) and rewrite the ledger."""
        self.chunks.pop(key, None)
        self.save()

    def save(self) -> None:
        """Write the whole ledger (one atomic object or file)."""
        data = {"version": LEDGER_VERSION, "chunks": self.chunks}
        storage.write_bytes(self.uri, (json.dumps(data, indent=1) + "\n").encode(), "application/json")


@dataclass(frozen=True)
class UncertainChunk:
    """A chunk left in flight: sent by a run that was killed or got no answer; Arize may hold it."""

    environment: str
    index: int
    first_row: int
    last_row: int
    first_id: str
    last_id: str
    batch_id: str
    since: str  # when its send began
    rows_changed: bool = False  # the rows now differ from those of that send (same prediction IDs)

    def text(self) -> str:
        """One line for messages and the summary."""
        return (
            f"{self.environment} chunk {self.index}: rows {self.first_row}-{self.last_row}, prediction IDs "
            f"{self.first_id} .. {self.last_id}"
            + (f", batch {self.batch_id}" if self.batch_id else "")
            + f", in flight since {self.since or '?'}"
            + (" (its rows changed since, same prediction IDs)" if self.rows_changed else "")
        )


@dataclass
class EnvReport:
    """The counts of one environment: rows and chunks, sent, already sent, retries, time."""

    environment: str
    rows: int = 0
    chunks: int = 0
    rows_sent: int = 0
    chunks_sent: int = 0
    chunks_skipped: int = 0  # already in the ledger
    rows_skipped: int = 0
    retries: int = 0
    seconds: float = 0.0
    not_sent: list[int] = field(default_factory=list)
    uncertain: list[UncertainChunk] = field(default_factory=list)  # in flight, not resent
    chunks_resent: int = 0  # uncertain chunks sent again on purpose (resend_uncertain)
    rows_without_actual: int = 0  # actual_label null (no label yet): logged with the prediction only


@dataclass
class LogResult:
    """What a run did: sent or not (and why), per environment; rendered by :meth:`markdown`."""

    model_name: str
    model_version: str
    sent: bool
    reason: str
    environments: dict[str, EnvReport]
    ledger: str
    validation_errors: list[str] = field(default_factory=list)

    @property
    def uncertain(self) -> list[UncertainChunk]:
        """The chunks left in flight by an earlier run and not resent, every environment."""
        return [u for r in self.environments.values() for u in r.uncertain]

    def markdown(self) -> str:
        """The Markdown summary the KFP UI shows."""
        title = "# Arize log: " + ("sent" if self.sent else "NOTHING SENT")
        if self.sent and self.uncertain:
            title += f", {len(self.uncertain)} chunk(s) UNCERTAIN"
        lines = [
            title,
            "",
            f"Model `{self.model_name}` version `{self.model_version}`, model type score-categorical, "
            f"embedding feature `{EMBEDDING_FEATURE}` (vector `{P.IMAGE_VECTOR}`, link `{P.IMAGE_LINK}`).",
            "",
        ]
        if not self.sent:
            lines += [f"**Nothing was sent to Arize: {self.reason}**", ""]
        lines += [
            "| environment | rows | chunks | rows sent | chunks sent | chunks already sent (ledger) | "
            "uncertain chunks | retries | time (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.environments.values():
            lines.append(
                f"| {r.environment} | {r.rows} | {r.chunks} | {r.rows_sent} | {r.chunks_sent} | "
                f"{r.chunks_skipped} | {len(r.uncertain)} | {r.retries} | {r.seconds:.1f} |"
            )
        lines += ["", "The SDK's validation passed for every chunk." if not self.validation_errors else ""]
        without = [r for r in self.environments.values() if r.rows_without_actual]
        if without:
            lines += [
                "",
                "Rows without an actual label yet, logged with the prediction only (the actual can be "
                "sent later for the same prediction ID): "
                + ", ".join(f"{r.environment} {r.rows_without_actual} of {r.rows}" for r in without)
                + ".",
            ]
        if self.uncertain:
            lines += ["", *_uncertain_text(self.uncertain, self.ledger).splitlines()]
        if self.sent:
            lines += [
                "",
                f"Ledger of chunks sent and in flight: `{self.ledger}` (a rerun sends only what it lacks).",
            ]
        return "\n".join(lines).rstrip() + "\n"


def _uncertain_text(uncertain: list[UncertainChunk], ledger: str) -> str:
    return "\n".join(
        [
            f"**{len(uncertain)} chunk(s) UNCERTAIN, not resent**: an earlier run began sending them and "
            "was killed or got no answer, so Arize may hold them or not, and it does not deduplicate. "
            "Look their prediction IDs up in Arize; to send them again on purpose, rerun with "
            f"resend_uncertain=True (--resend-uncertain). Ledger: `{ledger}`.",
            "",
            *(f"- {u.text()}" for u in uncertain),
        ]
    )


def log_prepared(
    prepared_dir: str | Path,
    summary_path: str | Path,
    config: ArizeConfig | None = None,
    *,
    client: Any = None,
    progress: bool = True,
) -> LogResult:
    """Validate the prepared tables with the SDK and send them to Arize in chunks.

    Args:
        prepared_dir: the prepare stage's output folder.
        summary_path: the Markdown summary to write.
        config: model name and version in Arize, chunk size, ledger, retries, endpoint
            (:class:`ArizeConfig`); None = the defaults.
        client: what sends a chunk (its ``ml.log``, as the SDK's ``ArizeClient`` has); None =
            :func:`arize_client` for the credentials and ``config``'s endpoint.
        progress: show a progress bar.
    """
    config = config or ArizeConfig()
    summary = Path(summary_path)
    files.remove_stale_temporaries(summary.parent, names=[summary.name])
    source = read_prepared(prepared_dir, config.model_version)
    ledger_uri = ledger_location(config, summary, source.model_version)
    if not storage.is_remote(ledger_uri):  # a local ledger's temporary siblings of killed runs
        files.remove_stale_temporaries(Path(ledger_uri).parent, names=[Path(ledger_uri).name])
    creds = credentials_from_env()
    ledger = None
    if creds is not None:
        ledger = Ledger(ledger_uri)
        cut = ledger.chunk_rows_of(config.arize_model_name, source.model_version)
        if cut and cut != config.chunk_rows:
            print(
                f"arize: chunk_rows={config.chunk_rows} but the ledger's chunks were cut with {cut}: "
                f"using {cut}, so that the chunks sent before are recognised"
            )
            config = dataclasses.replace(config, chunk_rows=cut)
    reports = validate_all(source, config)
    if creds is None or ledger is None:
        return _validated_only(source, reports, config, summary, ledger_uri)
    if client is None:
        client = arize_client(creds, config)
    return send_all(client, creds, source, reports, config, summary, ledger, progress)


# ---------------------------------------------------------------- 1. read


@dataclass(frozen=True)
class PreparedSource:
    """A prepared folder to log: its environment tables and the model version the rows are logged as."""

    folder: Path
    model_version: str
    environments: list[str]  # those with a table, in schema.SPLITS order
    manifest_version: str = ""  # the manifest's: the rows' prediction IDs derive from it
    manifest_rows: dict[str, int] = field(default_factory=dict)  # rows per environment, as the manifest says
    # per environment, the rows whose prediction ID the serving system gave (not derived from the
    # version) as the manifest records them: {"rows": n, "sha256": digest of those IDs in table order}
    given_ids: dict[str, dict] = field(default_factory=dict)


def read_prepared(prepared_dir: str | Path, model_version: str = "") -> PreparedSource:
    """Read the manifest and check each environment table (sent columns present, rows).

    ``model_version`` ``""`` = the manifest's.
    """
    folder = Path(prepared_dir)
    manifest_path = folder / files.MANIFEST_FILE
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{manifest_path}: not found; expected the output folder of the prepare stage"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{manifest_path}: not JSON ({exc}); expected the manifest the prepare stage writes"
        ) from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifest_path}: holds {type(manifest).__name__}; expected a JSON object")
    manifest_version = str(manifest.get("model_version") or "")
    model_version = model_version or manifest_version
    if not model_version:
        raise ValueError(f"model_version is empty and {manifest_path} holds none; give model_version")
    rows = manifest.get("rows")
    manifest_rows = {str(k): int(v) for k, v in rows.items()} if isinstance(rows, dict) else {}
    given = manifest.get("given_prediction_ids")
    given_ids = (
        {str(k): dict(v) for k, v in given.items() if isinstance(v, dict)} if isinstance(given, dict) else {}
    )
    return PreparedSource(
        folder, model_version, _present_environments(folder), manifest_version, manifest_rows, given_ids
    )


def _present_environments(prepared_dir: Path) -> list[str]:
    envs = [env for env in schema.SPLITS if (prepared_dir / schema.prepared_file(env)).is_file()]
    if not envs:
        raise ValueError(
            f"{prepared_dir}: no environment table; expected at least one of "
            f"{', '.join(schema.prepared_file(e) for e in schema.SPLITS)}"
        )
    for env in envs:
        path = prepared_dir / schema.prepared_file(env)
        parquet = _open_parquet(path)
        schema.require_columns(parquet.schema_arrow.names, (*SENT_COLUMNS, P.IMAGE_ID), str(path))
        if parquet.metadata.num_rows == 0:
            raise ValueError(f"{path}: environment {env} has no rows; expected at least one")
    return envs


# ---------------------------------------------------------------- 2. validate all


def validate_all(source: PreparedSource, config: ArizeConfig) -> dict[str, EnvReport]:
    """Every chunk through the SDK's validation, and the rows checked against the manifest.

    The manifest's checks: each table holds the rows the manifest counts, and every row's
    prediction ID derives from the manifest's model version (``schema.prediction_id``), so no
    row prepared for another model is logged under this one; the rows whose ID the serving
    system gave (ingested production) are the exception, and they must be exactly the ones the
    manifest records (``given_prediction_ids``: their count and the sha256 of their IDs in order).
    Production rows without an actual label (no label yet) are counted (``rows_without_actual``):
    Arize logs their prediction alone. Raises :class:`ArizeValidationError`
    with every error (the first 20 shown) and the count per reason when any check fails: nothing may
    be sent then. Returns the rows and chunks per environment.
    """
    reports = {env: EnvReport(env) for env in source.environments}
    errors: list[tuple[str, str]] = []  # (where, reason)
    for env in source.environments:
        foreign, first_foreign = 0, ""
        given = hashlib.sha256()
        for chunk, batch in iter_chunks(source.folder, env, config.chunk_rows, (P.IMAGE_ID,)):
            reports[env].rows += chunk.rows
            reports[env].chunks += 1
            reports[env].rows_without_actual += batch.column(P.ACTUAL_LABEL).null_count
            rows = f"{env} chunk {chunk.index} (rows {chunk.first_row}-{chunk.last_row})"
            for message in validate_frame(
                sent_frame(batch), env, config.arize_model_name, source.model_version
            ):
                errors.append((rows, message))
            if source.manifest_version:
                ids = batch.column(P.PREDICTION_ID).to_pylist()
                image_ids = batch.column(P.IMAGE_ID).to_pylist()
                for i, (pid, image_id) in enumerate(zip(ids, image_ids, strict=True)):
                    if pid != schema.prediction_id(source.manifest_version, str(image_id)):
                        foreign += 1
                        given.update(f"{pid}\n".encode())
                        first_foreign = (
                            first_foreign or f"row {chunk.first_row + i}, {P.IMAGE_ID} {image_id!r}"
                        )
        recorded = source.given_ids.get(env, {})
        recorded_rows = int(recorded.get("rows", 0) or 0) if source.manifest_version else 0
        if foreign and recorded_rows:
            if (foreign, given.hexdigest()) != (recorded_rows, str(recorded.get("sha256", ""))):
                errors.append(
                    (
                        f"{env} ({foreign} of {reports[env].rows} rows, first: {first_foreign})",
                        f"{P.PREDICTION_ID} neither derives from the manifest's model version "
                        f"{source.manifest_version!r} nor is one of the given IDs the manifest records "
                        f"({recorded_rows} rows): rows prepared for another model version, or "
                        "changed after prepare",
                    )
                )
        elif recorded_rows:
            errors.append(
                (
                    f"{env} ({reports[env].rows} rows)",
                    f"the manifest records {recorded_rows} rows with a given {P.PREDICTION_ID}; "
                    "the table has none: the table is not the one prepare wrote",
                )
            )
        elif foreign:
            errors.append(
                (
                    f"{env} ({foreign} of {reports[env].rows} rows, first: {first_foreign})",
                    f"{P.PREDICTION_ID} does not derive from the manifest's model version "
                    f"{source.manifest_version!r}: rows prepared for another model version",
                )
            )
        expected = source.manifest_rows.get(env)
        if expected is not None and expected != reports[env].rows:
            errors.append(
                (
                    f"{env} ({reports[env].rows} rows)",
                    f"the manifest counts {expected} rows: the table is not the one prepare wrote",
                )
            )
    if errors:
        shown = "\n  ".join(f"{where}: {reason}" for where, reason in errors[:20]) + (
            f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        )
        counts = Counter(reason for _, reason in errors)
        by_reason = "\n  ".join(f"{n} x {reason}" for reason, n in counts.most_common())
        raise ArizeValidationError(
            f"{source.folder}: the validation failed, nothing was sent:\n  {shown}\n"
            f"Errors by reason (the Arize SDK's checks and the manifest's):\n  {by_reason}"
        )
    return reports


# ---------------------------------------------------------------- 3. no credentials


def _validated_only(
    source: PreparedSource, reports: dict[str, EnvReport], config: ArizeConfig, summary: Path, ledger_uri: str
) -> LogResult:
    missing = [name for name in (ENV_API_KEY, ENV_SPACE_ID) if not os.environ.get(name, "").strip()]
    reason = f"{' and '.join(missing)} not set in the environment"
    if config.require_arize_credentials:
        raise CredentialsError(
            f"{reason}; require_arize_credentials is set. Give the Arize credentials through a Kubernetes "
            f"Secret (use_secret_as_env) or set require_arize_credentials=False to validate only"
        )
    result = LogResult(
        config.arize_model_name,
        source.model_version,
        False,
        reason + " (the tables were validated only)",
        reports,
        ledger_uri,
    )
    _write_summary(summary, result)
    print(f"arize: nothing sent ({reason}); {sum(r.rows for r in reports.values())} rows validated")
    return result


# ---------------------------------------------------------------- 4. send


def arize_client(credentials: Credentials, config: ArizeConnection | None = None):
    """The SDK's ``ArizeClient`` for ``credentials``, at ``config``'s endpoint ('' and 0 = the SDK's)."""
    from arize import ArizeClient

    config = config or ArizeConfig()
    return ArizeClient(  # None: the SDK's own setting
        api_key=credentials.api_key,
        api_host=config.api_host or None,
        api_scheme=config.api_scheme or None,
        api_port=config.api_port or None,
    )


class ChunkNotSent(Exception):
    """A chunk Arize did not take: refused (an answer other than 2xx), or never reached it.

    An error that is not retried, or the last of ``attempts`` tries.
    """

    def __init__(self, attempts: int, error: Exception):
        super().__init__(f"{type(error).__name__}: {error}")
        self.attempts = attempts
        self.error = error


class ChunkUncertain(Exception):
    """The request may have reached Arize but no answer came (timeout, connection dropped): never retried."""

    def __init__(self, attempts: int, error: Exception):
        super().__init__(f"{type(error).__name__}: {error}")
        self.attempts = attempts
        self.error = error


def _never_reached(exc: Exception) -> bool:
    """True when ``exc`` proves that Arize stored nothing: it answered with an error, or no request left."""
    import requests
    import urllib3

    if type(exc).__module__.startswith("arize.exceptions"):  # an answer (APIError) or the SDK's checks
        return True
    if isinstance(exc, ValueError | pa.ArrowException):  # the SDK's conversion, before any request
        return True
    if isinstance(exc, requests.exceptions.ConnectTimeout):  # no connection was made
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0] if exc.args else None, "reason", None)
        return isinstance(reason, urllib3.exceptions.NewConnectionError)  # refused, unknown host
    return isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema,
    )


def _is_retryable(exc: Exception) -> bool:
    import requests
    from arize.exceptions.http import APIError

    if isinstance(exc, APIError):
        return exc.status_code == 429 or exc.status_code >= 500
    return isinstance(exc, requests.exceptions.ConnectionError)  # only those that never reached it


def log_with_retries(
    client: Any,
    df,
    *,
    space_id: str,
    schema: Any,
    environment: Any,
    model_version: str,
    config: ArizeConnection,
    on_retry: Callable[[], None] | None = None,
    **extra: Any,
) -> int:
    """Log ``df`` with ``client.ml.log`` as ``config``'s model, retrying only when Arize surely stored nothing.

    The call: ``ml.log(space_id, model_name, model_type=SCORE_CATEGORICAL, dataframe, schema,
    environment, model_version, **extra, validate=True, timeout=config.timeout_s)``; returns the
    retries it took, and calls ``on_retry`` before each. Retried (up to ``config.max_attempts`` tries,
    waiting ``backoff_s * 2^(try-1)`` plus up to 10 % jitter): HTTP 429 and 5xx answers, connections
    refused or not made. ``AuthenticationError`` (401, 403) is raised at once; other refusals and the
    last failed try as :class:`ChunkNotSent`. A request that may have reached Arize without an
    answer (a read timeout, a connection dropped after the request) raises :class:`ChunkUncertain`
    at once: a retry could store the rows twice.
    """
    from arize.exceptions.auth import AuthenticationError
    from arize.ml.types import ModelTypes

    for attempt in range(1, config.max_attempts + 1):
        try:
            client.ml.log(
                space_id=space_id,
                model_name=config.arize_model_name,
                model_type=ModelTypes.SCORE_CATEGORICAL,
                dataframe=df,
                schema=schema,
                environment=environment,
                model_version=model_version,
                **extra,
                validate=True,
                timeout=config.timeout_s,
            )
            return attempt - 1
        except AuthenticationError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified right below
            if not _never_reached(exc):
                raise ChunkUncertain(attempt, exc) from exc
            if not _is_retryable(exc) or attempt == config.max_attempts:
                raise ChunkNotSent(attempt, exc) from exc
            if on_retry is not None:
                on_retry()
            time.sleep(config.backoff_s * 2 ** (attempt - 1) * (1 + 0.1 * random.random()))
    raise AssertionError("unreachable: the last attempt returns or raises")


def send_chunk(
    client: Any,
    df,
    env: str,
    *,
    space_id: str,
    model_version: str,
    config: ArizeConfig,
    report: EnvReport,
) -> None:
    """Log one chunk of ``env`` with :func:`log_with_retries`; ``report.retries`` counts the retries.

    Validation chunks carry the model version's batch ID (:func:`batch_id_for`).
    """

    def count_retry() -> None:
        report.retries += 1

    log_with_retries(
        client,
        df,
        space_id=space_id,
        schema=arize_schema(),
        environment=sdk_environment(env),
        model_version=model_version,
        config=config,
        on_retry=count_retry,
        batch_id=batch_id_for(env, model_version),
    )


def send_all(
    client: Any,
    creds: Credentials,
    source: PreparedSource,
    reports: dict[str, EnvReport],
    config: ArizeConfig,
    summary: Path,
    ledger: Ledger,
    progress: bool = True,
) -> LogResult:
    """Send every chunk the ledger does not hold, recording each intent before and each send after.

    A chunk the ledger holds as sent is skipped. One it holds in flight (an earlier run was killed
    or got no answer) is reported as uncertain and not resent, unless ``config.resend_uncertain``.
    When a chunk cannot be sent, the summary says ``STOPPED PART-WAY`` and the error
    (:class:`CredentialsError` or :class:`ArizeSendError`) says what was sent and what was not.
    """
    from arize.exceptions.auth import AuthenticationError
    from tqdm.auto import tqdm

    model_name, model_version = config.arize_model_name, source.model_version
    run_id = uuid.uuid4().hex[:12]
    total = sum(r.rows for r in reports.values())

    def stop(env: str, chunk: Chunk, error: Exception) -> None:
        _write_partial(summary, model_name, model_version, reports, ledger.uri, env, chunk)
        raise error from None

    with tqdm(total=total, desc="arize", unit="row", disable=not progress) as bar:
        for env in source.environments:
            report = reports[env]
            batch_id = batch_id_for(env, model_version)
            for chunk, batch in iter_chunks(source.folder, env, config.chunk_rows):
                key, entry = ledger.find(chunk, model_name, model_version)
                state = entry.get("state", SENT) if entry else None
                digest = rows_digest(batch) if state != SENT else ""
                if state == SENT:
                    report.chunks_skipped += 1
                    report.rows_skipped += chunk.rows
                    bar.update(chunk.rows)
                    continue
                if entry and state == IN_FLIGHT:
                    if not config.resend_uncertain:
                        report.uncertain.append(_uncertain(chunk, entry, digest))
                        bar.update(chunk.rows)
                        continue
                    report.chunks_resent += 1
                intent = {
                    "model": model_name,
                    "model_version": model_version,
                    "batch_id": batch_id,
                    "rows_sha256": digest,
                    "chunk_rows": config.chunk_rows,
                    "run": run_id,
                }
                try:  # before anything leaves: a kill from now on leaves it in flight
                    ledger.begin(key, chunk, intent)
                except OSError as exc:
                    stop(
                        env,
                        chunk,
                        ArizeSendError(
                            f"recording {chunk.where()} in the ledger {ledger.uri} failed ({exc}), so it was "
                            f"not sent. {_progress_text(reports, env, chunk)}"
                        ),
                    )
                start = time.monotonic()
                try:
                    send_chunk(
                        client,
                        sent_frame(batch),
                        env,
                        space_id=creds.space_id,
                        model_version=model_version,
                        config=config,
                        report=report,
                    )
                except AuthenticationError as exc:
                    ledger.forget(key)  # refused: nothing stored
                    stop(
                        env,
                        chunk,
                        CredentialsError(
                            f"Arize refused the credentials (HTTP {exc.status_code}) when sending {env} "
                            f"chunk {chunk.index}: check that {ENV_API_KEY} is a valid key for the space in "
                            f"{ENV_SPACE_ID} (values not shown). {_progress_text(reports, env, chunk)}"
                        ),
                    )
                except ChunkNotSent as exc:
                    ledger.forget(key)  # refused or never reached: nothing stored
                    stop(
                        env,
                        chunk,
                        ArizeSendError(
                            f"sending {env} chunk {chunk.index} failed after {exc.attempts} attempt(s): "
                            f"{creds.scrub(str(exc))[:500]}. {_progress_text(reports, env, chunk)}"
                        ),
                    )
                except ChunkUncertain as exc:  # stays in flight in the ledger
                    report.uncertain.append(_uncertain(chunk, ledger.chunks[key], digest))
                    stop(
                        env,
                        chunk,
                        ArizeSendError(
                            f"sending {chunk.where()} got no answer ({creds.scrub(str(exc))[:300]}): Arize "
                            "may have stored it or not and does not deduplicate, so it is not retried; the "
                            "ledger keeps it in flight and a rerun reports it as uncertain without sending "
                            "it (resend_uncertain=True sends it again on purpose). "
                            f"{_progress_text(reports, env, chunk)}"
                        ),
                    )
                report.seconds += time.monotonic() - start
                report.rows_sent += chunk.rows
                report.chunks_sent += 1
                try:
                    ledger.done(key)
                except OSError as exc:
                    report.uncertain.append(_uncertain(chunk, ledger.chunks[key], digest))
                    stop(
                        env,
                        chunk,
                        ArizeSendError(
                            f"{chunk.where()} was sent, but marking it sent in the ledger {ledger.uri} "
                            f"failed ({exc}): a rerun reports it as uncertain and does not resend it. "
                            f"{_progress_text(reports, env, chunk)}"
                        ),
                    )
                bar.update(chunk.rows)
    result = LogResult(model_name, model_version, True, "", reports, ledger.uri)
    _write_summary(summary, result)
    print(
        f"arize: model {model_name} {model_version}: "
        + ", ".join(f"{r.environment} {r.rows_sent} sent/{r.rows_skipped} already" for r in reports.values())
    )
    if result.uncertain:
        print(
            f"arize: WARNING {len(result.uncertain)} chunk(s) uncertain, not resent: "
            + "; ".join(u.text() for u in result.uncertain)
            + ". Check them in Arize; resend_uncertain=True sends them again on purpose"
        )
    return result


def _uncertain(chunk: Chunk, entry: dict, digest: str) -> UncertainChunk:
    recorded = entry.get("rows_sha256", "")
    return UncertainChunk(
        environment=chunk.environment,
        index=chunk.index,
        first_row=chunk.first_row,
        last_row=chunk.last_row,
        first_id=chunk.first_id,
        last_id=chunk.last_id,
        batch_id=str(entry.get("batch_id", "")),
        since=str(entry.get("started_at", "")),
        rows_changed=bool(recorded and digest and recorded != digest),
    )


def _progress_text(reports: dict[str, EnvReport], env: str, chunk: Chunk) -> str:
    sent = [
        f"{r.environment}: {r.chunks_sent + r.chunks_skipped} of {r.chunks} chunks"
        for r in reports.values()
        if r.chunks_sent + r.chunks_skipped
    ]
    uncertain = [u for r in reports.values() for u in r.uncertain]
    # the chunk that stopped the run: not sent, unless it is uncertain itself
    first = chunk.index + any(u.environment == env and u.index == chunk.index for u in uncertain)
    later = [f"{e} (all)" for e in reports if list(reports).index(e) > list(reports).index(env)]
    not_sent = ([f"{env} from chunk {first} on"] if first < reports[env].chunks else []) + later
    return (
        f"Sent so far: {'; '.join(sent) or 'nothing'}. "
        + (f"Uncertain (not resent): {'; '.join(u.text() for u in uncertain)}. " if uncertain else "")
        + f"Not sent: {', '.join(not_sent) or 'nothing'}."
        + " Run again to send the rest: the ledger skips what was sent."
    )


def _write_partial(summary: Path, model_name, model_version, reports, ledger_uri, env, chunk) -> None:
    result = LogResult(model_name, model_version, True, "", reports, ledger_uri)
    text = re.sub(r"^# Arize log: sent[^\n]*", "# Arize log: STOPPED PART-WAY", result.markdown(), count=1)
    text += f"\n{_progress_text(reports, env, chunk)}\n"
    files.write_text_atomic(summary, text)


def _write_summary(summary: Path, result: LogResult) -> None:
    files.write_text_atomic(summary, result.markdown())
