"""Command line of the prepare stage: ``python -m components.prepare --help``."""

from __future__ import annotations

import argparse
import sys

from components.prepare.prepare import DEFAULT_CHUNK_ROWS, prepare_records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.prepare",
        description="Embed outputs -> one Arize-ready Parquet table per environment, plus PNG images.",
    )
    parser.add_argument(
        "--embeddings", nargs="+", required=True, help="embed output folder(s), e.g. one per shard"
    )
    parser.add_argument("--dataset", required=True, help="the data stage's DatasetDict folder (images)")
    parser.add_argument("--output", required=True, help="prepared folder to write")
    parser.add_argument(
        "--image-store", default="", help="'' = <output>/images, a folder, or gs://, s3:// prefix"
    )
    parser.add_argument(
        "--now", default="", help="ISO-8601 time for the newest production row ('' = now, UTC)"
    )
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows per chunk")
    parser.add_argument("--summary", default="", help="also write the Markdown summary to this file")
    args = parser.parse_args(argv)
    result = prepare_records(
        args.embeddings, args.dataset, args.output, args.image_store, args.now, args.chunk_rows
    )
    if args.summary:
        with open(args.summary, "w") as f:
            f.write(result.summary_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
