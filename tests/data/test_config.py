"""Every bad parameter stops with a message naming it; sizes larger than the source too."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from components.common.config import config_from_args
from components.data.__main__ import parser
from components.data.build import build_dataset
from components.data.config import ConfigError, DataConfig


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(source=""), r"source='': expected a folder of IDX files"),
        (dict(training_size=0), r"training_size=0: expected a whole number of at least 1"),
        (dict(validation_size=-3), r"validation_size=-3: expected a whole number"),
        (dict(production_size=2.5), r"production_size=2.5: expected a whole number"),
        (dict(production_days=0), r"production_days=0: expected"),
        (dict(production_size=10), r"production_size=10: expected at least production_days=30"),
        (dict(production_end="last tuesday"), r"production_end='last tuesday': expected an ISO 8601 time"),
        (
            dict(window_days=31),
            r"window_days=31: the window is longer than the production span; expected at most production_days=30",
        ),
        (dict(window_days=-1), r"window_days=-1: expected a whole number of at least 0"),
        (dict(window_start_day=24), r"window_start_day=24: expected 0\.\.23"),
        (dict(window_start_day=-2), r"window_start_day=-2: expected 0\.\.23"),
        (dict(window_start_day=True), r"window_start_day=True: expected 0\.\.23"),
        (dict(degraded_share=1.5), r"degraded_share=1\.5: expected a share in \[0, 1\]"),
        (dict(degraded_share=-0.1), r"degraded_share=-0\.1: expected a share in \[0, 1\]"),
        (dict(rotation_min=70.0), r"rotation_min=70\.0, rotation_max=60\.0: expected 0 <= rotation_min"),
        (dict(rotation_max=200.0), r"rotation_max=200\.0: expected"),
        (dict(blur_min=0.0), r"blur_min=0\.0, blur_max=2\.0: expected 0 < blur_min <= blur_max"),
        (dict(seed=-1), r"seed=-1: expected a whole number of at least 0"),
        (dict(validation_part="val"), r"validation_part='val': expected one of test, train"),
    ],
)
def test_bad_parameter(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(**kwargs)


def test_defaults():
    config = DataConfig()
    assert (config.training_size, config.validation_size, config.production_size) == (30000, 3000, 6000)
    assert config.production_size // config.production_days == 200
    assert config.window_start == 11
    assert config.end.isoformat() == "2026-11-01T00:00:00+00:00"
    # a time without offset is UTC; an offset is converted
    assert DataConfig(production_end="2026-11-01T02:00:00+02:00").end == config.end
    assert DataConfig(production_end="2026-11-01").end == config.end


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(training_size=58000, validation_size=3000, validation_part="train"),
            r"training_size=58000 \+ validation_size=3000 = 61000: larger than the 60000 usable rows "
            r"of the source's train part \(.*train-images-idx3-ubyte\.gz\)",
        ),
        (
            dict(training_size=60001),
            r"training_size=60001: larger than the 60000 usable rows of the source's train part",
        ),
        (
            dict(production_size=8000, validation_size=3000),
            r"production_size=8000 \+ validation_size=3000 = 11000: larger than the 10000 usable rows "
            r"of the source's test part .*validation_part='train'",
        ),
        (dict(production_size=10001), r"production_size=10001: larger than the 10000 usable rows"),
    ],
)
def test_sizes_larger_than_source(kwargs, message, fashion_dir, tmp_path):
    config = DataConfig(source=str(fashion_dir), **{**dict(training_size=10, validation_size=10), **kwargs})
    with pytest.raises(ConfigError, match=message):
        build_dataset(config, tmp_path / "dataset")
    assert list(tmp_path.iterdir()) == []


def test_window_start_day_minus_one_is_centred():
    assert DataConfig().window_start_day == -1 and DataConfig().window_start == 11
    assert DataConfig(window_start_day=23).window_start == 23  # the last day that fits
    # the card's parameters show the resolved day
    assert DataConfig().parameters()["window_start_day"] == 11


def test_command_line_builds_the_config():
    args = parser().parse_args(["--degraded-share", "0.25", "--window-start-day", "3", "--seed", "9"])
    config = config_from_args(DataConfig, args)
    assert (config.degraded_share, config.window_start, config.seed) == (0.25, 3, 9)
    assert (args.output, args.card, args.overwrite) == ("data-out/dataset", None, False)


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "components.data", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_cli_help():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ("--source", "--degraded-share", "--window-start-day", "--output", "--seed"):
        assert option in result.stdout


def test_cli_bad_parameter(tmp_path):
    result = run_cli("--output", str(tmp_path / "ds"), "--degraded-share", "2")
    assert result.returncode == 2
    assert "degraded_share=2.0: expected a share in [0, 1]" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_unknown_hub_dataset(tmp_path):
    # Offline mode: the real datasets.load_dataset path, failing fast instead of retrying the network.
    result = run_cli(
        "--output", str(tmp_path / "ds"), "--source", "hf:no-such-org/no_such_set", HF_HUB_OFFLINE="1"
    )
    assert result.returncode == 2
    assert "Hub data set 'no-such-org/no_such_set' could not be loaded" in result.stderr
    assert "expected the name of a reachable image-classification data set" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_replace_recentres_the_window():
    import dataclasses

    config = DataConfig()
    assert (
        dataclasses.replace(config, production_days=10, production_size=100, window_days=4).window_start == 3
    )
    assert DataConfig(window_start_day=0).window_start == 0


def test_package_exports():
    from components.data import DataConfig as Exported
    from components.data import build_dataset as exported

    assert Exported is DataConfig and exported is build_dataset


def test_cli_builds_dataset_card_and_grid(tmp_path, fashion_dir):
    out = tmp_path / "ds"
    args = ("--output", str(out), "--source", str(fashion_dir), "--training-size", "100")
    result = run_cli(*args, "--validation-size", "20", "--production-size", "60", "--window-start-day", "-1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("data: training=100 validation=20 production=60;")
    assert (out / "dataset_dict.json").exists()
    assert (tmp_path / "ds.md").read_text().startswith("# Data card")
    assert (tmp_path / "ds.png").read_bytes().startswith(b"\x89PNG")
    again = run_cli(*args)
    assert again.returncode == 2 and "ds: already exists" in again.stderr
