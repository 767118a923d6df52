"""Command line: ``python -m components.evaluate --candidate DIR --dataset DIR --report R.html --evaluation E.json``."""

from __future__ import annotations

import argparse
import json
import sys

from components.common.config import add_config_arguments, config_from_args
from components.common.files import write_text_atomic
from components.evaluate.config import EvaluateConfig

EXIT_PROMOTE, EXIT_CANDIDATE, EXIT_BAD_INPUT = 0, 1, 2


def parser() -> argparse.ArgumentParser:
    """The stage's options: its input and output paths, then one option per :class:`EvaluateConfig` field."""
    p = argparse.ArgumentParser(
        prog="python -m components.evaluate",
        description="Evaluate a candidate model against the registry's production model, slice by slice, "
        "and decide whether to promote it.",
        epilog="Exit status: 0 promote, 1 keep as a candidate, 2 bad input.",
    )
    p.add_argument("--candidate", required=True, help="train stage output folder (the candidate model)")
    p.add_argument("--dataset", required=True, help="data stage output folder (DatasetDict.save_to_disk)")
    p.add_argument("--report", default="evaluation.html", help="HTML report to write")
    p.add_argument("--evaluation", default="evaluation.json", help="JSON of every slice and the decision")
    p.add_argument("--metrics", help="also write the overall metrics as JSON here")
    add_config_arguments(p, EvaluateConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the stage; exit status 0: promote, 1: keep as a candidate, 2: bad input (or storage unreachable)."""
    from components.common.device import CudaUnavailableError

    args = parser().parse_args(argv)
    try:
        config = config_from_args(EvaluateConfig, args)
        from components.evaluate.evaluate import evaluate, summary_lines

        result = evaluate(args.candidate, args.dataset, args.report, args.evaluation, config)
    except (ValueError, OSError, CudaUnavailableError) as err:  # OSError: files, storage
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.metrics:
        write_text_atomic(args.metrics, json.dumps(result.metrics, indent=2))
    for line in summary_lines(result):
        print(line)
    return EXIT_PROMOTE if result.decision == "promote" else EXIT_CANDIDATE


if __name__ == "__main__":
    sys.exit(main())
