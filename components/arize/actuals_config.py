"""The parameters of the arize stage's ``actuals`` entry point (late labels): one typed Config.

The second entry point of the arize stage has its own Config, the source of its command line
(``python -m components.arize actuals``), its component (``log_actuals``) and the actuals pipeline's
parameters, as :class:`~components.arize.config.ArizeConfig` is for the first. A light module
(stdlib and ``components.common`` only). Credentials are never parameters: they come from the
environment (``ARIZE_API_KEY``, ``ARIZE_SPACE_ID``) when the entry point runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.arize.config import ArizeConnection
from components.common.config import param

REMOTE = ("gs://", "s3://", "minio://")


@dataclass(frozen=True, kw_only=True)
class ActualsConfig(ArizeConnection):
    """Where the late labels, the predictions and the history are, and how the labels are sent.

    The Arize model and connection fields come from :class:`ArizeConnection`; three of them are
    declared again here for their own help text.
    """

    labels_uri: str = param(
        help="the file of late labels: one row per prediction with columns prediction_id and actual_label "
        "(a class name or index 0-9); CSV, JSON Lines (.jsonl, .ndjson, .json) or Parquet; a local path "
        "or a gs://, s3://, minio:// URI",
    )
    prepared_uri: str = param(
        help="where the predictions were prepared: one or more prepare-stage folders, or prefixes holding "
        "them, separated by commas (local paths or gs://, s3://, minio:// URIs); every production.parquet "
        "found gives the predictions' IDs, times and predicted labels",
    )
    history_uri: str = param(
        "",
        "the drift history (one Parquet file the monitoring pipeline writes) whose windows get the late "
        "labels' counts and accuracy; empty: no history is updated",
    )
    model_version: str = param(
        "", "the model version the actuals are logged under; '' = each prepared folder's manifest's"
    )
    require_arize_credentials: bool = param(
        False,
        "fail when ARIZE_API_KEY or ARIZE_SPACE_ID is missing, instead of recording the labels and "
        "updating the history only, with a summary that says nothing was sent",
    )
    actuals_chunk_rows: int = param(10000, "late labels per request to Arize")
    actuals_ledger_uri: str = param(
        "",
        "the actuals ledger: one Parquet file of every late label accepted and whether Arize has it (local "
        "path, gs://, s3:// or minio://), so a rerun never sends a label twice and the history's counts "
        "are recomputed from it; '' = next to history_uri (<history>.actuals.parquet), or without one "
        "next to the summary; give a bucket location that outlives the task",
    )
    resend_uncertain: bool = param(
        False,
        "send again, on purpose, the labels a killed or unanswered run left in flight (Arize may "
        "already hold them); False = report them as uncertain, not resent",
    )

    def __post_init__(self) -> None:
        if not self.labels_uri.strip():
            raise ValueError(
                "labels_uri is empty: give the file of late labels (prediction_id, actual_label)"
            )
        if not self.prepared_folders():
            raise ValueError(
                "prepared_uri is empty: give the prepare-stage folder(s) the predictions were prepared in"
            )
        for name in ("labels_uri", "prepared_uri", "history_uri", "actuals_ledger_uri"):
            for uri in getattr(self, name).split(",") if name == "prepared_uri" else [getattr(self, name)]:
                uri = uri.strip()
                if "://" in uri and not uri.startswith(REMOTE):
                    raise ValueError(f"{name}={uri!r}: expected a local path or a {', '.join(REMOTE)} URI")
        for name in ("history_uri", "actuals_ledger_uri"):
            if getattr(self, name).endswith("/"):
                raise ValueError(
                    f"{name}={getattr(self, name)!r}: give the URI of one Parquet file, not a folder"
                )
        super().__post_init__()
        if self.actuals_chunk_rows < 1:
            raise ValueError(
                f"actuals_chunk_rows={self.actuals_chunk_rows}: expected a positive number of rows"
            )

    def prepared_folders(self) -> list[str]:
        """The folders or prefixes of ``prepared_uri``, in order, without blanks."""
        return [p.strip() for p in self.prepared_uri.split(",") if p.strip()]
