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
   retrying timeouts, connection errors, 429 and 5xx with exponential backoff), each chunk sent
   recorded in the :class:`Ledger`; a rerun skips the chunks the ledger holds, so it sends only the
   rest.

The client is a parameter: :func:`arize_client` builds the SDK's ``ArizeClient`` from the
credentials and the endpoint settings when none is given. Credentials are read from the
environment when :func:`log_prepared` runs, never at import, never printed, never written to an
output. See ``components/arize/README.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from components.arize.config import ArizeConfig
from components.common import files, schema, storage
from components.common.schema import PreparedColumns as P

EMBEDDING_FEATURE = "image_embedding"
ENV_API_KEY = "ARIZE_API_KEY"
ENV_SPACE_ID = "ARIZE_SPACE_ID"
LEDGER_SUFFIX = ".ledger.json"
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
    """One chunk of an environment table: its position, rows and first and last prediction IDs."""

    environment: str
    index: int
    rows: int
    first_id: str
    last_id: str

    def key(self, model_name: str, model_version: str) -> str:
        """Identity of a chunk in the ledger: model, environment and the prediction IDs it holds."""
        raw = "\x1f".join(
            [model_name, model_version, self.environment, self.first_id, self.last_id, str(self.rows)]
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:24]


def iter_chunks(prepared_dir: Path, env: str, chunk_rows: int):
    """(Chunk, pandas DataFrame of the sent columns) for each chunk of one environment."""
    path = prepared_dir / schema.prepared_file(env)
    for index, batch in enumerate(
        pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=list(SENT_COLUMNS))
    ):
        df = batch.to_pandas()
        ids = df[P.PREDICTION_ID]
        yield Chunk(env, index, len(df), str(ids.iloc[0]), str(ids.iloc[-1])), df


