"""The GPU check of train (and of embed on what train wrote): with torch's real ``cuda.is_available()``.

The pinned torch wheels are built for CUDA 13 (NVIDIA driver 580+); on an older driver
``torch.cuda.is_available()`` is False and a cluster run would quietly train ResNet-50 on CPU for
days. This machine has no GPU, so the real probe answers False here, as on such a node.
"""

from __future__ import annotations

import pytest
import torch

from components.common import device
from components.common.device import CudaUnavailableError, require_cuda
from components.common.model_folder import load_summary
from components.embed.config import EmbedConfig
from components.embed.embed import check_device
from components.train.config import CLUSTER, TrainConfig
from components.train.train import build_model_and_processor, train_model

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")


def test_cluster_profile_fails_at_once_naming_the_driver(tmp_path):
    # The dataset folder does not even exist: the check comes before anything is loaded.
    with pytest.raises(CudaUnavailableError) as err:
        train_model(tmp_path / "no-dataset", tmp_path / "model", TrainConfig(profile=CLUSTER))
    message = str(err.value)
    assert "train: profile=cluster expects a GPU, but torch.cuda.is_available() is False" in message
    assert "NVIDIA driver 580 or later" in message and "CUDA 13" in message
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126" in message  # the CUDA 12 way
    assert "allow_cpu=True" in message
    assert not (tmp_path / "model").exists()


def test_the_local_profile_is_not_checked(tmp_path):
    with pytest.raises(ValueError, match="no-dataset") as err:
        train_model(tmp_path / "no-dataset", tmp_path / "model", TrainConfig())
    assert not isinstance(err.value, CudaUnavailableError)


@pytest.fixture(scope="module")
def local_model_folder(tmp_path_factory):
    """A saved (untrained) small ResNet with its processor: a model_name the cluster profile loads offline."""
    folder = tmp_path_factory.mktemp("base-model")
    model, processor = build_model_and_processor(TrainConfig())
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def cluster_model_on_cpu(small_dataset, local_model_folder, tmp_path_factory):
    """profile=cluster with allow_cpu: passes the check and trains (2 steps) on CPU."""
    out = tmp_path_factory.mktemp("cluster-on-cpu") / "model"
    config = TrainConfig(
        profile=CLUSTER,
        allow_cpu=True,
        model_name=str(local_model_folder),
        image_size=32,
        batch_size=16,
        max_steps=2,
        threads=1,
    )
    return train_model(small_dataset, out, config)


def test_allow_cpu_lets_the_cluster_profile_run_on_cpu(cluster_model_on_cpu, capsys):
    summary = load_summary(cluster_model_on_cpu.model_dir)
    assert summary["profile"] == CLUSTER and summary["device"] == "cpu"
    assert "allow_cpu" not in summary["config"]  # a run-only setting, not part of what was trained


def test_embed_of_a_cluster_model_fails_at_once_without_cuda(cluster_model_on_cpu):
    with pytest.raises(
        CudaUnavailableError, match="embed: a model trained with profile=cluster expects a GPU"
    ):
        check_device(cluster_model_on_cpu.model_dir, EmbedConfig())
    assert check_device(cluster_model_on_cpu.model_dir, EmbedConfig(allow_cpu=True)) == ""


def test_embed_asked_for_cuda_fails_unless_cpu_is_allowed(local_model_folder, tmp_path):
    from components.common.model_folder import write_summary

    folder = tmp_path / "local-model"
    folder.mkdir()
    for f in local_model_folder.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    write_summary(folder, {"model_version": "x", "profile": "local"})
    assert check_device(folder, EmbedConfig()) == ""  # a local-profile model: not checked
    with pytest.raises(CudaUnavailableError, match="embed: device=cuda:1 expects a GPU"):
        check_device(folder, EmbedConfig(device="cuda:1"))
    assert check_device(folder, EmbedConfig(device="cuda", allow_cpu=True)) == "cpu"


def test_require_cuda_uses_the_probe_it_is_given(capsys):
    assert require_cuda("train", "profile=cluster", is_available=lambda: True) is True
    assert require_cuda("train", "profile=cluster", allow_cpu=True, is_available=lambda: False) is False
    assert "running on CPU (allow_cpu=True)" in capsys.readouterr().out
    assert device.cuda_available() is torch.cuda.is_available()


def test_the_device_module_names_the_train_profile():
    assert device.CLUSTER_PROFILE == CLUSTER  # common/ cannot import a stage: the two must agree
