"""Command line: ``python -m components.embed --dataset DIR --model DIR --output DIR [options]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.common import schema
from components.common.config import add_config_arguments, config_from_args
from components.embed.config import EmbedConfig


def parser() -> argparse.ArgumentParser:
    """The embed stage's options: one per :class:`EmbedConfig` field, plus the input and output paths."""
    p = argparse.ArgumentParser(
        prog="python -m components.embed",
        description=(
            f"Embed a data set's splits with a trained model into a folder holding {schema.EMBED_FILE} "
            f"and {schema.EMBED_FAILURES_FILE}."
        ),
    )
    p.add_argument("--dataset", required=True, help="data stage output folder (DatasetDict.save_to_disk)")
    p.add_argument("--model", required=True, help="train stage output folder")
    p.add_argument("--output", required=True, help="output folder to write")
    p.add_argument("--summary", default=None, help="also write the Markdown summary to this file")
    add_config_arguments(p, EmbedConfig)
    return p


EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    """Embed, and write the Markdown summary when ``--summary`` is given.

    Returns 0, or 2 with one ``error:`` line on stderr for an expected error: a bad parameter,
    data set or model folder (ValueError, e.g. a model of another setup or with replaced
    weights), a missing file, or no CUDA where the run expects a GPU.
    """
    from components.common.device import CudaUnavailableError

    args = parser().parse_args(argv)
    try:
        from components.embed.embed import embed_dataset, summary_markdown

        result = embed_dataset(args.dataset, args.model, args.output, config_from_args(EmbedConfig, args))
    except (ValueError, FileNotFoundError, NotADirectoryError, CudaUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.summary:
        Path(args.summary).write_text(summary_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
