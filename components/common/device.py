"""Where the GPU stages run: the one check that a run meant for a GPU has CUDA, or fails at once.

The pinned torch wheels (``torch==2.14.1`` from PyPI, ``constraints.txt``) are built for CUDA 13,
which needs NVIDIA driver 580 or later on the node. On an older driver ``torch.cuda.is_available()``
is False and torch quietly runs on CPU: a ResNet-50 fine-tune that takes minutes on a GPU would
take days. So a run that expects a GPU (train with ``profile=cluster``; embed of a model trained
with it, or with ``device`` cuda) stops here with what to do, unless ``allow_cpu`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from components.common.model_folder import load_summary

CLUSTER_PROFILE = "cluster"  # the train profile that fine-tunes on a GPU (components/train/config.py)
CUDA_REQUIREMENT = (
    "the images' torch (torch==2.14.1 from PyPI) is built for CUDA 13 and needs NVIDIA driver 580 or "
    "later on the GPU node (check with nvidia-smi on the node, or `kubectl describe node`); for a node "
    "pool with an older driver (CUDA 12) build the train and embed images with a CUDA 12 torch, e.g. "
    "`make images TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126` (see images/Dockerfile); "
    "also check that the task got a GPU (nvidia.com/gpu limit, the GPU node pool's selector)"
)
ALLOW_CPU_HINT = "set allow_cpu=True to run on CPU anyway (slow: hours to days for the cluster profile)"


class CudaUnavailableError(RuntimeError):
    """A run that expects a GPU found no CUDA device."""


def cuda_available() -> bool:
    """``torch.cuda.is_available()`` (torch imported here, only when asked)."""
    import torch

    return bool(torch.cuda.is_available())


def require_cuda(
    stage: str, why: str, allow_cpu: bool = False, is_available: Callable[[], bool] = cuda_available
) -> bool:
    """Check that CUDA is there for a run that expects it; returns whether it is.

    Args:
        stage: the stage asking (``train``, ``embed``), named in the message.
        why: what makes this run expect a GPU, e.g. ``"profile=cluster"``.
        allow_cpu: when True, a missing GPU is only reported and the run goes on on CPU.
        is_available: the probe (``torch.cuda.is_available`` by default).

    Raises:
        CudaUnavailableError: CUDA is unavailable and ``allow_cpu`` is False. The message names the
            driver requirement and how to build images for a CUDA 12 node pool.
    """
    if is_available():
        return True
    if allow_cpu:
        print(f"{stage}: {why} expects a GPU, but CUDA is unavailable; running on CPU (allow_cpu=True)")
        return False
    raise CudaUnavailableError(
        f"{stage}: {why} expects a GPU, but torch.cuda.is_available() is False. Requirement: "
        f"{CUDA_REQUIREMENT}. Or {ALLOW_CPU_HINT}."
    )


def trained_for_gpu(model_dir: str | Path) -> bool:
    """Whether a model folder's training summary says it was trained with the cluster profile."""
    return load_summary(model_dir).get("profile") == CLUSTER_PROFILE


def wants_cuda(device: str | None) -> bool:
    """Whether an explicit ``device`` asks for CUDA (``cuda``, ``cuda:1``)."""
    return bool(device) and str(device).strip().lower().startswith("cuda")
