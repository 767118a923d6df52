"""Command line of the ingest stage: ``python -m components.ingest --source-uri URI --output DIR``."""

from __future__ import annotations

import argparse
import sys

from components.common.config import add_config_arguments, config_from_args
from components.common.files import write_text_atomic
from components.ingest.config import IngestConfig


def parser() -> argparse.ArgumentParser:
    """The options: one per :class:`IngestConfig` field, plus the output paths."""
    p = argparse.ArgumentParser(
        prog="python -m components.ingest",
        description="A production batch (image files, a prediction log, or a data-stage folder) -> "
        "the data-stage layout, with the rows that cannot be used kept aside with their reason.",
    )
    p.add_argument("--output", required=True, help="data-stage folder to write (a production split)")
    p.add_argument(
        "--rejected",
        default="rejected.parquet",
        help="Parquet file of the rows kept aside, with their reason",
    )
    p.add_argument("--summary", default="", help="also write the Markdown summary to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(p, IngestConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the ingest stage; exit status 0 on success, 2 on bad input (the message names file, row, column)."""
    args = parser().parse_args(argv)
    try:
        config = config_from_args(IngestConfig, args)
        from components.ingest.ingest import ingest_batch

        result = ingest_batch(config, args.output, args.rejected, quiet=args.quiet)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.summary:
        write_text_atomic(args.summary, result.summary_markdown())
    print(result.summary_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
