"""Command line: ``python -m components.drift PREPARED [--baseline FOLDER] --report R.html --table T.parquet``."""

from __future__ import annotations

import argparse
import json
import sys

from components.common.config import add_config_arguments, config_from_args
from components.common.files import write_text_atomic
from components.drift.config import DriftConfig


def parser() -> argparse.ArgumentParser:
    """The stage's options: its input and output paths, then one option per :class:`DriftConfig` field."""
    p = argparse.ArgumentParser(
        prog="python -m components.drift",
        description="Calibrated embedding drift per time window, with a UMAP view, as a self-contained HTML report.",
        epilog="Exit status: 0 no drift, 1 drift (alert), 2 bad input, 3 insufficient data (no window tested).",
    )
    p.add_argument("prepared", help="prepare-stage folder holding production.parquet")
    p.add_argument("--baseline", help="prepare-stage folder holding the baseline (default: PREPARED)")
    p.add_argument("--report", default="drift_report.html", help="HTML report to write")
    p.add_argument("--table", default="drift_table.parquet", help="drift table (Parquet) to write")
    p.add_argument("--metrics", help="also write the metrics as JSON here")
    add_config_arguments(p, DriftConfig)
    return p


# Exit statuses: one per run status, and bad input.
EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_BAD_INPUT, EXIT_INSUFFICIENT_DATA = 0, 1, 2, 3
EXIT_CODES = {"no-drift": EXIT_NO_DRIFT, "drift": EXIT_DRIFT, "insufficient-data": EXIT_INSUFFICIENT_DATA}


def main(argv: list[str] | None = None) -> int:
    """Run the stage; exit status 0: no drift, 1: drift (alert), 2: bad input, 3: insufficient data.

    3: no window had ``min_window_rows`` usable rows, so nothing was tested (no verdict).
    """
    args = parser().parse_args(argv)
    try:
        config = config_from_args(DriftConfig, args)
        from components.drift.stage import run_drift

        result = run_drift(args.prepared, args.baseline or args.prepared, args.report, args.table, config)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.metrics:
        write_text_atomic(args.metrics, json.dumps(result.metrics, indent=2))
    for line in result.summary:
        print(line)
    return EXIT_CODES[result.status]


if __name__ == "__main__":
    sys.exit(main())
