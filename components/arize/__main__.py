"""Command line of the arize stage: ``python -m components.arize --help``.

Two entry points: ``python -m components.arize --prepared P --summary S ...`` logs a prepared folder;
``python -m components.arize actuals --labels-uri L --prepared-uri P --summary S --rejected R ...``
logs late labels as actuals and updates the drift history's accuracy (``actuals --help``).
Credentials come from the environment only: ``ARIZE_API_KEY`` and ``ARIZE_SPACE_ID``.
"""

from __future__ import annotations

import argparse
import sys

from components.arize.actuals_config import ActualsConfig
from components.arize.config import ArizeConfig
from components.common.config import add_config_arguments, config_from_args


def parser() -> argparse.ArgumentParser:
    """The options: one per :class:`ArizeConfig` field, plus the prepared folder and the summary."""
    p = argparse.ArgumentParser(
        prog="python -m components.arize",
        description="Validate a prepared folder with the Arize SDK and log it to Arize "
        "(credentials from ARIZE_API_KEY and ARIZE_SPACE_ID; endpoint from ARIZE_API_HOST/SCHEME/PORT).",
    )
    p.add_argument("--prepared", required=True, help="the prepare stage's output folder")
    p.add_argument("--summary", required=True, help="Markdown summary to write")
    add_config_arguments(p, ArizeConfig)
    return p


def actuals_parser() -> argparse.ArgumentParser:
    """The options of ``actuals``: one per :class:`ActualsConfig` field, plus the summary and rejected file."""
    p = argparse.ArgumentParser(
        prog="python -m components.arize actuals",
        description="Log late labels (prediction_id, actual_label) to Arize as actuals of the predictions "
        "already sent, and update the accuracy of the drift history's windows they belong to (credentials "
        "from ARIZE_API_KEY and ARIZE_SPACE_ID; endpoint from ARIZE_API_HOST/SCHEME/PORT).",
    )
    p.add_argument("--summary", required=True, help="Markdown summary to write")
    p.add_argument(
        "--rejected",
        required=True,
        help="Parquet file of the label rows kept aside (row, prediction_id, actual_label, reason)",
    )
    add_config_arguments(p, ActualsConfig)
    return p


def actuals_main(argv: list[str] | None = None) -> int:
    """Run the ``actuals`` entry point; 0 on success, 2 with a one-line error on stderr."""
    args = actuals_parser().parse_args(argv)
    from components.arize.actuals import log_actuals
    from components.arize.log import ArizeSendError, CredentialsError

    try:
        log_actuals(args.summary, args.rejected, config_from_args(ActualsConfig, args))
    except (ValueError, OSError, CredentialsError, ArizeSendError) as exc:  # HistoryError is a ValueError
        print(f"arize actuals: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the arize stage from the command line; 0 on success, 2 with a one-line error.

    Expected errors (a bad parameter, a missing or corrupt prepared folder, a validation error,
    missing or refused credentials, a send that stopped part-way, a storage failure) print
    ``arize: error: <message>`` on stderr, without a traceback. A first argument ``actuals`` runs
    :func:`actuals_main` on the rest.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["actuals"]:
        return actuals_main(argv[1:])
    args = parser().parse_args(argv)
    from components.arize.log import ArizeSendError, CredentialsError, log_prepared

    try:
        log_prepared(args.prepared, args.summary, config_from_args(ArizeConfig, args))
    except (ValueError, OSError, CredentialsError, ArizeSendError) as exc:  # OSError: storage too
        print(f"arize: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
