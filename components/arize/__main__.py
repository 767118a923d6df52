"""Command line of the arize stage: ``python -m components.arize --help``.

Credentials come from the environment only: ``ARIZE_API_KEY`` and ``ARIZE_SPACE_ID``.
"""

from __future__ import annotations

import argparse
import sys

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


def main(argv: list[str] | None = None) -> int:
    """Run the arize stage from the command line; 0 on success, 2 with a one-line error.

    Expected errors (a bad parameter, a missing or corrupt prepared folder, a validation error,
    missing or refused credentials, a send that stopped part-way, a storage failure) print
    ``arize: error: <message>`` on stderr, without a traceback.
    """
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