class Ledger:
    """The chunks already sent, in a JSON file (local path or gs:// / s3:// URI), rewritten after each chunk."""

    def __init__(self, uri: str):
        self.uri = uri
        self.sent: dict[str, dict] = {}
        try:
            data = json.loads(storage.read_bytes(uri))
        except FileNotFoundError:  # no ledger yet: nothing was sent
            data = {}
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{uri}: the ledger is not JSON ({exc}); remove it to send everything again"
            ) from exc
        self.sent = dict(data.get("sent", {}))

    def __contains__(self, key: str) -> bool:
        return key in self.sent

    def record(self, key: str, chunk: Chunk) -> None:
        """Add a chunk the server accepted and rewrite the ledger."""
        self.sent[key] = {
            "environment": chunk.environment,
            "chunk": chunk.index,
            "rows": chunk.rows,
            "first_prediction_id": chunk.first_id,
            "last_prediction_id": chunk.last_id,
            "sent_at": datetime.now(UTC).isoformat(),
        }
        storage.write_bytes(
            self.uri, (json.dumps({"version": 1, "sent": self.sent}, indent=1) + "\n").encode()
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

    def markdown(self) -> str:
        """The Markdown summary the KFP UI shows."""
        title = "# Arize log: " + ("sent" if self.sent else "NOTHING SENT")
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
            "| environment | rows | chunks | rows sent | chunks sent | chunks already sent (ledger) | retries | time (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.environments.values():
            lines.append(
                f"| {r.environment} | {r.rows} | {r.chunks} | {r.rows_sent} | {r.chunks_sent} | "
                f"{r.chunks_skipped} | {r.retries} | {r.seconds:.1f} |"
            )
        lines += ["", "The SDK's validation passed for every chunk." if not self.validation_errors else ""]
        if self.sent:
            lines += ["", f"Ledger of sent chunks: `{self.ledger}` (a rerun sends only what it lacks)."]
        return "\n".join(lines).rstrip() + "\n"


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
    source = read_prepared(prepared_dir, config.model_version)
    summary = Path(summary_path)
    ledger_uri = config.ledger_uri or str(summary.with_name(summary.name + LEDGER_SUFFIX))
    reports = validate_all(source, config)
    creds = credentials_from_env()
    if creds is None:
        return _validated_only(source, reports, config, summary, ledger_uri)
    if client is None:
        client = arize_client(creds, config)
    return send_all(client, creds, source, reports, config, summary, Ledger(ledger_uri), progress)


# ---------------------------------------------------------------- 1. read


@dataclass(frozen=True)
class PreparedSource:
    """A prepared folder to log: its environment tables and the model version the rows are logged as."""

    folder: Path
    model_version: str
    environments: list[str]  # those with a table, in schema.SPLITS order


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
    manifest = json.loads(manifest_path.read_text())
    model_version = model_version or str(manifest.get("model_version") or "")
    if not model_version:
        raise ValueError(f"model_version is empty and {manifest_path} holds none; give model_version")
    return PreparedSource(folder, model_version, _present_environments(folder))


def _present_environments(prepared_dir: Path) -> list[str]:
    envs = [env for env in schema.SPLITS if (prepared_dir / schema.prepared_file(env)).is_file()]
    if not envs:
        raise ValueError(
            f"{prepared_dir}: no environment table; expected at least one of "
            f"{', '.join(schema.prepared_file(e) for e in schema.SPLITS)}"
        )
    for env in envs:
        path = prepared_dir / schema.prepared_file(env)
        schema.require_columns(pq.ParquetFile(path).schema_arrow.names, SENT_COLUMNS, str(path))
        if pq.ParquetFile(path).metadata.num_rows == 0:
            raise ValueError(f"{path}: environment {env} has no rows; expected at least one")
    return envs


# ---------------------------------------------------------------- 2. validate all


def validate_all(source: PreparedSource, config: ArizeConfig) -> dict[str, EnvReport]:
    """Every chunk through the SDK's validation; the rows and chunks per environment.

    Raises :class:`ArizeValidationError` with every error (the first 20 shown) when any chunk fails:
    nothing may be sent then.
    """
    reports = {env: EnvReport(env) for env in source.environments}
    errors: list[str] = []
    for env in source.environments:
        for chunk, df in iter_chunks(source.folder, env, config.chunk_rows):
            reports[env].rows += chunk.rows
            reports[env].chunks += 1
            for message in validate_frame(df, env, config.arize_model_name, source.model_version):
                first = chunk.index * config.chunk_rows
                errors.append(f"{env} chunk {chunk.index} (rows {first}-{first + chunk.rows - 1}): {message}")
    if errors:
        shown = "\n  ".join(errors[:20]) + (
            f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        )
        raise ArizeValidationError(
            f"{source.folder}: the Arize SDK's validation failed, nothing was sent:\n  {shown}"
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


def arize_client(credentials: Credentials, config: ArizeConfig | None = None):
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
    """A chunk could not be sent: an error that is not retried, or the last of ``attempts`` tries."""

    def __init__(self, attempts: int, error: Exception):
        super().__init__(f"{type(error).__name__}: {error}")
        self.attempts = attempts
        self.error = error


def _is_retryable(exc: Exception) -> bool:
    import requests
    from arize.exceptions.http import APIError

    if isinstance(exc, APIError):
        return exc.status_code == 429 or exc.status_code >= 500
    return isinstance(exc, requests.exceptions.Timeout | requests.exceptions.ConnectionError)


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
    """Log one chunk with ``client.ml.log``, retrying timeouts, connection errors, 429 and 5xx.

    Up to ``config.max_attempts`` tries, waiting ``backoff_s * 2^(try-1)`` (plus up to 10 % jitter)
    between them; ``report.retries`` counts the retries. ``AuthenticationError`` (401, 403) is raised
    at once; any other failure as :class:`ChunkNotSent`.
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
                schema=arize_schema(),
                environment=sdk_environment(env),
                model_version=model_version,
                batch_id=batch_id_for(env, model_version),
                validate=True,
                timeout=config.timeout_s,
            )
            return
        except AuthenticationError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified right below
            if not _is_retryable(exc) or attempt == config.max_attempts:
                raise ChunkNotSent(attempt, exc) from exc
            report.retries += 1
            time.sleep(config.backoff_s * 2 ** (attempt - 1) * (1 + 0.1 * random.random()))


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
    """Send every chunk the ledger does not hold, recording each one sent; write the summary.

    When a chunk cannot be sent, the summary says ``STOPPED PART-WAY`` and the error
    (:class:`CredentialsError` or :class:`ArizeSendError`) says what was sent and what was not.
    """
    from arize.exceptions.auth import AuthenticationError
    from tqdm.auto import tqdm

    model_name, model_version = config.arize_model_name, source.model_version
    total = sum(r.rows for r in reports.values())
    with tqdm(total=total, desc="arize", unit="row", disable=not progress) as bar:
        for env in source.environments:
            report = reports[env]
            for chunk, df in iter_chunks(source.folder, env, config.chunk_rows):
                key = chunk.key(model_name, model_version)
                if key in ledger:
                    report.chunks_skipped += 1
                    report.rows_skipped += chunk.rows
                    bar.update(chunk.rows)
                    continue
                start = time.monotonic()
                try:
                    send_chunk(
                        client,
                        df,
                        env,
                        space_id=creds.space_id,
                        model_version=model_version,
                        config=config,
                        report=report,
                    )
                except AuthenticationError as exc:
                    _write_partial(summary, model_name, model_version, reports, ledger.uri, env, chunk)
                    raise CredentialsError(
                        f"Arize refused the credentials (HTTP {exc.status_code}) when sending {env} chunk "
                        f"{chunk.index}: check that {ENV_API_KEY} is a valid key for the space in "
                        f"{ENV_SPACE_ID} (values not shown). {_progress_text(reports, env, chunk)}"
                    ) from None
                except ChunkNotSent as exc:
                    _write_partial(summary, model_name, model_version, reports, ledger.uri, env, chunk)
                    raise ArizeSendError(
                        f"sending {env} chunk {chunk.index} failed after {exc.attempts} attempt(s): "
                        f"{creds.scrub(str(exc))[:500]}. {_progress_text(reports, env, chunk)}"
                    ) from None
                report.seconds += time.monotonic() - start
                report.rows_sent += chunk.rows
                report.chunks_sent += 1
                ledger.record(key, chunk)
                bar.update(chunk.rows)
    result = LogResult(model_name, model_version, True, "", reports, ledger.uri)
    _write_summary(summary, result)
    print(
        f"arize: model {model_name} {model_version}: "
        + ", ".join(f"{r.environment} {r.rows_sent} sent/{r.rows_skipped} already" for r in reports.values())
    )
    return result


def _progress_text(reports: dict[str, EnvReport], env: str, chunk: Chunk) -> str:
    sent = [
        f"{r.environment}: {r.chunks_sent + r.chunks_skipped} of {r.chunks} chunks"
        for r in reports.values()
        if r.chunks_sent + r.chunks_skipped
    ]
    return (
        f"Sent so far: {'; '.join(sent) or 'nothing'}. Not sent: {env} from chunk {chunk.index} on"
        + "".join(f", {e} (all)" for e in reports if list(reports).index(e) > list(reports).index(env))
        + ". Run again to send the rest: the ledger skips what was sent."
    )


def _write_partial(summary: Path, model_name, model_version, reports, ledger_uri, env, chunk) -> None:
    result = LogResult(model_name, model_version, True, "", reports, ledger_uri)
    text = result.markdown().replace("# Arize log: sent", "# Arize log: STOPPED PART-WAY", 1)
    text += f"\n{_progress_text(reports, env, chunk)}\n"
    files.write_text_atomic(summary, text)


def _write_summary(summary: Path, result: LogResult) -> None:
    files.write_text_atomic(summary, result.markdown())
