"""Command line: ``python -m components.embed --dataset DIR --model DIR --output DIR [options]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from components.common import schema
from components.embed.embed import DEFAULT_BATCH_SIZE, embed_dataset, summary_markdown


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m components.embed",
        description=(
            f"Embed a data set's splits with a trained model into a folder holding {schema.EMBED_FILE} "
            f"and {schema.EMBED_FAILURES_FILE}."
        ),
    )
    ap.add_argument("--dataset", required=True, help="data stage output folder (DatasetDict.save_to_disk)")
    ap.add_argument("--model", required=True, help="train stage output folder")
    ap.add_argument("--output", required=True, help="output folder to write")
    ap.add_argument("--splits", default=",".join(schema.SPLITS), help="comma-separated split names")
    ap.add_argument("--shard-index", type=int, default=0)
    ap.add_argument("--num-shards", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = half the cores)")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when there is one)")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    ap.add_argument(
        "--decode-workers",
        type=int,
        default=-1,
        help="decoding processes (0: a thread; -1: 0 on CPU, up to 4 on GPU)",
    )
    ap.add_argument("--summary", default=None, help="also write the Markdown summary to this file")
    a = ap.parse_args(argv)
    result = embed_dataset(
        a.dataset,
        a.model,
        a.output,
        splits=a.splits,
        shard_index=a.shard_index,
        num_shards=a.num_shards,
        batch_size=a.batch_size,
        threads=a.threads,
        device=a.device,
        precision=a.precision,
        decode_workers=a.decode_workers,
    )
    if a.summary:
        Path(a.summary).write_text(summary_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
