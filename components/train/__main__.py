"""Command line: ``python -m components.train --dataset DIR --output DIR [options]``."""

from __future__ import annotations

import argparse
import json

from components.train.train import PROFILE_DEFAULTS, PROFILES, TrainConfig, train_model


def main(argv: list[str] | None = None) -> int:
    defaults = ", ".join(
        f"{p}: epochs {d.epochs:g}, batch {d.batch_size}, lr {d.learning_rate:g}, {d.image_size} px, "
        f"model {d.model_name or 'small ResNetConfig from scratch'}"
        for p, d in PROFILE_DEFAULTS.items()
    )
    ap = argparse.ArgumentParser(
        prog="python -m components.train",
        description=f"Train the image classifier on the data stage's folder. Profile defaults: {defaults}.",
    )
    ap.add_argument("--dataset", required=True, help="data stage output folder (DatasetDict.save_to_disk)")
    ap.add_argument("--output", required=True, help="model folder to write (save_pretrained + processor)")
    ap.add_argument("--profile", choices=PROFILES, default="local")
    ap.add_argument("--model-name", default="", help="Hub name or local folder ('' = profile default)")
    ap.add_argument("--epochs", type=float, default=0.0, help="0 = profile default")
    ap.add_argument("--batch-size", type=int, default=0, help="0 = profile default")
    ap.add_argument("--learning-rate", type=float, default=0.0, help="0 = profile default")
    ap.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: whole epochs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = half the cores)")
    ap.add_argument("--checkpoints", default=None, help="checkpoint folder (default: <output>.checkpoints)")
    ap.add_argument("--keep-checkpoints", action="store_true")
    a = ap.parse_args(argv)
    cfg = TrainConfig(
        profile=a.profile,
        model_name=a.model_name,
        epochs=a.epochs,
        batch_size=a.batch_size,
        learning_rate=a.learning_rate,
        max_steps=a.max_steps,
        seed=a.seed,
        threads=a.threads,
    )
    result = train_model(
        a.dataset, a.output, cfg, checkpoint_dir=a.checkpoints, keep_checkpoints=a.keep_checkpoints
    )
    print(json.dumps({"model_version": result.model_version, **result.metrics}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
