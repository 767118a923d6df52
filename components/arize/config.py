"""The arize stage's parameters: one typed Config, the source of its command line and component.

A light module (stdlib and ``components.common`` only): compiling a pipeline or ``--help`` does
not import the Arize SDK or pandas. Credentials are never parameters: they come from the
environment (``ARIZE_API_KEY``, ``ARIZE_SPACE_ID``) when the stage runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.common.config import param


@dataclass(frozen=True)
class ArizeConnection:
    """The model the rows are logged as and how Arize is reached: what both entry points share."""

    arize_model_name: str = param("fashion-mnist-classifier", "the model's name in Arize")
    model_version: str = param("", "the model version in Arize; '' = the prepared folder's manifest's")
    require_arize_credentials: bool = param(
        False,
        "fail when ARIZE_API_KEY or ARIZE_SPACE_ID is missing, instead of validating only and "
        "writing a summary that says nothing was sent",
    )
    resend_uncertain: bool = param(
        False,
        "send again, on purpose, the chunks a killed or unanswered run left in flight (Arize may "
        "already hold them and does not deduplicate); False = report them as uncertain, not resent",
    )
    max_attempts: int = param(
        5, "tries per chunk on timeouts, connection errors, HTTP 429 and 5xx", component=False
    )
    backoff_s: float = param(
        2.0, "seconds waited after the first failed try; doubled after each one", component=False
    )
    timeout_s: float = param(120.0, "HTTP timeout of one request, in seconds", component=False)
    api_host: str = param("", "Arize host; '' = the SDK's (ARIZE_API_HOST or its default)", component=False)
    api_scheme: str = param(
        "", "Arize scheme (https, http); '' = the SDK's (ARIZE_API_SCHEME or its default)", component=False
    )
    api_port: int = param(0, "Arize port; 0 = the SDK's (ARIZE_API_PORT or its default)", component=False)

    def __post_init__(self) -> None:
        if not self.arize_model_name.strip():
            raise ValueError("arize_model_name is empty: give the model's name in Arize")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts={self.max_attempts}: expected at least 1")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s={self.backoff_s}: expected 0 or more seconds")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s={self.timeout_s}: expected a positive number of seconds")
        if not 0 <= self.api_port <= 65535:
            raise ValueError(f"api_port={self.api_port}: expected 0 (the SDK's) or a port 1..65535")


@dataclass(frozen=True)
class ArizeConfig(ArizeConnection):
    """Which model the rows are logged as, and how they are sent (the paths are arguments)."""

    # 2,000 rows of 2,048-value float32 vectors: about 17 MB of Arrow per request
    chunk_rows: int = param(2000, "rows per request to Arize")
    ledger_uri: str = param(
        "",
        "the ledger of chunks sent and in flight (a JSON file: local path, gs://, s3:// or minio:// "
        "URI; ending in '/' = a folder holding one ledger per model name and version), so a rerun "
        "sends only the rest and never a chunk twice; give a bucket location that outlives the task "
        "(a retried pod has a new disk); '' = next to the summary (<summary>.ledger.json)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows={self.chunk_rows}: expected a positive number of rows")
