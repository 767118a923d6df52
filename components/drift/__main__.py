"""Command line: ``python -m components.drift PREPARED [--baseline FOLDER] --report R.html --table T.parquet``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from components.drift.stage import DriftConfig, run_drift


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.drift",
        description="Calibrated embedding drift per time window, with a UMAP view, as a self-contained HTML report.",
    )
    parser.add_argument("prepared", help="prepare-stage folder holding production.parquet")
    parser.add_argument("--baseline", help="prepare-stage folder holding the baseline (default: PREPARED)")
    parser.add_argument("--report", default="drift_report.html", help="HTML report to write")
    parser.add_argument("--table", default="drift_table.parquet", help="drift table (Parquet) to write")
    parser.add_argument("--metrics", help="also write the metrics as JSON here")
    for f in dataclasses.fields(DriftConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=f.default, help=f"default: {f.default!r}")
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(DriftConfig)}
    try:
        config = DriftConfig(**values)
        result = run_drift(args.prepared, args.baseline or args.prepared, args.report, args.table, config)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.metrics:
        with open(args.metrics, "w", encoding="utf-8") as fh:
            json.dump(result.metrics, fh, indent=2)
    for line in result.summary:
        print(line)
    return 1 if result.alert else 0


if __name__ == "__main__":
    sys.exit(main())
