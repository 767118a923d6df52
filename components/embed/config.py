"""The embed stage's parameters: :class:`EmbedConfig`, the single source of its command line and component.

Light on purpose (stdlib and ``components.common`` only): the pipelines read its defaults and
``--help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from components.common import schema
from components.common.config import PRECISIONS, device_param, param, precision_param, threads_param

# torch.compile modes of the forward pass ("none": eager); reduce-overhead replays CUDA graphs.
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
TRANSFORM_DEVICES = ("auto", "cpu", "model")


def parse_splits(splits: str | Sequence[str]) -> list[str]:
    """Split names from "a,b" or a sequence; a ValueError for unknown or repeated names."""
    names = [s.strip() for s in (splits.split(",") if isinstance(splits, str) else splits) if s.strip()]
    if not names:
        raise ValueError(f"splits {splits!r}: name at least one of {', '.join(schema.SPLITS)}")
    unknown = [s for s in names if s not in schema.SPLITS]
    if unknown:
        raise ValueError(
            f"splits: unknown {', '.join(unknown)}; expected names from {', '.join(schema.SPLITS)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"splits {splits!r}: a split is named twice")
    return names


def check_shard(shard_index: int, num_shards: int) -> None:
    """A ValueError unless ``0 <= shard_index < num_shards``."""
    if num_shards < 1:
        raise ValueError(f"num_shards {num_shards}: expected at least 1")
    if not 0 <= shard_index < num_shards:
        raise ValueError(
            f"shard_index {shard_index}: expected 0..{num_shards - 1} for num_shards={num_shards}"
        )


@dataclass
class EmbedConfig:
    """What to embed and how; every bad value raises a ValueError naming it."""

    splits: str = param(
        ",".join(schema.SPLITS), "comma-separated names of the splits to embed, in this order"
    )
    shard_index: int = param(0, "which shard of each split to embed: rows [n*i//k, n*(i+1)//k), 0-based")
    num_shards: int = param(1, "number of shards each split is cut into (k)")
    embed_batch_size: int = param(256, "images per forward pass")
    allow_cpu: bool = param(
        False,
        "let a model trained with profile=cluster (or device cuda) run on CPU when CUDA is unavailable "
        "(False: fail at once, naming the NVIDIA driver the images need)",
    )
    threads: int = threads_param()
    device: str = device_param()
    precision: str = precision_param()
    decode_workers: int = param(
        -1, "decoding processes (0: a thread; -1: 0 on CPU, up to 4 on GPU)", component=False
    )
    compile_mode: str = param(
        "none",
        "torch.compile the forward pass: none (eager), default, reduce-overhead (CUDA graphs), "
        "max-autotune; batches are padded to embed_batch_size so one graph serves them all "
        "(compiling ResNet-50 takes about a minute, paid once per run)",
        component=False,
        choices=COMPILE_MODES,
    )
    transform_device: str = param(
        "auto",
        "where resize, crop and normalise run: cpu (in the decoder), model (the decoder hands over "
        "uint8 pixels, the model's device transforms them), auto (model on CUDA, else cpu)",
        component=False,
        choices=TRANSFORM_DEVICES,
    )

    def __post_init__(self) -> None:
        parse_splits(self.splits)
        check_shard(self.shard_index, self.num_shards)
        if self.embed_batch_size < 1:
            raise ValueError(f"embed_batch_size {self.embed_batch_size}: expected at least 1")
        if self.threads < 0:
            raise ValueError(f"threads {self.threads}: give 0 (automatic) or a positive count")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(
                f"compile_mode {self.compile_mode!r}: expected one of {', '.join(COMPILE_MODES)}"
            )
        if self.transform_device not in TRANSFORM_DEVICES:
            raise ValueError(
                f"transform_device {self.transform_device!r}: expected one of {', '.join(TRANSFORM_DEVICES)}"
            )
        if self.decode_workers < -1:
            raise ValueError(
                f"decode_workers {self.decode_workers}: give -1 (automatic), 0 or a positive count"
            )

    @property
    def split_names(self) -> list[str]:
        """The splits to embed, in order."""
        return parse_splits(self.splits)
