"""Command line: ``python -m components.data --help``."""

from __future__ import annotations

import argparse
import sys

from components.common.config import add_config_arguments, config_from_args
from components.data.config import ConfigError, DataConfig


def parser() -> argparse.ArgumentParser:
    """The data stage's options: one per :class:`DataConfig` field, plus the output paths."""
    p = argparse.ArgumentParser(
        prog="python -m components.data",
        description="Build Fashion-MNIST training / validation / production splits with a window of "
        "degraded production images; write a datasets folder, a Markdown data card and a PNG sample grid.",
    )
    p.add_argument(
        "--output",
        default="data-out/dataset",
        help="datasets folder to write (save_to_disk) (default: %(default)s)",
    )
    p.add_argument("--card", default=None, help="Markdown data card to write (default: <output>.md)")
    p.add_argument("--grid", default=None, help="PNG sample grid to write (default: <output>.png)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_config_arguments(p, DataConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    """Build the data set; 2 with a one-line error for a bad parameter, source or existing output."""
    from components.data.build import build_dataset
    from components.data.sources import SourceError

    args = parser().parse_args(argv)
    output = args.output
    card = args.card or output.rstrip("/") + ".md"
    grid = args.grid or output.rstrip("/") + ".png"
    try:
        build_dataset(config_from_args(DataConfig, args), output, card, grid, overwrite=args.overwrite)
    except (ConfigError, SourceError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
