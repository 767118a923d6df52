"""How many torch CPU threads a stage uses by default (train and embed)."""

from __future__ import annotations

import os


def default_threads() -> int:
    """Half the CPU cores (at least one).

    Measured on the 2-core development machine shared with other jobs: one intra-op thread
    trained the local ResNet 6x faster than two, because two OpenMP threads stall whenever the
    other core is busy.  Data loading (train) and decoding (embed) also run on the same cores.
    """
    return max(1, (os.cpu_count() or 2) // 2)
