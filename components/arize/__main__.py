"""Command line of the arize stage: ``python -m components.arize --help``.

Credentials come from the environment only: ``ARIZE_API_KEY`` and ``ARIZE_SPACE_ID``.
"""

from __future__ import annotations

import argparse
import sys

from components.arize.log import DEFAULT_CHUNK_ROWS, DEFAULT_MODEL_NAME, log_prepared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.arize",
        description="Validate a prepared folder with the Arize SDK and log it to Arize "
        "(credentials from ARIZE_API_KEY and ARIZE_SPACE_ID; endpoint from ARIZE_API_HOST/SCHEME/PORT).",
    )
    parser.add_argument("--prepared", required=True, help="the prepare stage's output folder")
    parser.add_argument("--summary", required=True, help="Markdown summary to write")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--model-version", default="", help="'' = the prepared manifest's")
    parser.add_argument(
        "--require-credentials", action="store_true", help="fail when credentials are missing"
    )
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows per request")
    parser.add_argument("--ledger", default="", help="ledger of sent chunks ('' = <summary>.ledger.json)")
    args = parser.parse_args(argv)
    log_prepared(
        args.prepared,
        args.summary,
        model_name=args.model_name,
        model_version=args.model_version,
        require_credentials=args.require_credentials,
        chunk_rows=args.chunk_rows,
        ledger_uri=args.ledger,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
