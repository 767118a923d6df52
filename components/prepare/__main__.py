"""Command line of the prepare stage: ``python -m components.prepare --help``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.common.config import add_config_arguments, config_from_args
from components.prepare.config import PrepareConfig


def parser() -> argparse.ArgumentParser:
    """The options: one per :class:`PrepareConfig` field, plus the input and output paths."""
    p = argparse.ArgumentParser(
        prog="python -m components.prepare",
        description="Embed outputs -> one Arize-ready Parquet table per environment, plus PNG images.",
    )
    p.add_argument(
        "--embeddings", nargs="+", required=True, help="embed output folder(s), e.g. one per shard"
    )
    p.add_argument("--dataset", required=True, help="the data stage's DatasetDict folder (images)")
    p.add_argument("--output", required=True, help="prepared folder to write")
    p.add_argument("--summary", default="", help="also write the Markdown summary to this file")
    add_config_arguments(p, PrepareConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the prepare stage from the command line; 0 on success, 2 with a one-line error.

    Expected errors (a bad parameter or input, a missing or corrupt file, a storage failure) print
    ``prepare: error: <message>`` on stderr, without a traceback.
    """
    args = parser().parse_args(argv)
    from components.common import files
    from components.prepare.prepare import prepare_records

    try:
        result = prepare_records(
            args.embeddings, args.dataset, args.output, config_from_args(PrepareConfig, args)
        )
        if args.summary:
            summary = Path(args.summary)
            files.remove_stale_temporaries(summary.parent, names=[summary.name])
            files.write_text_atomic(args.summary, result.summary_markdown())
    except (ValueError, OSError) as exc:  # OSError: FileNotFoundError, storage.StorageError, ...
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
