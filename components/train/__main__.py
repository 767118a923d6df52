"""Command line: ``python -m components.train --dataset DIR --output DIR [options]``."""

from __future__ import annotations

import argparse
import json
import sys

from components.common.config import add_config_arguments, config_from_args
from components.train.config import TrainConfig, profile_defaults_text


def parser() -> argparse.ArgumentParser:
    """The train stage's options: one per :class:`TrainConfig` field, plus the data set and model folders."""
    p = argparse.ArgumentParser(
        prog="python -m components.train",
        description=f"Train the image classifier on the data stage's folder. "
        f"Profile defaults: {profile_defaults_text()}.",
    )
    p.add_argument("--dataset", required=True, help="data stage output folder (DatasetDict.save_to_disk)")
    p.add_argument("--output", required=True, help="model folder to write (save_pretrained + processor)")
    add_config_arguments(p, TrainConfig)
    return p


EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    """Train, then print the model version and the validation metrics as one JSON line.

    Returns 0, or 2 with one ``error:`` line on stderr for an expected error: a bad parameter,
    data set or model name (ValueError, e.g. an image that does not decode), a missing file, or
    no CUDA where the run expects a GPU.
    """
    from components.common.device import CudaUnavailableError

    args = parser().parse_args(argv)
    try:
        from components.train.train import train_model

        result = train_model(args.dataset, args.output, config_from_args(TrainConfig, args))
    except (ValueError, FileNotFoundError, NotADirectoryError, CudaUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps({"model_version": result.model_version, **result.metrics}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
