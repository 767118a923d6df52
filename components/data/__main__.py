"""Command line: ``python -m components.data --help``."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from components.data.build import ConfigError, DataConfig, build_dataset
from components.data.sources import SourceError

HELP = {
    "source": "folder of IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]) or hf:<name> "
    "for a Hugging Face Hub data set (e.g. hf:zalando-datasets/fashion_mnist)",
    "training_size": "rows of the training split (from the source's train part)",
    "validation_size": "rows of the validation split (from the source's train part)",
    "production_size": "rows of the production split (from the source's test part)",
    "production_days": "days spanned by production",
    "production_end": "end of production, ISO 8601 (UTC); fixed so that the output is reproducible",
    "window_days": "length in days of the degraded window",
    "window_start_day": "first day of the window, counted from the production start (default and -1: centred)",
    "degraded_share": "share of the window's rows that are degraded, in [0, 1]",
    "rotation_min": "smallest rotation in degrees (either way)",
    "rotation_max": "largest rotation in degrees (either way)",
    "blur_min": "smallest Gaussian blur radius in pixels",
    "blur_max": "largest Gaussian blur radius in pixels",
    "seed": "random seed; the same seed gives byte-for-byte the same output",
    "hub_image_column": "image column of a Hub source",
    "hub_label_column": "label column of a Hub source (class indices 0..9)",
    "hub_train_split": "split of a Hub source that gives training and validation",
    "hub_test_split": "split of a Hub source that gives production",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m components.data",
        description="Build Fashion-MNIST training / validation / production splits with a window of "
        "degraded production images; write a datasets folder, a Markdown data card and a PNG sample grid.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--output", default="data-out/dataset", help="datasets folder to write (save_to_disk)")
    p.add_argument("--card", default=None, help="Markdown data card to write (default: <output>.md)")
    p.add_argument("--grid", default=None, help="PNG sample grid to write (default: <output>.png)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    for f in dataclasses.fields(DataConfig):
        kind = {"int": int, "float": float, "str": str}.get(str(f.type), int if "int" in str(f.type) else str)
        p.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=f.default, help=HELP[f.name]
        )
    return p


def main(argv: list[str] | None = None) -> int:
    args = vars(parser().parse_args(argv))
    output = args.pop("output")
    card = args.pop("card") or output.rstrip("/") + ".md"
    grid = args.pop("grid") or output.rstrip("/") + ".png"
    overwrite = args.pop("overwrite")
    if args["window_start_day"] == -1:  # as in the KFP component: -1 means centred
        args["window_start_day"] = None
    try:
        build_dataset(DataConfig(**args), output, card, grid, overwrite=overwrite)
    except (ConfigError, SourceError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
